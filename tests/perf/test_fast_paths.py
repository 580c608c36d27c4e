"""The fast paths keep the numbers: multi-tensor EMA and Adam, activation checkpointing, channels_last, the
average-pool downsampling; each compared with an independent (pre-change) implementation kept here."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from scoresde.config import build_network, build_score_model, load_config
from scoresde.nets import DDPM, NCSNpp
from scoresde.nets.upfirdn import naive_downsample_2d
from scoresde.training.build import build_optimizer
from scoresde.training.ema import EMA

SMALL = dict(image_size=8, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.3)


def _perturbed(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-zero output layers (``init_scale=0`` would make every comparison trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


def _loop_ema(shadow: dict[str, torch.Tensor], params: dict[str, torch.Tensor], decay: float, n: int) -> None:
    """The pre-change EMA step: a Python loop of ``shadow -= (1 - d)(shadow - p)``."""
    d = min(decay, (1 + n) / (10 + n))
    for name, p in params.items():
        if name in shadow:
            shadow[name].sub_((1.0 - d) * (shadow[name] - p))


def test_foreach_ema_equals_the_loop_update() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    net[1].bias.requires_grad_(False)  # frozen parameters are not averaged
    ema = EMA(net, decay=0.99)
    ref = {k: v.clone() for k, v in ema.shadow.items()}
    assert set(ref) == {"0.weight", "0.bias", "1.weight"}
    for n in range(1, 30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ema.update(net)
        _loop_ema(ref, {k: v.detach() for k, v in net.named_parameters()}, 0.99, n)
    for k in ref:
        torch.testing.assert_close(ema.shadow[k], ref[k], rtol=1e-6, atol=1e-6)
    # the warm-up decay d_n = min(0.99, (1 + n)/(10 + n)) really moved the shadow off the initial weights
    assert not torch.allclose(ema.shadow["0.weight"], net[0].weight.detach() * 0 + ref["0.weight"] + 1)
    with pytest.raises(ValueError, match="lacks averaged parameters"):
        ema.update(nn.Linear(5, 7))


def test_foreach_adam_equals_the_for_loop_adam() -> None:
    cfg = load_config("vp/cifar10_ddpmpp_continuous", ["optim.lr=0.01", "optim.weight_decay=0.01"])
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(6, 8), nn.SiLU(), nn.Linear(8, 2))
    b = copy.deepcopy(a)
    opt_a = build_optimizer(cfg, a.parameters())
    assert opt_a.param_groups[0]["foreach"] is True  # CPU: multi-tensor kernels (fused is CUDA's)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2, betas=(cfg.optim.beta1, 0.999), eps=cfg.optim.eps,
                             weight_decay=0.01, foreach=False)
    x = torch.randn(16, 6)
    for _ in range(5):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(a[0].weight, copy.deepcopy(b)[0].weight * 0)


def test_avg_pool_downsampling_is_the_window_mean() -> None:
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    ref = x.reshape(2, 3, 4, 2, 3, 2).mean(dim=(3, 5))  # the pre-change implementation
    torch.testing.assert_close(naive_downsample_2d(x), ref, rtol=0, atol=1e-15)
    assert naive_downsample_2d(x, factor=2)[0, 0, 0, 0] == pytest.approx(float(x[0, 0, :2, :2].mean()), abs=1e-15)


SMALL_DDPM = dict(image_size=8, nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.3)
NETWORKS = {
    "ncsnpp-fir": lambda **kw: NCSNpp(**{**SMALL, **kw}, fir=True, progressive_input="residual",
                                      embedding_type="fourier", scale_by_sigma=True),
    "ddpmpp": lambda **kw: NCSNpp(**{**SMALL, **kw}),
    "ddpm": lambda **kw: DDPM(**{**SMALL_DDPM, **kw}),
}


def _labels(name: str) -> torch.Tensor:
    return torch.tensor([0.5, 20.0]) if name == "ncsnpp-fir" else torch.tensor([10.0, 700.0])


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``fn`` runs."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out


@pytest.mark.parametrize("name", list(NETWORKS))
def test_checkpointing_gives_the_same_gradients_with_less_saved(name: str) -> None:
    torch.manual_seed(0)
    plain = _perturbed(NETWORKS[name]()).train()
    ckpt = NETWORKS[name](checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8, 8)
    results = []
    for net in (plain, ckpt):
        torch.manual_seed(7)  # the same dropout masks: checkpointing restores the RNG for the recomputation
        saved, out = _saved_bytes(lambda net=net: net(x, _labels(name)))
        out.square().mean().backward()
        results.append((saved, out.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (saved_p, out_p, grads_p), (saved_c, out_c, grads_c) = results
    torch.testing.assert_close(out_c, out_p, rtol=0, atol=0)
    assert len(grads_c) == len(grads_p) > 10
    for gc, gp in zip(grads_c, grads_p, strict=True):
        torch.testing.assert_close(gc, gp, rtol=1e-5, atol=1e-6)
    # only block inputs are kept: well under half of the activations of the plain network
    assert saved_c < 0.5 * saved_p, (saved_c, saved_p)
    with torch.no_grad():  # sampling: a plain forward, nothing recomputed
        torch.testing.assert_close(ckpt.eval()(x, _labels(name)), plain.eval()(x, _labels(name)), rtol=0, atol=0)


def test_checkpointing_is_a_config_field_and_must_be_a_bool() -> None:
    cfg = load_config("vp/cifar10_ddpmpp_continuous", ["model.nf=16", "model.num_res_blocks=1",
                                                        "model.checkpointing=true"])
    model = build_score_model(cfg)
    assert model.net.checkpointing is True
    with pytest.raises(ValueError, match="checkpointing must be true or false, got 'False'"):
        NCSNpp(**SMALL, checkpointing="False")
    with pytest.raises(ValueError, match="checkpointing must be true or false"):
        DDPM(**SMALL_DDPM, checkpointing=1)


@pytest.mark.parametrize("name", ["ncsnpp-fir", "ddpm"])
def test_channels_last_keeps_the_outputs_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    net = _perturbed(NETWORKS[name](dropout=0.0)).train()  # (dropout masks follow the memory order)
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 8, 8)
    torch.manual_seed(1)
    out = net(x, _labels(name))
    torch.manual_seed(1)
    out_cl = net_cl(x.contiguous(memory_format=torch.channels_last), _labels(name))
    scale = float(out.detach().abs().max())
    assert scale > 1e-3
    torch.testing.assert_close(out_cl, out, rtol=0, atol=1e-5 * scale)
    out.square().mean().backward()
    out_cl.square().mean().backward()
    for p, q in zip(net.parameters(), net_cl.parameters(), strict=True):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5 * float(p.grad.abs().max()) + 1e-8)


DIGITS_SMALL = ["model.nf=16", "model.ch_mult=[1, 2]", "model.num_res_blocks=1", "model.attn_resolutions=[8]",
                "model.dropout=0.0"]


def test_channels_last_is_a_config_field_that_keeps_the_scores(tmp_path) -> None:
    from scoresde.checkpoint import load_checkpoint, save_checkpoint
    from scoresde.training.workdir import check_workdir_config, prepare_workdir

    torch.manual_seed(0)
    plain = _perturbed(build_score_model(load_config("digits/vp_ddpmpp", DIGITS_SMALL).to_dict()).net)
    cfg_cl = load_config("digits/vp_ddpmpp", [*DIGITS_SMALL, "model.channels_last=true"])
    torch.manual_seed(0)
    model = build_score_model(cfg_cl.to_dict())
    _perturbed(model.net)
    convs = [p for p in model.net.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert all(not p.is_contiguous() for p in convs if p.shape[1] > 1 and p.shape[-1] > 1)  # (else both orders agree)
    for net in (build_network(cfg_cl.to_dict()), build_score_model(cfg_cl.to_dict(), dtype=torch.float64).net):
        assert all(not p.is_contiguous() for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1 < p.shape[-1])
    x, t = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        ref = model.with_net(plain).score(x, t)
    assert float(ref.abs().max()) > 1e-2
    with torch.no_grad():
        torch.testing.assert_close(model.score(x, t), ref, rtol=0, atol=1e-5 * float(ref.abs().max()))
    # a checkpoint of the NHWC network loads (safetensors needs contiguous tensors) into an NHWC network again
    save_checkpoint(tmp_path / "ckpt", model.net, cfg_cl.to_dict())
    loaded = load_checkpoint(tmp_path / "ckpt", use_ema=False)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in loaded.net.parameters() if p.dim() == 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(x, t), model.score(x, t), rtol=0, atol=0)
    # a layout change does not make a run folder "another config"
    prepare_workdir(tmp_path / "run", load_config("digits/vp_ddpmpp", DIGITS_SMALL))
    check_workdir_config(tmp_path / "run", cfg_cl)


def test_channels_last_refuses_non_bools_and_networks_without_convolutions() -> None:
    with pytest.raises(ValueError, match=r"model\.channels_last must be true or false, got 'yes'"):
        build_score_model(load_config("digits/vp_ddpmpp", [*DIGITS_SMALL, "model.channels_last=yes"]).to_dict())
    with pytest.raises(ValueError, match=r"ToyMLP .*'toy_mlp'.* has no convolution"):
        build_score_model(load_config("toy/gaussian_mixture", ["model.channels_last=true"]).to_dict())


@pytest.mark.slow  # worker start-up: ~15 s on a loaded 2-core machine
def test_loader_with_workers_yields_the_same_batches() -> None:
    from scoresde.training.data import PointDataset, StepBatchSampler, make_loader

    points = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    ds = PointDataset(points, torch.arange(20) % 3)

    def batches(workers: int) -> list[torch.Tensor]:
        sampler = StepBatchSampler(20, 4, seed=3, start_step=0, rank=0, world_size=1, grad_accum=1, num_steps=6)
        return [x for x, _ in make_loader(ds, sampler, workers, prefetch_factor=3)]

    plain, workers = batches(0), batches(2)
    assert len(plain) == len(workers) == 6
    for a, b in zip(plain, workers, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(plain[0], plain[1])  # a real shuffle: different batches per step
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        make_loader(ds, StepBatchSampler(20, 4, 3, 0, 0, 1, 1, 6), -1)


@pytest.mark.slow  # inductor start-up: tens of seconds on a loaded 2-core machine
def test_regional_compilation_keeps_outputs_and_keys() -> None:
    from scoresde.nets.unet_blocks import compile_blocks

    torch.manual_seed(0)
    net = _perturbed(NETWORKS["ncsnpp-fir"](dropout=0.0)).eval()
    keys = list(net.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        eager = net(x, _labels("ncsnpp-fir"))
        assert compile_blocks(net) == 13  # every residual (incl. up/down) and attention block
        compiled = net(x, _labels("ncsnpp-fir"))
    assert list(net.state_dict()) == keys
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-4 * float(eager.abs().max()))
