"""NCSN and NCSNv2 reproduce the Score SDE reference nets (``../shared/reference/{ncsn,ncsnv2}.*``).

Float32 outputs are compared with the README §5 per-sample tolerance ``max|a-b| <= 1e-4 * max(1, max|b|)``,
float64 outputs with ``rtol=1e-9``. The remaining tests cover the other variants, the options and the errors.
"""

from __future__ import annotations

import json

import pytest
import torch

from scoresde.checkpoint.state_dict import load_original_ema, load_original_state_dict
from scoresde.nets.ncsn import (
    NCSN,
    NCSNV2_VARIANTS,
    NCSNv2,
    ncsn_from_config,
)
from tests.reference import assert_ulp_close, per_sample_close, require_reference

NAMES = ("ncsn", "ncsnv2")
F32_REL = 1e-4
F64_RTOL, F64_ATOL = 1e-9, 1e-12


def _strip(key: str) -> str:
    assert key.startswith("module."), key
    return key[len("module."):]


def _fixture(name: str) -> tuple[dict, dict, dict]:
    cfg = json.loads(require_reference(f"{name}.config.json").read_text())
    ckpt = torch.load(require_reference(f"{name}.ckpt.pt"), map_location="cpu", weights_only=True)
    io = torch.load(require_reference(f"{name}.io.pt"), map_location="cpu", weights_only=True)
    return cfg, ckpt, io


def _ema_state_dict(ckpt: dict, io: dict) -> dict:
    """The checkpoint's model state with the EMA shadow params put in place, by the names in ``io``."""
    state = dict(ckpt["model"])
    shadow = ckpt["ema"]["shadow_params"]
    assert len(shadow) == len(io["ema_param_names"])
    state.update(zip(io["ema_param_names"], shadow, strict=True))
    return state


