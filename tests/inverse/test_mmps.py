"""MMPS (``method="mmps"``): its conditional data prediction is the exact ``E[x_0 | x_t, y]`` on a Gaussian prior
(Tweedie's covariance is exact there), its samples match a Gaussian posterior, it moves mixture samples toward the
exact posterior, and it counts its network calls and vector-Jacobian products."""

from __future__ import annotations

import pytest
import torch

from scoresde.inverse.mmps import mmps_posterior_mean, run_mmps
from scoresde.inverse.operators import Dense
from scoresde.inverse.solve import InverseProblem
from scoresde.models.adapter import as_model
from scoresde.sdes import PSLD, VPSDE
from scoresde.toy import GaussianMixture

from .posterior_oracle import SDE_IDS, SDES, SIGMA_Y, check_moves_toward_posterior, gaussian_conditional_mean


def gaussian_posterior(mu, S, A, y, sigma_y):
    """Mean and covariance of ``x_0 | y`` for the Gaussian prior ``N(mu, S)``."""
    C = A @ S @ A.T + sigma_y**2 * torch.eye(A.shape[0], dtype=S.dtype)
    K = S @ A.T @ torch.linalg.inv(C)
    return mu + K @ (y - A @ mu), S - K @ A @ S


def single_gaussian():
    mu = torch.tensor([[0.5, -1.0, 0.3]], dtype=torch.float64)
    S = torch.tensor([[1.2, 0.4, 0.1], [0.4, 0.6, -0.2], [0.1, -0.2, 0.8]], dtype=torch.float64)
    A = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.7, 1.1]], dtype=torch.float64)
    return GaussianMixture([1.0], mu, S[None]), A


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_conditional_mean_is_exact_on_a_gaussian_prior(sde):
    gm, A = single_gaussian()
    model = as_model(sde, gm.score_fn(sde))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 2
    y = torch.randn(5, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([0.9, 0.5, 0.2, 0.05, 0.01], dtype=torch.float64)
    tally = {"vjps": 0}
    got = mmps_posterior_mean(model, Dense(A), y, x, t, sigma_y=SIGMA_Y, cg_iterations=2, tally=tally)
    alpha, sigma = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
    for i in range(5):
        want = gaussian_conditional_mean(gm.means[0], gm.covs[0], A, y[i:i + 1], x[i:i + 1], alpha[i], sigma[i],
                                         SIGMA_Y)
        torch.testing.assert_close(got[i:i + 1], want, rtol=1e-9, atol=1e-9)
    assert tally["vjps"] == 3  # two CG iterations and the final product
    # one CG iteration is not yet converged on a 2-dimensional measurement
    one = mmps_posterior_mean(model, Dense(A), y, x, t, sigma_y=SIGMA_Y, cg_iterations=1)
    assert float((one - got).abs().max()) > 1e-3


def test_samples_match_a_gaussian_posterior():
    gm, A = single_gaussian()
    sde = VPSDE(N=100)
    y = torch.tensor([0.4, -0.8], dtype=torch.float64)
    n = 3000
    problem = InverseProblem(Dense(A), y.expand(n, 2).clone(), SIGMA_Y, (n, 3))
    g = torch.Generator().manual_seed(1)
    z = sde.prior_sampling((n, 3), g, dtype=torch.float64)
    x, nfe, diag = run_mmps(as_model(sde, gm.score_fn(sde)), problem, z, steps=100, cg_iterations=2, cond={},
                            generator=g, progress=False)
    mean, cov = gaussian_posterior(gm.means[0], gm.covs[0], A, y, SIGMA_Y)
    # the sampler's error is the discretisation only: mean within 4 standard errors, covariance within 15 %
    se = cov.diagonal().sqrt() / n**0.5
    assert bool(((x.mean(0) - mean).abs() < 4 * se + 1e-3).all()), (x.mean(0), mean)
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0.15, atol=0.01)
    assert nfe == 101 and diag["vjps"] == 3 * 101


def test_moves_mixture_samples_toward_the_exact_posterior():
    """On the 2-D mixture with a dense 1 x 2 operator and sigma_y = 0.1 (:mod:`.posterior_oracle`)."""
    assert check_moves_toward_posterior(run_mmps, VPSDE(N=100), steps=50) == 51


def test_refuses_a_phase_space_sde():
    problem = InverseProblem(Dense(torch.eye(2, dtype=torch.float64)[:1]), torch.zeros(1, 1), 0.1, (1, 2))
    with pytest.raises(ValueError, match=r"mmps.*scalar SDE.*PSLD"):
        run_mmps(as_model(PSLD(N=10), lambda x, t: -x), problem, torch.zeros(1, 4), cond={}, generator=None,
                 progress=False)
