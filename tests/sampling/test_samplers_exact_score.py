"""Every SDE x sampler reproduces a Gaussian mixture when given the mixture's exact perturbed score.

Criterion: the energy distance between 2000 samples and an independent reference set of true samples is at most
``FACTOR`` times the mean distance of independent true sets of the same size to that reference, and the mixture
weights are recovered (within ``WEIGHT_TOL``). A negative control with a slightly wrong score must fail it.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from scoresde import sample
from scoresde.sdes import VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture, energy_distance

N_SAMPLES, N_STEPS = 2000, 500
FACTOR, WEIGHT_TOL = 5.0, 0.04
SDE_FACTORIES = {"ve": lambda: VESDE(N=N_STEPS), "vp": lambda: VPSDE(N=N_STEPS),
                 "subvp": lambda: SubVPSDE(N=N_STEPS)}
PREDICTORS = ["euler_maruyama", "reverse_diffusion", "ancestral_sampling", "none"]
CORRECTORS = ["langevin", "ald", "none"]
PC_CASES = [(s, p, c) for s, p, c in itertools.product(SDE_FACTORIES, PREDICTORS, CORRECTORS)
            if not (p == "none" and c == "none")]


@pytest.fixture(scope="module")
def oracle() -> dict:
    gm = GaussianMixture.example_2d()
    g = torch.Generator().manual_seed(1234)
    reference = gm.sample(N_SAMPLES, g)
    baseline = sum(energy_distance(gm.sample(N_SAMPLES, g), reference) for _ in range(4)) / 4
    return {"gm": gm, "reference": reference, "baseline": baseline}


def _check(x: torch.Tensor, oracle: dict, what: str) -> None:
    gm = oracle["gm"]
    assert torch.isfinite(x).all(), f"{what}: non-finite samples"
    ratio = energy_distance(x, oracle["reference"]) / oracle["baseline"]
    assert ratio <= FACTOR, f"{what}: energy distance {ratio:.2f}x the true-vs-true baseline (allowed {FACTOR})"
    proportions = torch.bincount(gm.responsibilities(x).argmax(1), minlength=gm.num_components) / x.shape[0]
    torch.testing.assert_close(proportions.double(), gm.weights, atol=WEIGHT_TOL, rtol=0,
                               msg=lambda m: f"{what}: mixture weights not recovered: {m}")


@pytest.mark.parametrize(("sde_name", "predictor", "corrector"), PC_CASES)
def test_pc_sampler_reproduces_the_mixture(oracle: dict, sde_name: str, predictor: str, corrector: str) -> None:
    sde = SDE_FACTORIES[sde_name]()
    # Corrector-only sampling (annealed Langevin) has no drift to follow the shrinking alpha(t) of VP/sub-VP;
    # it needs several larger MCMC steps per noise level to keep up (snr 0.16 with 3 steps leaves the sub-VP
    # means 15% short of the truth).
    n_steps_each, snr = (5, 0.5) if predictor == "none" else (1, 0.16)
    x, info = sample(sde, oracle["gm"].score_fn(sde), (N_SAMPLES, 2), "pc", generator=torch.Generator().manual_seed(7),
                     dtype=torch.float64, return_info=True, predictor=predictor, corrector=corrector,
                     n_steps_each=n_steps_each, snr=snr)
    evals_per_step = (predictor != "none") + (corrector != "none") * n_steps_each
    assert info.nfe == N_STEPS * evals_per_step
    _check(x, oracle, f"{sde_name}/{predictor}/{corrector}")


@pytest.mark.parametrize("sde_name", sorted(SDE_FACTORIES))
@pytest.mark.parametrize("method", ["dopri5", "scipy-RK45"])
def test_ode_sampler_reproduces_the_mixture(oracle: dict, sde_name: str, method: str) -> None:
    sde = SDE_FACTORIES[sde_name]()
    x, info = sample(sde, oracle["gm"].score_fn(sde), (N_SAMPLES, 2), "ode", generator=torch.Generator().manual_seed(7),
                     dtype=torch.float64, return_info=True, method=method, denoise=True)
    assert 20 < info.nfe < 400, info.nfe
    _check(x, oracle, f"{sde_name}/ode/{method}")


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_probability_flow_predictor(oracle: dict, sde_name: str) -> None:
    sde = SDE_FACTORIES[sde_name]()
    x = sample(sde, oracle["gm"].score_fn(sde), (N_SAMPLES, 2), "pc", generator=torch.Generator().manual_seed(3),
               dtype=torch.float64, predictor="reverse_diffusion", corrector="none", probability_flow=True)
    _check(x, oracle, f"{sde_name}/probability-flow")


def test_criterion_rejects_a_wrong_score(oracle: dict) -> None:
    """Negative control: the score of a mixture whose weights differ by 0.1 must fail the check."""
    gm = oracle["gm"]
    wrong = GaussianMixture([0.4, 0.4, 0.2], gm.means, gm.covs)
    sde = VPSDE(N=N_STEPS)
    x = sample(sde, wrong.score_fn(sde), (N_SAMPLES, 2), "ode", generator=torch.Generator().manual_seed(7),
               dtype=torch.float64)
    with pytest.raises(AssertionError):
        _check(x, oracle, "wrong score")


def test_float32_sampling_and_reproducibility(oracle: dict) -> None:
    sde = VESDE(N=200)
    score = oracle["gm"].score_fn(sde)
    a = sample(sde, score, (64, 2), "pc", generator=torch.Generator().manual_seed(5), corrector="ald")
    b = sample(sde, score, (64, 2), "pc", generator=torch.Generator().manual_seed(5), corrector="ald")
    assert a.dtype == torch.float32 and torch.equal(a, b)
    c = sample(sde, score, (64, 2), "pc", generator=torch.Generator().manual_seed(6), corrector="ald")
    assert not torch.equal(a, c)
