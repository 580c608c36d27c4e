"""Closed forms shared by the tests of the heuristic posterior samplers (dps, pigdm, ddrm, mmps): the Gaussian
conditional mean ``E[x_0 | x_t, y]`` and the sanity check against the exact posterior of the 2-D mixture."""

from __future__ import annotations

from collections.abc import Callable

import torch

from scoresde.inverse.operators import Dense
from scoresde.inverse.solve import InverseProblem
from scoresde.models.adapter import as_model
from scoresde.sdes import EDM, VESDE, VPSDE, CosineVP, RectifiedFlow, SubVPSDE
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


def check_moves_toward_posterior(run: Callable, sde, *, seed: int = 2, n: int = 600, **options) -> int:
    """Run ``run`` (a method of the inverse-problem contract) on the 2-D mixture measured by ``x_1 + 0.1 n = 1.7``
    (exact posterior weights (0, 0.998, 0.002), the prior's (0.5, 0.3, 0.2)) and assert that its samples are much
    closer to the exact posterior than the prior is: sliced distance below 0.55 and weight error below 0.4 times the
    prior's. Returns the method's NFE."""
    gm = GaussianMixture.example_2d()
    A = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([1.7], dtype=torch.float64)
    post = gm.condition_noisy(A, y, SIGMA_Y)
    g = torch.Generator().manual_seed(seed)
    problem = InverseProblem(Dense(A), y.expand(n, 1).clone(), SIGMA_Y, (n, 2))
    z = sde.prior_sampling((n, 2), g, dtype=torch.float64)
    x, nfe, _ = run(as_model(sde, gm.score_fn(sde)), problem, z, cond={}, generator=g, progress=False, **options)
    ref = post.sample(n, torch.Generator().manual_seed(3))
    prior = gm.sample(n, torch.Generator().manual_seed(4))
    sw, sw_prior = (sliced_wasserstein(v, ref, generator=torch.Generator().manual_seed(5)) for v in (x, prior))
    err = float((post.responsibilities(x).mean(0) - post.weights).abs().max())
    err_prior = float((post.responsibilities(prior).mean(0) - post.weights).abs().max())
    assert sw < 0.55 * sw_prior, (sw, sw_prior)
    assert err < 0.4 * err_prior, (err, err_prior)
    return nfe