def _run(net: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(x, labels)


def _assert_f32(out: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert out.shape == ref.shape, what
    ok, ratio = per_sample_close(out, ref, rel=F32_REL)
    assert ok, f"{what}: per-sample scaled max difference {ratio:.3g} > {F32_REL}"


def _assert_f64(out: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert out.dtype == torch.float64 and ref.dtype == torch.float64, what
    torch.testing.assert_close(out, ref, rtol=F64_RTOL, atol=F64_ATOL, msg=lambda m: f"{what}: {m}")


# ----------------------------------------------------------------------------------------------------------
# Reference fixtures.
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_layout_matches_checkpoint(name: str) -> None:
    cfg, ckpt, io = _fixture(name)
    net = ncsn_from_config(cfg["model"], cfg["data"])
    assert type(net) is {"ncsn": NCSN, "ncsnv2": NCSNv2}[name]
    ours = net.state_dict()
    theirs = {_strip(k): v for k, v in ckpt["model"].items()}
    assert list(ours) == list(theirs)  # same keys in the same order
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    # Parameter order = the original model.parameters() order, which the EMA shadow list follows.
    assert [n for n, _ in net.named_parameters()] == [_strip(k) for k in io["param_names"]]
    if name == "ncsnv2":
        # The float64 noise schedule is computed exactly as the original does.
        assert ours["sigmas"].dtype == torch.float64
        assert_ulp_close(ours["sigmas"], theirs["sigmas"], what="sigmas")
    else:
        assert "sigmas" not in ours


@pytest.mark.parametrize("weights", ["model", "ema"])
@pytest.mark.parametrize("name", NAMES)
def test_reference_outputs(name: str, weights: str) -> None:
    cfg, ckpt, io = _fixture(name)
    state = ckpt["model"] if weights == "model" else _ema_state_dict(ckpt, io)
    net = load_original_state_dict(ncsn_from_config(cfg["model"], cfg["data"]), state)
    x, labels = io["x"], io["labels"]

    out = _run(net, x, labels)
    ref = io[f"out_{weights}"]
    # NCSNv2 divides by the float64 buffer sigmas[labels]: float64 output, as in the reference.
    expected_dtype = torch.float64 if name == "ncsnv2" else torch.float32
    assert out.dtype == ref.dtype == expected_dtype
    _assert_f32(out, ref, f"{name} {weights} float32")

    out64 = _run(net.double(), x.double(), labels)
    _assert_f64(out64, io[f"out_{weights}_f64"], f"{name} {weights} float64")


@pytest.mark.parametrize("name", NAMES)
def test_load_original_ema_matches_named_shadow_params(name: str) -> None:
    cfg, ckpt, io = _fixture(name)
    net = load_original_state_dict(ncsn_from_config(cfg["model"], cfg["data"]), ckpt["model"])
    load_original_ema(net, ckpt["ema"])
    by_name = {_strip(k): v for k, v in _ema_state_dict(ckpt, io).items()}
    for key, value in net.state_dict().items():
        assert torch.equal(value, by_name[key]), key
    _assert_f32(_run(net, io["x"], io["labels"]), io["out_ema"], f"{name} ema via load_original_ema")


def test_ncsnv2_keep_input_dtype() -> None:
    cfg, ckpt, io = _fixture("ncsnv2")
    net = ncsn_from_config(cfg["model"], cfg["data"], keep_input_dtype=True)
    load_original_state_dict(net, ckpt["model"])
    out = _run(net, io["x"], io["labels"])
    assert out.dtype == torch.float32
    _assert_f32(out, io["out_model"], "ncsnv2 keep_input_dtype")


@pytest.mark.parametrize("name", NAMES)
def test_reference_comparison_can_fail(name: str) -> None:
    """The tolerance is discriminating: a wrong input convention (``centered`` flipped) fails it."""
    cfg, ckpt, io = _fixture(name)
    data = dict(cfg["data"], centered=not cfg["data"]["centered"])
    net = load_original_state_dict(ncsn_from_config(cfg["model"], data), ckpt["model"])
    ok, ratio = per_sample_close(_run(net, io["x"], io["labels"]), io["out_model"], rel=F32_REL)
    assert not ok and ratio > 100 * F32_REL


# ----------------------------------------------------------------------------------------------------------
# Variants and options (no fixtures needed).
# ------------------------------------------------------------------------------------------------------------
def _tiny_v2(variant: str = "ncsnv2_64", **kw) -> NCSNv2:
    kw = {"nf": 4, "num_scales": 5, "sigma_min": 0.01, "sigma_max": 10.0, **kw}
    return NCSNv2(variant, **kw)


@pytest.mark.parametrize(
    ("variant", "res_names", "refine_names", "stride"),
    [
        ("ncsnv2_64", ["res1", "res2", "res3", "res4"], ["refine1", "refine2", "refine3", "refine4"], 2),
        ("ncsnv2_128", [f"res{i}" for i in range(1, 6)], [f"refine{i}" for i in range(1, 6)], 4),
        (
            "ncsnv2_256",
            ["res1", "res2", "res3", "res31", "res4", "res5"],
            ["refine1", "refine2", "refine3", "refine31", "refine4", "refine5"],
            8,
        ),
    ],
)
def test_ncsnv2_variants(variant: str, res_names: list, refine_names: list, stride: int) -> None:
    torch.manual_seed(0)
    net = _tiny_v2(variant)
    assert net.downsampling_factor == stride
    top = [n for n, _ in net.named_children() if n.startswith(("res", "refine"))]
    assert top == res_names + refine_names  # the original registration order
    x = torch.rand(2, 3, 16, 16)
    out = _run(net, x, torch.tensor([0, 4]))
    assert out.shape == x.shape and out.dtype == torch.float64 and torch.isfinite(out).all()
    # The deepest features have 1/stride of the resolution: record them with a hook.
    seen = {}

    def record(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        seen["deep"] = output.shape

    getattr(net, res_names[-1])[-1].register_forward_hook(record)
    _run(net, x, torch.tensor([0, 4]))
    assert seen["deep"][-1] == 16 // stride


def test_ncsnv2_body_is_unconditional_and_divides_by_sigma() -> None:
    torch.manual_seed(0)
    net = _tiny_v2()
    x = torch.rand(1, 3, 8, 8).expand(5, -1, -1, -1)
    labels = torch.arange(5)
    out = _run(net, x, labels)
    sig = net.sigmas
    assert torch.allclose(sig, torch.logspace(1, -2, 5, dtype=torch.float64), rtol=1e-12)
    body = out * sig[:, None, None, None]
    torch.testing.assert_close(body, body[:1].expand_as(body), rtol=1e-6, atol=1e-6)


def test_ncsn_is_conditioned_through_norm_embeddings() -> None:
    torch.manual_seed(0)
    net = NCSN(in_channels=3, nf=4, num_scales=3)
    with torch.no_grad():  # make each noise level's embedding different
        for m in net.modules():
            if isinstance(m, torch.nn.Embedding):
                m.weight.add_(0.3 * torch.randn_like(m.weight))
    x = torch.rand(1, 3, 8, 8).expand(3, -1, -1, -1)
    out = _run(net, x, torch.arange(3))
    assert out.dtype == torch.float32
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    assert all(m.weight.shape == (3, 3 * m.weight.shape[1] // 3) for m in net.modules()
               if isinstance(m, torch.nn.Embedding))


@pytest.mark.parametrize("cls", [NCSN, NCSNv2])
def test_centered_and_channels(cls: type) -> None:
    torch.manual_seed(0)
    kwargs = {"nf": 4, "num_scales": 3, "in_channels": 1, "out_channels": 2}
    net = cls(**kwargs)
    x = torch.rand(2, 1, 8, 8)
    labels = torch.tensor([0, 2])
    out = _run(net, x, labels)
    assert out.shape == (2, 2, 8, 8)
    centered = cls(**kwargs, centered=True)
    centered.load_state_dict(net.state_dict())
    torch.testing.assert_close(_run(centered, 2 * x - 1, labels), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalization", ["InstanceNorm", "VarianceNorm"])
def test_ncsnv2_other_normalizations(normalization: str) -> None:
    torch.manual_seed(0)
    net = _tiny_v2(normalization=normalization)
    out = _run(net, torch.rand(2, 3, 8, 8), torch.tensor([1, 2]))
    assert torch.isfinite(out).all()
    if normalization == "InstanceNorm":  # the original passes num_scales as InstanceNorm2d's eps
        assert net.normalizer.eps == 5.0 and net.res1[0].normalize1.eps == 1e-5


def _v2_cfg(**overrides) -> tuple[dict, dict]:
    model = {"name": "ncsnv2_64", "nf": 4, "num_scales": 5, "sigma_min": 0.01, "sigma_max": 50.0,
             "nonlinearity": "elu", "normalization": "InstanceNorm++", "interpolation": "bilinear",
             "scale_by_sigma": True}
    data = {"centered": False, "channels": 3, "num_channels": 3, "image_size": 32}
    for key, value in overrides.items():
        section, field = key.split("__")
        target = model if section == "model" else data
        if value is None:
            target.pop(field, None)
        else:
            target[field] = value
    return model, data


def test_from_config_mapping() -> None:
    model, data = _v2_cfg(data__channels=None, data__num_channels=1, model__name="ncsnv2_128",
                          model__nonlinearity="Swish", data__centered=True)
    net = ncsn_from_config(model, data)
    assert isinstance(net, NCSNv2) and net.variant == "ncsnv2_128"
    assert net.begin_conv.in_channels == 1 and net.end_conv.out_channels == 1
    assert net.centered and isinstance(net.act, torch.nn.SiLU)
    assert net.sigmas.shape == (5,) and net.sigmas[0].item() == pytest.approx(50.0)
    assert set(NCSNV2_VARIANTS) == {"ncsnv2_64", "ncsnv2_128", "ncsnv2_256"}


# ----------------------------------------------------------------------------------------------------------
# Clear errors.
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "exc", "match"),
    [
        ({"model__normalization": "GroupNorm"}, ValueError, r"normalization 'GroupNorm'.*InstanceNorm\+\+"),
        ({"model__nonlinearity": "gelu"}, ValueError, r"nonlinearity 'gelu'.*elu, relu, lrelu, swish"),
        ({"model__name": "ncsnv3"}, ValueError, r"'ncsnv3'.*ncsn, ncsnv2_64"),
        ({"model__interpolation": "nearest"}, ValueError, r"interpolation"),
        ({"data__channels": 1}, ValueError, r"channels=1 and data.num_channels=3 differ"),
        ({"data__image_size": 30, "model__name": "ncsnv2_128"}, ValueError, r"divisible by 4"),
        ({"model__nf": None}, KeyError, r"lacks the key 'nf'"),
    ],
)
def test_from_config_errors(overrides: dict, exc: type, match: str) -> None:
    model, data = _v2_cfg(**overrides)
    with pytest.raises(exc, match=match):
        ncsn_from_config(model, data)


def test_ncsn_v1_only_conditional_instancenorm_plus() -> None:
    with pytest.raises(ValueError, match=r"unknown NCSN normalization 'VarianceNorm'; valid values are: Inst"):
        NCSN(nf=4, normalization="VarianceNorm")
    with pytest.raises(ValueError, match="variant"):
        NCSNv2("ncsnv2_512")


def _prefixed(net: torch.nn.Module) -> dict:
    return {f"module.{k}": v.clone() for k, v in net.state_dict().items()}


def test_load_original_state_dict_errors() -> None:
    torch.manual_seed(0)
    net = _tiny_v2()
    good = _prefixed(net)
    other = _tiny_v2()
    load_original_state_dict(other, good)  # round trip, prefix stripped
    for key, value in net.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key

    missing = dict(good)
    del missing["module.res2.0.shortcut.conv.weight"]
    with pytest.raises(ValueError, match=r"missing keys \(1\): res2\.0\.shortcut\.conv\.weight"):
        load_original_state_dict(_tiny_v2(), missing)

    unexpected = dict(good, **{"module.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): extra\.weight"):
        load_original_state_dict(_tiny_v2(), unexpected)

    wrong_width = _prefixed(_tiny_v2(nf=8))
    shapes = r"shape mismatches .*begin_conv\.weight \(8, 3, 3, 3\) vs \(4, 3, 3, 3\)"
    with pytest.raises(ValueError, match=shapes):
        load_original_state_dict(_tiny_v2(), wrong_width)

    v1_into_v2 = _prefixed(NCSN(nf=4, num_scales=5))
    with pytest.raises(ValueError, match=r"missing keys.*unexpected keys.*normalizer\.embed\.weight"):
        load_original_state_dict(_tiny_v2(), v1_into_v2)


def test_load_original_ema_errors() -> None:
    net = _tiny_v2()
    shadow = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(ValueError, match=r"has \d+ shadow parameters"):
        load_original_ema(net, {"shadow_params": shadow[:-1]})
    shadow[0] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"#0 begin_conv\.weight \(1,\) vs \(4, 3, 3, 3\)"):
        load_original_ema(net, shadow)
