"""The losses on the reference checkpoints equal the original's formulas evaluated on the reference outputs.

For each fixture we choose clean data so that the loss's perturbed input is exactly the fixture's ``x`` (for the
given ``t``/labels and noise ``z``); the original loss is then a closed expression of the reference network or score
output stored in the fixture, written here independently of ``scoresde.losses``. Float64 weights against the
``*_f64`` outputs make the comparison tight.
"""

from __future__ import annotations

import json

import pytest
import torch

from scoresde.checkpoint import load_score_sde_checkpoint
from scoresde.losses import ddpm_loss, sde_loss, smld_loss
from tests.reference import load_reference, require_reference

F64 = torch.float64


def _load(name: str):
    cfg = json.loads(require_reference(f"{name}.config.json").read_text())
    model = load_score_sde_checkpoint(require_reference(f"{name}.ckpt.pt"), cfg, use_ema=False, dtype=F64)
    return model, cfg, load_reference(f"{name}.io.pt")


def _half_sum(v: torch.Tensor) -> torch.Tensor:
    return 0.5 * v.flatten(1).sum(1)


@pytest.mark.parametrize("name", ["ncsnpp_ve", "ncsnpp_deep_skip", "ddpmpp_vp"])
@pytest.mark.parametrize("likelihood_weighting", [False, True])
def test_continuous_dsm_matches_the_original(name: str, likelihood_weighting: bool) -> None:
    model, cfg, io = _load(name)
    sde = model.sde
    x, t = io["x"].to(F64), io["t"].to(F64)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    alpha, std = sde.alpha(t).reshape(-1, 1, 1, 1), sde.sigma(t).reshape(-1, 1, 1, 1)
    batch = (x - std * z) / alpha  # so that the perturbed data are exactly the fixture's x
    with torch.no_grad():
        ours = sde_loss(model, sde, batch, t=t, noise=z, reduce_mean=cfg["training"]["reduce_mean"],
                        likelihood_weighting=likelihood_weighting)
    score = io["score_model_f64"]  # the original get_score_fn(sde, model)(x, t)
    reduce = (lambda v: v.flatten(1).mean(1)) if cfg["training"]["reduce_mean"] else _half_sum
    if likelihood_weighting:
        g2 = sde.sde(x, t)[1] ** 2
        expected = (reduce((score + z / std) ** 2) * g2).mean()
    else:
        expected = reduce((score * std + z) ** 2).mean()
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=0)


def test_ddpm_loss_matches_the_original() -> None:
    model, cfg, io = _load("ddpm_vp")
    sde, labels = model.sde, io["labels"]
    x = io["x"].to(F64)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    a = sde.sqrt_alphas_cumprod[labels].to(F64).reshape(-1, 1, 1, 1)
    s = sde.sqrt_1m_alphas_cumprod[labels].to(F64).reshape(-1, 1, 1, 1)
    batch = (x - s * z) / a
    with torch.no_grad():
        ours = ddpm_loss(model, sde, batch, labels=labels, noise=z, reduce_mean=cfg["training"]["reduce_mean"])
    expected = ((io["out_model_f64"] - z) ** 2).flatten(1).mean(1).mean()  # DDPM configs use reduce_mean=True
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=0)


@pytest.mark.parametrize("name", ["ncsn", "ncsnv2"])
def test_smld_loss_matches_the_original(name: str) -> None:
    model, cfg, io = _load(name)
    sde, labels = model.sde, io["labels"]
    x = io["x"].to(F64)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    sigmas = model.net.sigmas.to(F64) if hasattr(model.net, "sigmas") else torch.flip(sde.discrete_sigmas, (0,))
    sig = sigmas[labels].to(F64).reshape(-1, 1, 1, 1)  # index 0 = sigma_max (the network's order)
    batch = x - sig * z
    with torch.no_grad():
        ours = smld_loss(model, sde, batch, labels=labels, noise=z, reduce_mean=cfg["training"]["reduce_mean"])
    target = -z / sig
    expected = (_half_sum((io["out_model_f64"] - target) ** 2) * sig.flatten() ** 2).mean()
    torch.testing.assert_close(ours, expected, rtol=1e-7, atol=0)
