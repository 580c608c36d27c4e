"""``log_likelihood`` returns ``log p_eps(x)`` when given the exact score, under VE, VP and sub-VP.

Oracles: the 2-D Gaussian mixture (``GaussianMixture.log_prob(x, eps, sde)``, exact) and a Gaussian law whose model
density, prior mismatch included, is known in closed form (``tests/likelihood/gaussian.py``). With the exact score the
only errors are the ODE solver's and the prior mismatch ``log p_T(x(T)) - log pi(x(T))``, which the latent lets us
remove; Hutchinson estimates must be unbiased with the spread their ``stderr`` announces.
"""

from __future__ import annotations

import math

import pytest
import torch

from scoresde import log_likelihood
from scoresde.sdes import VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture
from tests.likelihood.gaussian import GaussianLaw

SDES = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}
EPS, BATCH = 1e-5, 400
MAE_PER_DIM = 0.01  # the criterion; measured 1e-3 (VP, sub-VP) and 3e-3 (VE) nats/dim
# Solver error alone (prior mismatch removed), per example in nats: measured mean 1e-4, max 6e-3. The adaptive
# solvers control the RMS error over the whole batch, so an example in a hard region (between components) may
# carry up to sqrt(B (D + 1)) times the tolerance; solved alone its error drops 10-25x.
SOLVER_MEAN_TOL, SOLVER_MAX_TOL = 5e-4, 1e-2


@pytest.fixture(scope="module")
def oracle() -> dict:
    gm = GaussianMixture.example_2d()
    x = gm.sample(BATCH, torch.Generator().manual_seed(0))
    return {"gm": gm, "x": x, "exact": {}}


def exact_run(oracle: dict, sde_name: str) -> tuple[torch.Tensor, object]:
    """Exact-trace likelihood of the oracle batch (cached: several tests compare against it)."""
    if sde_name not in oracle["exact"]:
        sde = SDES[sde_name]()
        oracle["exact"][sde_name] = log_likelihood(sde, oracle["gm"].score_fn(sde), oracle["x"], trace="exact",
                                                   return_info=True)
    return oracle["exact"][sde_name]


def true_log_prob(oracle: dict, sde_name: str) -> torch.Tensor:
    return oracle["gm"].log_prob(oracle["x"], EPS, SDES[sde_name]())


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_exact_trace_matches_the_mixture_density(oracle: dict, sde_name: str) -> None:
    sde, gm, x = SDES[sde_name](), oracle["gm"], oracle["x"]
    logp, info = exact_run(oracle, sde_name)
    truth = true_log_prob(oracle, sde_name)
    assert logp.shape == (BATCH,) and logp.dtype == torch.float64
    mae = float((logp - truth).abs().mean()) / gm.dim
    assert mae <= MAE_PER_DIM, f"{sde_name}: mean abs error {mae:.2e} nats/dim"
    # The residual error is almost all prior mismatch; with p_T in place of the prior only the solver's is left.
    mismatch = gm.log_prob(info.latent, sde.T, sde) - info.prior_logp
    solver_err = (logp + mismatch - truth).abs()
    assert float(solver_err.mean()) <= SOLVER_MEAN_TOL and float(solver_err.max()) <= SOLVER_MAX_TOL
    torch.testing.assert_close(info.prior_logp + info.delta_logp, logp)
    assert torch.equal(info.stderr, torch.zeros(BATCH, dtype=torch.float64))
    assert info.nfe > 0 and info.latent.shape == x.shape


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_gaussian_model_density_in_closed_form(sde_name: str) -> None:
    """Prior mismatch included, the returned density is the closed-form pull-back of the prior (tight)."""
    sde, law = SDES[sde_name](), GaussianLaw(mean=0.5, std=0.3)
    y = 0.5 + 0.4 * torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logp = log_likelihood(sde, law.score_fn(sde), y, trace="exact", rtol=1e-7, atol=1e-7, eps=EPS)
    torch.testing.assert_close(logp, law.model_log_prob(sde, y, EPS), rtol=0, atol=1e-5)


def test_nfe_is_the_number_of_score_evaluations(oracle: dict) -> None:
    sde, calls = VPSDE(), []
    score = oracle["gm"].score_fn(sde)

    def counting_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t.shape[0])
        return score(x, t)

    _, info = log_likelihood(sde, counting_score, oracle["x"][:32], trace="exact", return_info=True)
    assert info.nfe == len(calls) > 10


@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("trace", ["hutchinson-rademacher", "hutchinson-gaussian"])
def test_hutchinson_is_unbiased_with_honest_stderr(oracle: dict, sde_name: str, trace: str) -> None:
    sde, gm, x = SDES[sde_name](), oracle["gm"], oracle["x"]
    exact, _ = exact_run(oracle, sde_name)
    logp, info = log_likelihood(sde, gm.score_fn(sde), x, trace=trace, n_probes=4,
                                generator=torch.Generator().manual_seed(2), return_info=True)
    err = logp - exact
    spread = float(err.std())
    assert spread > 0 and torch.isfinite(info.stderr).all() and (info.stderr > 0).any()
    # Unbiased: the mean error over the batch lies within 4 standard errors of the batch mean.
    assert abs(float(err.mean())) <= 4 * spread / math.sqrt(BATCH), (float(err.mean()), spread)
    # Honest stderr: E[stderr_b^2] is Var(estimate_b), so the RMS stderr matches the RMS error.
    ratio = float(err.square().mean().sqrt() / info.stderr.square().mean().sqrt())
    assert 0.7 <= ratio <= 1.4, f"observed RMS error / RMS stderr = {ratio:.2f}"


