"""Class-conditional networks (``num_classes > 0``): NCSN++/DDPM++, DDPM and the toy MLP share one
:class:`~scoresde.nets.embeddings.ClassEmbedding` added to the noise embedding.

Asserted: ``num_classes=0`` builds exactly the original network (same parameters, same key set, the reference
fixture checkpoints load strictly and give bit-identical outputs to a network built without the option); a
conditional network's output depends on the label, ``None`` equals all ``-1``, rows are independent; the zero null
label reproduces the label-free network bit for bit; the learned null label is trained; every bad label or option is
one ``ValueError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from scoresde.checkpoint.state_dict import load_original_checkpoint, load_original_state_dict, to_original_state_dict
from scoresde.config import build_network, build_score_model
from scoresde.config.factory import CONDITIONAL_NETWORK_NAMES
from scoresde.config.schema import ConfigError, apply_overrides, config_from_dict, load_config
from scoresde.nets import (
    CONDITIONAL_NETWORKS,
    DDPM,
    NCSN,
    NULL_LABEL,
    NULL_LABEL_MODES,
    SCORE_NETWORKS,
    ClassEmbedding,
    NCSNpp,
)
from scoresde.nets.toy import ToyMLP
from tests.nets.test_ncsnpp import build_net, load_fixture

SMALL_UNET = dict(image_size=8, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0)

# name -> (build the network with extra options, an input batch of 4, its noise labels)
CASES: dict[str, tuple[Callable[..., torch.nn.Module], Callable[[], torch.Tensor], torch.Tensor]] = {
    "NCSNpp-fourier": (lambda **kw: NCSNpp(**SMALL_UNET, fir=True, progressive_input="residual",
                                           embedding_type="fourier", scale_by_sigma=True, centered=False, **kw),
                       lambda: torch.rand(4, 3, 8, 8), torch.tensor([0.5, 20.0, 3.0, 0.1])),
    "DDPMpp-positional": (lambda **kw: NCSNpp(**SMALL_UNET, **kw), lambda: torch.randn(4, 3, 8, 8),
                          torch.tensor([3.0, 900.0, 10.0, 500.0])),
    "DDPM": (lambda **kw: DDPM(**{**SMALL_UNET, "nf": 32}, **kw), lambda: torch.randn(4, 3, 8, 8),
             torch.tensor([5, 999, 10, 400])),
    "ToyMLP": (lambda **kw: ToyMLP(dim=2, hidden=16, depth=2, **kw), lambda: torch.randn(4, 2),
               torch.tensor([10.0, 900.0, 100.0, 300.0])),
}


def _build(case: str, **options) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    make_net, make_x, noise_labels = CASES[case]
    torch.manual_seed(0)
    net = make_net(**options).eval()
    with torch.no_grad():  # non-zero output layers, so that equal outputs are not trivially zero
        for name, p in net.named_parameters():
            if not name.startswith("label_embed"):
                p.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(1)
    return net, make_x(), noise_labels


# ---- unconditional networks are unchanged ------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_num_classes_zero_is_the_unconditional_network(case: str) -> None:
    default, x, t = _build(case)
    explicit, _, _ = _build(case, num_classes=0, null_label="zero")
    assert default.label_embed is None and explicit.label_embed is None
    assert default.num_classes == explicit.num_classes == 0
    assert not any("label" in k for k in default.state_dict())
    assert default.state_dict().keys() == explicit.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(default(x, t), explicit(x, t))


@pytest.mark.parametrize("name", ["ncsnpp_ve", "ddpmpp_vp", "ddpm_vp"])
def test_reference_checkpoints_load_strictly_with_num_classes_zero(name: str) -> None:
    """An original checkpoint loads strictly (no missing, no unexpected key) into a network built with
    ``num_classes=0`` from the fixture config, whose output is bit-identical to the fixture network's (which the
    reference tests compare with the original code's outputs)."""
    cfg, ckpt, io = load_fixture(name)
    cls = NCSNpp if cfg["model"]["name"] == "ncsnpp" else DDPM
    net = cls.from_config({**cfg["model"], "num_classes": 0}, cfg["data"])
    load_original_checkpoint(net, ckpt)
    net.eval()
    assert set(net.original_key_map()) == {k.removeprefix("module.") for k in ckpt["model"]}
    with torch.no_grad():
        assert torch.equal(net(io["x"], io["labels"]), build_net(name)(io["x"], io["labels"]))


@pytest.mark.parametrize("case", list(CASES))
def test_other_weights_do_not_depend_on_num_classes(case: str) -> None:
    """The class table is built last: the same seed gives the conditional network the unconditional one's weights."""
    torch.manual_seed(0)
    plain = CASES[case][0]()
    torch.manual_seed(0)
    cond = CASES[case][0](num_classes=5)
    own = {k: v for k, v in cond.state_dict().items() if not k.startswith("label_embed")}
    assert own.keys() == plain.state_dict().keys()
    for k, v in plain.state_dict().items():
        assert torch.equal(own[k], v), k


