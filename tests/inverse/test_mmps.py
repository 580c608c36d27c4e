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
from scoresde.sdes import EDM, PSLD, VESDE, VPSDE, CosineVP, RectifiedFlow, SubVPSDE
from scoresde.toy import GaussianMixture, sliced_wasserstein

SIGMA_Y = 0.1
#: every scalar SDE: the methods read alpha_t and sigma_t only
SDES = [VPSDE(N=100), VESDE(N=100), SubVPSDE(N=100), EDM(N=100), CosineVP(N=100), RectifiedFlow(N=100)]
SDE_IDS = ["VP", "VE", "subVP", "EDM", "CosineVP", "RectifiedFlow"]


def gaussian_conditional_mean(mu, S, A, y, x_t, alpha, sigma, sigma_y):
    """``E[x_0 | x_t, y]`` for ``x_0 ~ N(mu, S)``, ``x_t = alpha x_0 + sigma eps``, ``y = A x_0 + sigma_y n``: the
    Gaussian conditional of ``x_0`` given the stacked observation ``(x_t, y) = H x_0 + noise``."""
    d, m = S.shape[0], A.shape[0]
    H = torch.cat([alpha * torch.eye(d, dtype=S.dtype), A])
    R = torch.block_diag(sigma**2 * torch.eye(d, dtype=S.dtype), sigma_y**2 * torch.eye(m, dtype=S.dtype))
    gain = S @ H.T @ torch.linalg.inv(H @ S @ H.T + R)
    obs = torch.cat([x_t, y], dim=1)
    return mu + (obs - mu @ H.T) @ gain.T


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
    """On the 2-D mixture with a dense 1 x 2 operator and sigma_y = 0.1, MMPS's samples are far closer to the exact
    posterior than the prior is (sliced distance) and put more weight on the favoured component."""
    gm = GaussianMixture.example_2d()
    A = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([1.7], dtype=torch.float64)
    post = gm.condition_noisy(A, y, SIGMA_Y)
    sde = VPSDE(N=100)
    n = 600
    g = torch.Generator().manual_seed(2)
    problem = InverseProblem(Dense(A), y.expand(n, 1).clone(), SIGMA_Y, (n, 2))
    z = sde.prior_sampling((n, 2), g, dtype=torch.float64)
    x, _, _ = run_mmps(as_model(sde, gm.score_fn(sde)), problem, z, steps=50, cond={}, generator=g, progress=False)
    ref = post.sample(n, torch.Generator().manual_seed(3))
    prior = gm.sample(n, torch.Generator().manual_seed(4))
    sw, sw_prior = (sliced_wasserstein(v, ref, generator=torch.Generator().manual_seed(5)) for v in (x, prior))
    err = float((post.responsibilities(x).mean(0) - post.weights).abs().max())
    err_prior = float((post.responsibilities(prior).mean(0) - post.weights).abs().max())
    assert sw < 0.55 * sw_prior, (sw, sw_prior)
    assert err < 0.4 * err_prior, (err, err_prior)


def test_refuses_a_phase_space_sde():
    problem = InverseProblem(Dense(torch.eye(2, dtype=torch.float64)[:1]), torch.zeros(1, 1), 0.1, (1, 2))
    with pytest.raises(ValueError, match=r"mmps.*scalar SDE.*PSLD"):
        run_mmps(as_model(PSLD(N=10), lambda x, t: -x), problem, torch.zeros(1, 4), cond={}, generator=None,
                 progress=False)
