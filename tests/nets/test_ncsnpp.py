"""NCSN++ / DDPM++ reproduce the Score SDE reference nets (``../shared/reference/{ncsnpp_*,ddpmpp_vp}.*``).

Float32 outputs are compared with the README §5 per-sample tolerance ``max|a-b| <= 1e-4 * max(1, max|b|)``;
float64 outputs (weights and inputs cast to float64, embeddings computed in float64) with ``rtol=1e-9``.
The other tests cover checkpoint-key mapping, the options that no fixture exercises, and the error messages.
"""

from __future__ import annotations

import functools
import json

import pytest
import torch

from scoresde.checkpoint.errors import IncompatibleCheckpointError
from scoresde.checkpoint.state_dict import (
    load_original_checkpoint,
    load_original_state_dict,
    original_ema_state_dict,
    to_original_state_dict,
)
from scoresde.nets.ddpm import DDPM
from scoresde.nets.ncsnpp import NCSNpp
from tests.reference import assert_ulp_close, per_sample_close, require_reference

FIXTURES = ("ncsnpp_ve", "ncsnpp_deep_skip", "ddpmpp_vp")
F32_REL = 1e-4
F64_RTOL, F64_ATOL = 1e-9, 1e-12
CLASSES = {"ncsnpp": NCSNpp, "ddpm": DDPM}


# ---- helpers shared with test_ddpm.py ----------------------------------------------------------------------


@functools.cache
def load_fixture(name: str) -> tuple[dict, dict, dict]:
    """(config, checkpoint, io) of reference fixture ``name``; skips when the fixtures are absent."""
    cfg = json.loads(require_reference(f"{name}.config.json").read_text())
    ckpt = torch.load(require_reference(f"{name}.ckpt.pt"), map_location="cpu", weights_only=True)
    io = torch.load(require_reference(f"{name}.io.pt"), map_location="cpu", weights_only=True)
    return cfg, ckpt, io