# ---- conditional behaviour ---------------------------------------------------------------------------------


@pytest.mark.parametrize("null_label", NULL_LABEL_MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_output_depends_on_the_label_and_none_is_all_null(case: str, null_label: str) -> None:
    net, x, t = _build(case, num_classes=3, null_label=null_label)
    assert net.num_classes == 3
    y = torch.tensor([0, 1, 2, NULL_LABEL])
    with torch.no_grad():
        out = net(x, t, y)
        same = {k: net(x, t, torch.full((4,), k)) for k in (0, 1, 2, NULL_LABEL)}  # one label for every row
        assert out.shape == same[0].shape == (x.shape[0], *x.shape[1:])
        for k in same:  # each class gives its own output, and the null label yet another
            assert all((same[k] - same[j]).abs().amax() > 1e-3 for j in same if j != k)
        assert torch.equal(net(x, t, None), same[NULL_LABEL])
        # rows are independent: row i of a mixed batch is row i of the batch with label y_i everywhere
        for i, label in enumerate(y.tolist()):
            torch.testing.assert_close(out[i], same[label][i], rtol=1e-5, atol=1e-6)
        # int32 labels are the same labels
        assert torch.equal(out, net(x, t, y.to(torch.int32)))


@pytest.mark.parametrize("case", list(CASES))
def test_zero_null_label_is_exactly_the_label_free_network(case: str) -> None:
    plain, x, t = _build(case)
    cond, _, _ = _build(case, num_classes=4, null_label="zero")
    cond.load_state_dict({**plain.state_dict(), "label_embed.weight": cond.label_embed.weight})  # strict
    assert cond.label_embed.weight.shape == (4, cond.label_embed.dim)  # no null row
    with torch.no_grad():
        expected = plain(x, t)
        assert torch.equal(cond(x, t), expected)
        assert torch.equal(cond(x, t, torch.full((4,), NULL_LABEL)), expected)
        mixed = cond(x, t, torch.tensor([NULL_LABEL, 2, NULL_LABEL, 0]))
    torch.testing.assert_close(mixed[[0, 2]], expected[[0, 2]], rtol=1e-6, atol=1e-7)


def test_class_embedding_table_and_null_rows() -> None:
    torch.manual_seed(0)
    learned, zero = ClassEmbedding(3, 8), ClassEmbedding(3, 8, null_label="zero")
    assert learned.weight.shape == (4, 8) and zero.weight.shape == (3, 8)
    y = torch.tensor([2, NULL_LABEL, 0])
    assert torch.equal(learned(y, 3), learned.weight[[2, 3, 0]])
    assert torch.equal(zero(y, 3), torch.stack([zero.weight[2], torch.zeros(8), zero.weight[0]]))
    assert torch.equal(zero(None, 2), torch.zeros(2, 8))
    assert torch.equal(learned(None, 2), learned.weight[[3, 3]])
    # the learned null row is trained by null labels; the zero null label has nothing to train
    learned(torch.tensor([NULL_LABEL, 1]), 2).sum().backward()
    assert learned.weight.grad[3].abs().sum() > 0 and learned.weight.grad[[0, 2]].abs().sum() == 0
    zero(torch.tensor([NULL_LABEL, NULL_LABEL]), 2).sum().backward()
    assert zero.weight.grad is None or zero.weight.grad.abs().sum() == 0
    emb = torch.randn(3, 8, dtype=torch.float64)
    assert learned.add_to(emb, y).dtype == torch.float64


def test_conditional_net_backward_reaches_the_table() -> None:
    net, x, t = _build("DDPMpp-positional", num_classes=3)
    net.train()
    net(x, t, torch.tensor([0, 1, 1, NULL_LABEL])).square().mean().backward()
    grad = net.label_embed.weight.grad
    assert grad is not None and (grad[[0, 1, 3]].abs().sum(dim=1) > 0).all() and grad[2].abs().sum() == 0


# ---- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("labels", "message"), [
    (torch.tensor([0.0, 1.0, 2.0, 0.0]), "got dtype torch.float32"),
    (torch.tensor([True, False, True, False]), "got dtype torch.bool"),
    (torch.tensor([[0], [1], [2], [0]]), r"got shape \(4, 1\)"),
    (torch.tensor([0, 1]), r"got shape \(2,\)"),
    (torch.tensor([0, 1, 3, 0]), "got label 3"),
    (torch.tensor([0, -2, 1, 0]), "got label -2"),
    ([0, 1, 2, 0], "got list"),
])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_class_labels(case: str, labels, message: str) -> None:
    net, x, t = _build(case, num_classes=3)
    with pytest.raises(ValueError, match=rf"^class_labels must be an integer tensor of shape \(4,\) with entries in "
                                         rf"\[-1, 3\).*{message}"):
        net(x, t, labels)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_options(case: str) -> None:
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 0 .* got -1"):
        _build(case, num_classes=-1)
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 0 .* got 2.5"):
        _build(case, num_classes=2.5)
    with pytest.raises(ValueError, match=r"unknown null_label 'none'; valid values are: learned, zero"):
        _build(case, num_classes=2, null_label="none")
    with pytest.raises(ValueError, match=r"unknown null_label 'none'"):  # also when unconditional: never ignored
        _build(case, null_label="none")