def test_rademacher_probes_have_less_variance_than_gaussian(oracle: dict) -> None:
    """Var of ``v^T A v``: ``2 sum_{i != j} A_ij^2`` for Rademacher, ``2 ||A||_F^2`` for Gaussian probes."""
    sde, gm, x = VPSDE(), oracle["gm"], oracle["x"]
    spreads = {}
    for trace in ("hutchinson-rademacher", "hutchinson-gaussian"):
        logp = log_likelihood(sde, gm.score_fn(sde), x, trace=trace, generator=torch.Generator().manual_seed(3))
        spreads[trace] = float((logp - exact_run(oracle, "vp")[0]).std())
    assert spreads["hutchinson-rademacher"] < 0.7 * spreads["hutchinson-gaussian"], spreads


def test_more_probes_shrink_the_stderr(oracle: dict) -> None:
    sde, gm, x = VESDE(), oracle["gm"], oracle["x"][:100]
    rms = {}
    for n in (2, 8):
        _, info = log_likelihood(sde, gm.score_fn(sde), x, trace="hutchinson-gaussian", n_probes=n,
                                 generator=torch.Generator().manual_seed(4), return_info=True)
        rms[n] = float(info.stderr.square().mean().sqrt())
    assert 0.35 <= rms[8] / rms[2] <= 0.7, rms  # 1/sqrt(4) = 0.5


def test_one_probe_has_no_stderr_and_generator_reproduces(oracle: dict) -> None:
    sde, gm, x = VPSDE(), oracle["gm"], oracle["x"][:16]
    runs = [log_likelihood(sde, gm.score_fn(sde), x, generator=torch.Generator().manual_seed(s),
                           return_info=True) for s in (5, 5, 6)]
    assert torch.isnan(runs[0][1].stderr).all()
    assert torch.equal(runs[0][0], runs[1][0])
    assert not torch.equal(runs[0][0], runs[2][0])


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_dopri5_and_scipy_rk45_agree(oracle: dict, sde_name: str) -> None:
    sde, gm, x = SDES[sde_name](), oracle["gm"], oracle["x"][:100]
    dopri, info_d = log_likelihood(sde, gm.score_fn(sde), x, trace="exact", method="dopri5", return_info=True)
    rk45, info_s = log_likelihood(sde, gm.score_fn(sde), x, trace="exact", method="scipy-RK45", return_info=True)
    assert info_d.nfe > 0 and info_s.nfe > 0
    diff = (dopri - rk45).abs()
    assert float(diff.mean()) <= SOLVER_MEAN_TOL and float(diff.max()) <= SOLVER_MAX_TOL
    torch.testing.assert_close(info_d.latent, info_s.latent, rtol=1e-3, atol=1e-3)


def test_float32_and_image_shaped_inputs(oracle: dict) -> None:
    sde, gm, x = SubVPSDE(), oracle["gm"], oracle["x"][:64]
    ref = log_likelihood(sde, gm.score_fn(sde), x, trace="exact")
    img, info = log_likelihood(sde, gm.score_fn(sde), x.reshape(64, 1, 1, 2), trace="exact", return_info=True)
    assert info.latent.shape == (64, 1, 1, 2)
    torch.testing.assert_close(img, ref, rtol=0, atol=1e-9)
    f32 = log_likelihood(sde, gm.score_fn(sde), x.float(), trace="exact")
    assert f32.dtype == torch.float32
    diff = (f32.double() - ref).abs()
    assert float(diff.mean()) <= SOLVER_MEAN_TOL and float(diff.max()) <= SOLVER_MAX_TOL


def test_latents_are_distributed_as_the_prior(oracle: dict) -> None:
    """The ODE encodes data into ``p_T``, which for VP is nearly ``N(0, I)``."""
    _, info = exact_run(oracle, "vp")
    z = info.latent
    torch.testing.assert_close(z.mean(0), torch.zeros(2, dtype=torch.float64), rtol=0, atol=4 / math.sqrt(BATCH))
    torch.testing.assert_close(z.var(0), torch.ones(2, dtype=torch.float64), rtol=0, atol=0.25)


def test_wrong_score_gives_a_wrong_likelihood(oracle: dict) -> None:
    """Negative control: the score of the same components with other weights is clearly detected."""
    gm, x, sde = oracle["gm"], oracle["x"][:100], VPSDE()
    wrong = GaussianMixture([0.2, 0.3, 0.5], gm.means, gm.covs)
    logp = log_likelihood(sde, wrong.score_fn(sde), x, trace="exact")
    mae = float((logp - gm.log_prob(x, EPS, sde)).abs().mean()) / gm.dim
    assert mae > 10 * MAE_PER_DIM, f"wrong score gives only {mae:.3g} nats/dim of error"
    # ... and the likelihood it returns is that of the wrong mixture (the method does what it says).
    assert float((logp - wrong.log_prob(x, EPS, sde)).abs().mean()) / gm.dim <= MAE_PER_DIM


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trace": "hutchinson"}, r"unknown trace estimator 'hutchinson'; valid estimators are: hutchinson-rad"),
        ({"n_probes": 0}, "n_probes must be a positive integer, got 0"),
        ({"n_probes": 2.0}, "n_probes must be a positive integer, got 2.0"),
        ({"trace": "exact", "n_probes": 2}, "n_probes must be 1, got 2"),
        ({"eps": 0.0}, r"eps must lie in \(0, T=1.0\), got 0.0"),
        ({"eps": 1.5}, r"eps must lie in \(0, T=1.0\), got 1.5"),
        ({"method": "rk5"}, "unknown ODE method 'rk5'"),
        ({"rtol": 0.0}, "rtol and atol must be positive"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    gm, sde = GaussianMixture.example_2d(), VPSDE()
    with pytest.raises(ValueError, match=match):
        log_likelihood(sde, gm.score_fn(sde), torch.zeros(2, 2, dtype=torch.float64), **kwargs, return_info=True)