def build_net(name: str, weights: str = "model", dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Network of fixture ``name`` with its ``'model'`` or ``'ema'`` weights, eval mode, cast to ``dtype``."""
    cfg, ckpt, _ = load_fixture(name)
    net = CLASSES[cfg["model"]["name"]].from_config(cfg["model"], cfg["data"])
    load_original_checkpoint(net, ckpt, ema=weights == "ema")
    return net.to(dtype).eval()


def run_net(net: torch.nn.Module, io: dict, dtype: torch.dtype) -> torch.Tensor:
    """``net(x, labels)`` on the fixture inputs; float64 runs cast ``x`` and float labels to float64."""
    labels = io["labels"]
    if labels.is_floating_point():
        labels = labels.to(dtype)
    with torch.no_grad():
        return net(io["x"].to(dtype), labels)


def check_against_reference(name: str, weights: str, dtype: torch.dtype) -> float:
    """Compare with ``out_<weights>[_f64]``; returns the observed error (f32 ratio / f64 max rel. error)."""
    _, _, io = load_fixture(name)
    out = run_net(build_net(name, weights, dtype), io, dtype)
    if dtype == torch.float32:
        expected = io[f"out_{weights}"]
        assert out.dtype == torch.float32 and out.shape == expected.shape
        ok, ratio = per_sample_close(out, expected, rel=F32_REL)
        assert ok, f"{name}/{weights} float32: per-sample error ratio {ratio:.3g} > {F32_REL}"
        return ratio
    expected = io[f"out_{weights}_f64"]
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=F64_RTOL, atol=F64_ATOL)
    return ((out - expected).abs().max() / expected.abs().max()).item()


def check_ema_names(name: str) -> None:
    """The EMA list is matched to the parameters that the reference says it covers, in the same order."""
    cfg, ckpt, io = load_fixture(name)
    net = CLASSES[cfg["model"]["name"]].from_config(cfg["model"], cfg["data"])
    ema_sd = original_ema_state_dict(net, ckpt["model"], ckpt["ema"])
    shadow = ckpt["ema"]["shadow_params"]
    assert len(shadow) == len(io["ema_param_names"])
    for key, value in zip(io["ema_param_names"], shadow, strict=True):
        assert torch.equal(ema_sd[key.removeprefix("module.")], value), key
    # Everything else (sigmas, the Fourier W) keeps the model's values.
    covered = {k.removeprefix("module.") for k in io["ema_param_names"]}
    for key, value in ckpt["model"].items():
        if key.removeprefix("module.") not in covered:
            assert torch.equal(ema_sd[key.removeprefix("module.")], value), key


def check_key_roundtrip(name: str) -> None:
    """Every checkpoint key maps to a distinct tensor, and exporting gives the checkpoint back."""
    cfg, ckpt, _ = load_fixture(name)
    net = CLASSES[cfg["model"]["name"]].from_config(cfg["model"], cfg["data"])
    key_map = net.original_key_map()
    assert set(key_map) == {k.removeprefix("module.") for k in ckpt["model"]}
    assert len(set(key_map.values())) == len(key_map)
    load_original_state_dict(net, ckpt["model"])
    exported = to_original_state_dict(net)
    assert set(exported) == set(ckpt["model"])
    for key, value in ckpt["model"].items():
        assert exported[key].dtype == value.dtype and torch.equal(exported[key], value), key


# ---- reference fixtures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weights", ["model", "ema"])
@pytest.mark.parametrize("name", FIXTURES)
def test_matches_reference(name: str, weights: str, dtype: torch.dtype) -> None:
    check_against_reference(name, weights, dtype)


@pytest.mark.parametrize("name", FIXTURES)
def test_ema_parameter_order(name: str) -> None:
    check_ema_names(name)


@pytest.mark.parametrize("name", FIXTURES)
def test_checkpoint_keys_roundtrip(name: str) -> None:
    check_key_roundtrip(name)


def test_ema_and_model_differ() -> None:
    """Guards the EMA test itself: the two weight sets give clearly different outputs."""
    _, _, io = load_fixture("ncsnpp_ve")
    assert (io["out_model"] - io["out_ema"]).abs().max() > 1e-3
    out_model = run_net(build_net("ncsnpp_ve", "model"), io, torch.float32)
    _, ratio = per_sample_close(out_model, io["out_ema"])
    assert ratio > 100 * F32_REL


def test_sigma_buffer_matches_checkpoint() -> None:
    cfg, ckpt, _ = load_fixture("ncsnpp_ve")
    net = NCSNpp.from_config(cfg["model"], cfg["data"])
    assert net.sigmas.dtype == torch.float64
    assert_ulp_close(net.sigmas, ckpt["model"]["module.sigmas"], what="sigmas")


# ---- options without a fixture -----------------------------------------------------------------------------

SMALL = dict(image_size=16, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)


def _labels(net: NCSNpp, batch: int) -> torch.Tensor:
    if net.embedding_type == "fourier":
        return torch.linspace(0.01, 50.0, batch)
    return torch.linspace(0, 999, batch)


def _roundtrip_same_output(kwargs: dict) -> torch.Tensor:
    """Build, export to original keys, load into a fresh copy, check outputs agree; return the output."""
    torch.manual_seed(0)
    net = NCSNpp(**kwargs).eval()
    x = torch.randn(2, net.in_channels, 16, 16)
    labels = _labels(net, 2)
    clone = NCSNpp(**kwargs).eval()
    load_original_state_dict(clone, to_original_state_dict(net))
    with torch.no_grad():
        out = net(x, labels)
        torch.testing.assert_close(clone(x, labels), out, rtol=0, atol=0)
    return out


@pytest.mark.parametrize(
    "options",
    [
        dict(resblock_type="ddpm", fir=True, progressive="residual", progressive_input="residual"),
        dict(resblock_type="ddpm", fir=False, resamp_with_conv=False, progressive="output_skip"),
        dict(progressive_input="input_skip", progressive_combine="cat", fir=True, embedding_type="fourier"),
        dict(progressive="residual", fir=False, skip_rescale=False, nonlinearity="elu"),
        dict(conditional=False, embedding_type="fourier", scale_by_sigma=True, centered=False),
        dict(embedding_type="positional", scale_by_sigma=True, nonlinearity="lrelu", init_scale=0.5),
    ],
)
def test_other_options_build_run_and_roundtrip(options: dict) -> None:
    out = _roundtrip_same_output(dict(SMALL, **options))
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("in_ch", "out_ch"), [(6, 6), (6, 3)])
@pytest.mark.parametrize("progressive", [("none", "residual"), ("output_skip", "input_skip")])
def test_in_out_channels(in_ch: int, out_ch: int, progressive: tuple[str, str]) -> None:
    kwargs = dict(SMALL, in_channels=in_ch, out_channels=out_ch, fir=True, embedding_type="fourier",
                  progressive=progressive[0], progressive_input=progressive[1])
    assert _roundtrip_same_output(kwargs).shape == (2, out_ch, 16, 16)
    # The config factory exposes the same override.
    cfg, _, _ = load_fixture("ncsnpp_ve")
    net = NCSNpp.from_config(cfg["model"], cfg["data"], in_channels=in_ch, out_channels=out_ch)
    assert net.conv_in.in_channels == in_ch and net.conv_out.out_channels == out_ch


def test_backward_and_train_mode() -> None:
    torch.manual_seed(0)
    net = NCSNpp(**dict(SMALL, dropout=0.1, fir=True, embedding_type="fourier", progressive_input="residual"))
    net.train()
    x = torch.randn(2, 3, 16, 16)
    net(x, torch.tensor([0.1, 3.0])).square().mean().backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert net.fourier_proj.W.grad is None  # fixed random features, as in the original


def test_positional_scale_by_sigma_keeps_dtype() -> None:
    """Division by the float64 σ table; the output keeps the input dtype (the reference returns float64)."""
    net = NCSNpp(**dict(SMALL, embedding_type="positional", scale_by_sigma=True)).eval()
    labels, x = torch.tensor([0.0, 998.7]), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        scaled = net(x, labels)
        net.scale_by_sigma = False
        raw = net(x, labels)
    assert scaled.dtype == torch.float32
    # t = 998.7 truncates to index 998, as ``labels.long()`` does in the reference.
    expected = raw / net.sigmas[[0, 998]].float()[:, None, None, None]
    torch.testing.assert_close(scaled, expected)


def test_named_submodules() -> None:
    net = NCSNpp(**dict(SMALL, fir=True, progressive_input="residual", embedding_type="fourier"))
    names = dict(net.named_modules())
    for expected in ("fourier_proj", "temb_dense0", "conv_in", "enc.16x16_block0", "enc.8x8_down",
                     "enc.8x8_pyramid_down", "enc.8x8_attn0", "mid.attn", "dec.8x8_block1", "dec.16x16_up",
                     "norm_out", "conv_out"):
        assert expected in names, expected
    assert net.original_key_map()["all_modules.3.weight"] == "conv_in.weight"


# ---- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("progressive", "skip", r"unknown progressive 'skip'; valid values are: none, output_skip"),
        ("progressive_input", "bogus", r"valid values are: none, input_skip, residual$"),
        ("progressive_combine", "mul", r"valid values are: sum, cat$"),
        ("resblock_type", "wide", r"valid values are: biggan, ddpm$"),
        ("embedding_type", "learned", r"valid values are: fourier, positional$"),
        ("nonlinearity", "gelu", r"unknown nonlinearity 'gelu'"),
        ("conv_size", 5, r"unsupported model.conv_size 5"),
        ("normalization", "InstanceNorm", r"unsupported model.normalization"),
        ("attention_type", "legacy", r"unsupported model.attention_type"),
        ("num_heads", 4, r"unknown model config keys \['num_heads'\]"),
    ],
)
def test_bad_config_values(key: str, value: object, message: str) -> None:
    cfg, _, _ = load_fixture("ncsnpp_ve")
    model = dict(cfg["model"], **{key: value})
    with pytest.raises(ValueError, match=message):
        NCSNpp.from_config(model, cfg["data"])


def test_bad_config_model_name_and_data_keys() -> None:
    cfg, _, _ = load_fixture("ncsnpp_ve")
    with pytest.raises(ValueError, match="expected 'ncsnpp'"):
        NCSNpp.from_config(dict(cfg["model"], name="ddpm"), cfg["data"])
    with pytest.raises(ValueError, match=r"unknown data config keys \['colour'\]"):
        NCSNpp.from_config(cfg["model"], dict(cfg["data"], colour=True))


def test_checkpoint_shape_mismatch_is_named() -> None:
    cfg, ckpt, _ = load_fixture("ncsnpp_ve")
    net = NCSNpp.from_config(dict(cfg["model"], nf=32), cfg["data"])
    with pytest.raises(IncompatibleCheckpointError,
                       match=r"shape mismatches .*all_modules\.1\.weight \(64, 32\) vs \(128, 64\) expected"):
        load_original_state_dict(net, ckpt["model"])


def test_checkpoint_missing_and_unexpected_keys_are_named() -> None:
    cfg, ckpt, _ = load_fixture("ncsnpp_ve")
    net = NCSNpp.from_config(cfg["model"], cfg["data"])
    state = dict(ckpt["model"])
    del state["module.all_modules.4.Conv_1.bias"]
    state["module.all_modules.99.weight"] = torch.zeros(1)
    with pytest.raises(IncompatibleCheckpointError) as err:
        load_original_state_dict(net, state)
    text = str(err.value)
    assert "missing keys (1): all_modules.4.Conv_1.bias" in text
    assert "unexpected keys (1): all_modules.99.weight" in text
    # Built for another architecture: a DDPM++ checkpoint into the NCSN++ network.
    _, ddpmpp_ckpt, _ = load_fixture("ddpmpp_vp")
    with pytest.raises(IncompatibleCheckpointError, match="missing keys"):
        load_original_state_dict(net, ddpmpp_ckpt["model"])


def test_ema_length_mismatch() -> None:
    cfg, ckpt, _ = load_fixture("ncsnpp_ve")
    net = NCSNpp.from_config(cfg["model"], cfg["data"])
    ema = dict(ckpt["ema"], shadow_params=ckpt["ema"]["shadow_params"][:-1])
    with pytest.raises(IncompatibleCheckpointError, match="EMA has 155 shadow parameters"):
        original_ema_state_dict(net, ckpt["model"], ema)


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        NCSNpp(**dict(SMALL, image_size=18, ch_mult=(1, 2, 2)))
    with pytest.raises(ValueError, match="GroupNorm with"):
        NCSNpp(**dict(SMALL, nf=2))