@pytest.mark.parametrize("cls", [NCSNpp, DDPM])
def test_classes_need_a_time_embedding(cls) -> None:
    with pytest.raises(ValueError, match=r"num_classes=3 needs conditional=True"):
        cls(**{**SMALL_UNET, "nf": 32}, conditional=False, num_classes=3)


def test_unconditional_errors_name_the_conditional_networks() -> None:
    net, x, t = _build("ToyMLP")
    with pytest.raises(ValueError, match=r"^ToyMLP was built class-unconditional \(model.num_classes is not set\); "
                                         r"got class_labels$"):
        net(x, t, torch.zeros(4, dtype=torch.int64))
    ncsn = NCSN(in_channels=3, nf=4, num_scales=3).eval()
    with pytest.raises(ValueError, match=r"^NCSN was built class-unconditional \(it has no class conditioning; the "
                                         r"class-conditional networks are those of scoresde\.nets\.CONDITIONAL_NETWORKS"
                                         r".*got class_labels$"):
        ncsn(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert CONDITIONAL_NETWORKS == (NCSNpp, DDPM, ToyMLP)
    assert all(net.class_conditional == (net in CONDITIONAL_NETWORKS) for net in SCORE_NETWORKS)
    assert CONDITIONAL_NETWORK_NAMES == ("ncsnpp", "ddpm", "toy_mlp")  # the config names, read from the classes


# ---- config, factory and the original checkpoint layout ------------------------------------------------------


def test_config_builds_conditional_networks() -> None:
    cfg = load_config("digits/vp_ddpmpp", ["model.num_classes=10", "model.null_label=zero", "model.nf=16"])
    net = build_network(cfg.to_dict())
    assert isinstance(net, NCSNpp) and net.label_embed.num_classes == 10 and net.label_embed.null_label == "zero"
    raw = cfg.to_dict()
    raw["model"]["num_classes"] = 10.0  # JSON numbers
    assert build_network(raw).label_embed.num_classes == 10
    toy = build_score_model("toy/gaussian_mixture_conditional")
    assert toy.net.label_embed.num_classes == 3 and toy.net.label_embed.null_label == "learned"
    x, t = torch.randn(5, 2), torch.rand(5)
    with torch.no_grad():  # the score model passes cond through to the network
        assert not torch.equal(toy.score(x, t, class_labels=torch.zeros(5, dtype=torch.int64)), toy.score(x, t))
    psld = build_score_model(apply_overrides(load_config("toy/gaussian_mixture_psld").to_dict(),
                                             ["model.num_classes=3"]))
    assert psld.net.label_embed.num_classes == 3  # phase-space models too


def test_config_errors() -> None:
    with pytest.raises(ValueError, match=r"model.name 'ncsn' has no class conditioning .* the class-conditional "
                                         r"networks are ncsnpp, ddpm, toy_mlp"):
        build_network(apply_overrides(load_config("ve/ncsn/cifar10").to_dict(), ["model.num_classes=10"]))
    base = load_config("toy/gaussian_mixture").to_dict()
    with pytest.raises(ConfigError, match=r"training.label_dropout must be a finite number in \[0, 1\), got 1.0"):
        config_from_dict({**base, "model": {**base["model"], "num_classes": 3},
                          "training": {**base["training"], "label_dropout": 1.0}})
    with pytest.raises(ConfigError, match=r"training.label_dropout must be a finite number in \[0, 1\), got -0.1"):
        config_from_dict({**base, "training": {**base["training"], "label_dropout": -0.1}})
    with pytest.raises(ConfigError, match=r"training.label_dropout=0.1 needs a class-conditional model "
                                          r"\(model.num_classes > 0\), got model.num_classes=0"):
        load_config("toy/gaussian_mixture", ["training.label_dropout=0.1"])
    cfg = load_config("toy/gaussian_mixture", ["model.num_classes=3", "training.label_dropout=0.2"])
    assert cfg.model["num_classes"] == 3 and cfg.training.label_dropout == 0.2
    with pytest.raises(ConfigError, match=r"unknown config key model\.num_class"):
        load_config("toy/gaussian_mixture", ["model.num_class=3"])


def test_original_layout_of_a_conditional_network() -> None:
    """``label_embed.weight`` (our extension) travels under its own name through the original checkpoint layout."""
    net, x, t = _build("DDPMpp-positional", num_classes=3)
    exported = to_original_state_dict(net)
    assert "module.label_embed.weight" in exported and not any(k.startswith("module.all_modules") and "label" in k
                                                               for k in exported)
    torch.manual_seed(5)
    other = CASES["DDPMpp-positional"][0](num_classes=3).eval()
    load_original_state_dict(other, exported)
    y = torch.tensor([2, 0, NULL_LABEL, 1])
    with torch.no_grad():
        assert torch.equal(other(x, t, y), net(x, t, y))
