"""The closed-form posterior of a Gaussian mixture under a noisy linear measurement
(:meth:`scoresde.toy.GaussianMixture.condition_noisy`), the oracle of :func:`scoresde.solve_inverse`, against
brute-force numerical integration of ``p(x) N(y; A x, sigma_y^2 I)`` on a grid."""

from __future__ import annotations

import math

import pytest
import torch

from scoresde.toy import GaussianMixture


def grid_posterior(gm: GaussianMixture, A: torch.Tensor, y: torch.Tensor, sigma_y: float):
    """Component masses, mean and covariance of the unnormalised posterior on a 601^2 grid over [-6, 6]^2."""
    u = torch.linspace(-6.0, 6.0, 601, dtype=torch.float64)
    X = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    log_lik = -0.5 * (((X @ A.T - y) / sigma_y) ** 2).sum(1)
    log_joint = gm.log_joint(X) + log_lik[:, None]  # (G, K): w_k N(x; mu_k, S_k) times the likelihood
    shift = log_joint.max()
    dens = torch.exp(log_joint - shift)
    mass = dens.sum(0)
    p = dens.sum(1) / mass.sum()
    mean = p @ X
    cov = ((X - mean) * p[:, None]).T @ (X - mean)
    return mass / mass.sum(), mean, cov


@pytest.mark.parametrize("A,y,sigma_y", [([[0.8, 0.6]], [0.9], 0.3), ([[1.0, 0.0], [0.3, 1.0]], [0.2, -0.4], 0.5),
                                         ([[0.5, -0.5], [1.0, 1.0], [0.2, 0.1]], [0.0, 0.5, 0.1], 0.7)],
                         ids=["rank1", "square", "tall"])
def test_condition_noisy_matches_brute_force(A, y, sigma_y) -> None:
    gm = GaussianMixture.example_2d()
    A, y = torch.tensor(A, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    post = gm.condition_noisy(A, y, sigma_y)
    weights, mean, cov = grid_posterior(gm, A, y, sigma_y)
    torch.testing.assert_close(post.weights, weights, atol=2e-5, rtol=0)
    torch.testing.assert_close(post.mean(), mean, atol=2e-5, rtol=0)
    exact_cov = (post.weights[:, None, None] * (post.covs + post.means[:, :, None] * post.means[:, None, :])).sum(0)
    exact_cov = exact_cov - torch.outer(post.mean(), post.mean())
    torch.testing.assert_close(exact_cov, cov, atol=2e-5, rtol=0)
    assert 0.02 < float(post.weights.max()) < 0.98 or A.shape[0] == 3  # a real choice between modes in the first two


def test_condition_noisy_tends_to_the_noiseless_condition() -> None:
    gm = GaussianMixture.example_2d()
    A, y = torch.tensor([[0.8, 0.6]], dtype=torch.float64), torch.tensor([0.9], dtype=torch.float64)
    noiseless = gm.condition(A, y)
    nearly = gm.condition_noisy(A, y, 1e-6)
    torch.testing.assert_close(nearly.weights, noiseless.weights, atol=1e-8, rtol=0)
    torch.testing.assert_close(nearly.means @ A.T, y.expand(3, 1), atol=1e-9, rtol=0)


def test_condition_noisy_bad_input_is_one_line() -> None:
    gm = GaussianMixture.example_2d()
    with pytest.raises(ValueError, match=r"A must have shape \(m, d=2\)"):
        gm.condition_noisy(torch.ones(1, 3), torch.ones(1), 0.1)
    with pytest.raises(ValueError, match=r"y must have shape \(1,\)"):
        gm.condition_noisy(torch.ones(1, 2), torch.ones(2), 0.1)
    with pytest.raises(ValueError, match="sigma_y must be a positive number"):
        gm.condition_noisy(torch.ones(1, 2), torch.ones(1), 0.0)
    assert math.isfinite(float(gm.condition_noisy(torch.ones(1, 2), torch.ones(1), 0.1).weights.sum()))
