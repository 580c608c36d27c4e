"""EDM, CosineVP and RectifiedFlow through every registered sampler that takes a scalar SDE, the likelihood, guidance,
inpainting and the loss, with the exact scores of a Gaussian mixture and no code of their own anywhere else.

Sampling criterion (as ``tests/sampling/test_samplers_exact_score.py``): the energy distance of 1000 samples to a
reference set is at most ``FACTOR`` times that of independent true sets of the same size, and the mixture weights are
recovered. Measured ratios (2026-12-07, this file's settings): 0.3-2.3. ``reverse_diffusion`` (Euler–Maruyama on the
uniform grid) needs 500 steps: with 200, EDM's ratio is 4.2 (steps of 0.4 in ``sigma``) and CosineVP's weights are 0.1
off (``beta(T) = 370``: ``beta dt = 1.9`` in the first steps). Each sampler stops at the SDE's noise floor
(EDM: ``sigma_min = 0.002``; the others ``1e-3``)."""

from __future__ import annotations

import pytest
import torch

import scoresde
from scoresde.guidance import classifier
from scoresde.losses import sde_loss
from scoresde.sampling import SAMPLERS
from scoresde.sdes import EDM, CosineVP, RectifiedFlow
from scoresde.toy import GaussianMixture, energy_distance

F64 = torch.float64
N_SAMPLES, FACTOR, WEIGHT_TOL = 1000, 5.0, 0.05
SDES = {"edm": EDM, "cosine": CosineVP, "rectified_flow": RectifiedFlow}
#: (sampler, options): every registered sampler that takes a scalar SDE (sscs is the phase-space splitting sampler)
CASES = [
    ("pc", {"steps": 500, "predictor": "reverse_diffusion", "corrector": "none"}),
    ("pc", {"steps": 100, "predictor": "euler_maruyama", "corrector": "none", "grid": "logSNR"}),
    ("pc", {"steps": 100, "predictor": "ancestral_sampling", "corrector": "langevin", "grid": "logSNR"}),
    ("ode", {}),
    ("ddim", {"steps": 30, "grid": "logSNR"}),
    ("ddim", {"steps": 50, "grid": "logSNR", "eta": 1.0}),
    ("heun", {"steps": 18}),
    ("heun", {"steps": 30, "s_churn": 10.0}),
    ("unipc", {"steps": 15}),
    ("dpm_solver", {"steps": 15}),
]
#: the slower variants (a predictor, a corrector, churn, eta) of samplers whose fast form runs in the default selection
SLOW = {("pc", "langevin"), ("pc", "reverse_diffusion"), ("heun", "s_churn"), ("ddim", "eta")}


def _floor(sde) -> float:
    return getattr(sde, "sampling_eps", 1e-3)


def _params() -> list:
    out = []
    for name in SDES:
        for sampler, options in CASES:
            slow = any(s == sampler and key in options.values() | options.keys() for s, key in SLOW)
            out.append(pytest.param(name, sampler, options, marks=[pytest.mark.slow] if slow else [],
                                    id=f"{name}-{sampler}-{'-'.join(f'{k}={v}' for k, v in options.items())}"))
    return out


@pytest.fixture(scope="module")
def oracle() -> dict:
    gm = GaussianMixture.example_2d()
    g = torch.Generator().manual_seed(1234)
    reference = gm.sample(N_SAMPLES, g)
    baseline = sum(energy_distance(gm.sample(N_SAMPLES, g), reference) for _ in range(4)) / 4
    return {"gm": gm, "reference": reference, "baseline": baseline}


def test_every_scalar_sampler_is_covered() -> None:
    takers = {name for name in SAMPLERS if name != "sscs"}
    assert takers == {sampler for sampler, _ in CASES}


@pytest.mark.parametrize(("name", "sampler", "options"), _params())
def test_sampler_reproduces_the_mixture(oracle: dict, name: str, sampler: str, options: dict) -> None:
    sde, gm = SDES[name](), oracle["gm"]
    x = scoresde.sample(sde, gm.score_fn(sde), (N_SAMPLES, 2), sampler, generator=torch.Generator().manual_seed(7),
                        dtype=F64, eps=_floor(sde), **options)
    assert torch.isfinite(x).all()
    ratio = energy_distance(x, oracle["reference"]) / oracle["baseline"]
    assert ratio <= FACTOR, f"{name}/{sampler}: energy distance {ratio:.2f}x the true-vs-true baseline"
    proportions = torch.bincount(gm.responsibilities(x).argmax(1), minlength=gm.num_components) / x.shape[0]
    torch.testing.assert_close(proportions.double(), gm.weights, atol=WEIGHT_TOL, rtol=0)


@pytest.mark.parametrize("name", sorted(SDES))
def test_likelihood_is_the_mixture_density(name: str) -> None:
    """Exact-trace probability-flow likelihood (dopri5, and the exponential ``exp4m`` of scalar schedules) against
    ``log p_eps`` of the mixture; the prior mismatch ``log p_T - log N`` (computable here) removed, only the solver's
    error is left."""
    sde, gm = SDES[name](), GaussianMixture.example_2d()
    eps = 1e-5 * sde.T
    x = gm.sample(200, torch.Generator().manual_seed(0))
    truth = gm.log_prob(x, eps, sde)
    logp, info = scoresde.log_likelihood(sde, gm.score_fn(sde), x, trace="exact", eps=eps, return_info=True)
    mismatch = gm.log_prob(info.latent, sde.T, sde) - info.prior_logp
    assert float((logp - truth).abs().mean()) / 2 < 0.01  # nats/dim, prior mismatch included
    solver = (logp + mismatch - truth).abs()
    assert float(solver.mean()) < 5e-4 and float(solver.max()) < 1e-2, (float(solver.mean()), float(solver.max()))
    # the exponential multistep method of scalar schedules, 80 steps on the logSNR grid: measured mean differences
    # 3.5e-4 (EDM), 5.0e-4 (CosineVP), 4.4e-3 (RectifiedFlow) nats from a dopri5 solve at rtol = atol = 1e-8
    fixed = scoresde.log_likelihood(sde, gm.score_fn(sde), x, trace="exact", eps=eps, method="exp4m", steps=80)
    assert float((fixed - logp).abs().mean()) < 1e-2


@pytest.mark.parametrize("name", sorted(SDES))
def test_classifier_guidance_inpainting_and_loss(name: str) -> None:
    sde, gm = SDES[name](), GaussianMixture.example_2d()
    # guidance by the exact noisy classifier at scale 1 draws from the requested component
    y = torch.tensor([0, 1, 2] * 10)
    x = scoresde.sample(sde, classifier(gm.score_fn(sde), gm.classifier_fn(sde)), (30, 2), "ddim",
                        cond={"class_labels": y}, steps=25, grid="logSNR", eps=_floor(sde),
                        generator=torch.Generator().manual_seed(1), dtype=F64)
    hit = gm.responsibilities(x).gather(1, y[:, None])[:, 0] > 0.5
    assert float(hit.float().mean()) >= 0.95
    # inpainting keeps the observed coordinate and fills the other from the conditional law
    img = torch.tensor([2.0, 0.0], dtype=F64).reshape(1, 2, 1, 1).expand(400, -1, -1, -1).contiguous()
    mask = torch.tensor([1.0, 0.0], dtype=F64).reshape(1, 2, 1, 1)
    score = gm.score_fn(sde)
    img_score = lambda v, t: score(v.reshape(-1, 2), t).reshape(v.shape)  # noqa: E731
    filled = scoresde.inpaint(sde, img_score, img, mask, generator=torch.Generator().manual_seed(4), dtype=F64,
                              steps=200, eps=_floor(sde))
    assert torch.equal(filled[:, 0], img[:, 0]) and torch.isfinite(filled).all()
    # (replacement is not exact for the conditional law, on any SDE: only where the free coordinate may go is checked)
    assert float(filled[:, 1].abs().max()) < 6.0
    # the denoising loss of the exact score is the irreducible part only: small, finite, positive
    batch = gm.sample(256, torch.Generator().manual_seed(6))
    loss = sde_loss(score, sde, batch, generator=torch.Generator().manual_seed(3), reduce_mean=True)
    assert torch.isfinite(loss) and float(loss) > 0
