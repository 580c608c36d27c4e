"""ΠGDM (``method="pigdm"``): its conditional data prediction is exact when the prior is ``N(mu, v I)`` and
``prior_variance = v`` (then ``r_t^2`` is Tweedie's variance), equals MMPS's there, is biased otherwise, solves through
the SVD or by conjugate gradients alike, and moves mixture samples toward the exact posterior."""

from __future__ import annotations

import pytest
import torch

from scoresde.inverse.mmps import mmps_posterior_mean
from scoresde.inverse.operators import Dense
from scoresde.inverse.pigdm import pigdm_posterior_mean, run_pigdm
from scoresde.inverse.solve import InverseProblem
from scoresde.models.adapter import as_model
from scoresde.sdes import CLD, VESDE, VPSDE
from scoresde.toy import GaussianMixture

from .posterior_oracle import SDE_IDS, SDES, SIGMA_Y, check_moves_toward_posterior, gaussian_conditional_mean

A = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.7, 1.1]], dtype=torch.float64)


def _states(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64) * 2
    y = torch.randn(4, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([0.9, 0.4, 0.1, 0.02], dtype=torch.float64)
    return x, y, t


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_exact_for_an_isotropic_gaussian_prior(sde):
    v = 0.7
    mu = torch.tensor([[0.5, -1.0, 0.3]], dtype=torch.float64)
    gm = GaussianMixture([1.0], mu, [v**0.5])
    model = as_model(sde, gm.score_fn(sde))
    x, y, t = _states()
    tally = {"vjps": 0}
    got = pigdm_posterior_mean(model, Dense(A), y, x, t, sigma_y=SIGMA_Y, prior_variance=v, tally=tally)
    assert tally["vjps"] == 1
    alpha, sigma = sde.alpha(t), sde.sigma(t)
    for i in range(4):
        want = gaussian_conditional_mean(mu[0], gm.covs[0], A, y[i:i + 1], x[i:i + 1], alpha[i], sigma[i], SIGMA_Y)
        torch.testing.assert_close(got[i:i + 1], want, rtol=1e-9, atol=1e-9)
    mmps = mmps_posterior_mean(model, Dense(A), y, x, t, sigma_y=SIGMA_Y, cg_iterations=2)
    torch.testing.assert_close(got, mmps, rtol=1e-9, atol=1e-9)
    # a wrong prior variance is a wrong conditional mean
    off = pigdm_posterior_mean(model, Dense(A), y, x, t, sigma_y=SIGMA_Y, prior_variance=3.0)
    assert float((off - got).abs().max()) > 1e-2


def test_svd_and_conjugate_gradients_agree_noisy_and_noiseless():
    """Through ``Dense``'s SVD and through CG (an operator composed with the identity has no SVD)."""
    sde = VPSDE(N=100)
    gm = GaussianMixture.example_2d()
    A2 = torch.tensor([[0.6, 0.8]], dtype=torch.float64)
    model = as_model(sde, gm.score_fn(sde))
    x, y, t = _states(1)
    x, y = x[:, :2], y[:, :1]
    composed = Dense(A2) @ Dense(torch.eye(2, dtype=torch.float64))
    assert not composed.has_svd
    for sigma_y in (0.0, SIGMA_Y):
        svd = pigdm_posterior_mean(model, Dense(A2), y, x, t, sigma_y=sigma_y)
        cg = pigdm_posterior_mean(model, composed, y, x, t, sigma_y=sigma_y, cg_iterations=1)
        torch.testing.assert_close(svd, cg, rtol=1e-10, atol=1e-10)


def test_moves_mixture_samples_toward_the_exact_posterior():
    assert check_moves_toward_posterior(run_pigdm, VESDE(N=100), steps=50) == 51


def test_bad_options_are_one_line():
    problem = InverseProblem(Dense(A), torch.zeros(1, 2, dtype=torch.float64), SIGMA_Y, (1, 3))
    model = as_model(VPSDE(N=10), lambda x, t: -x)
    z = torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="prior_variance must be a finite number > 0, got 0"):
        run_pigdm(model, problem, z, prior_variance=0.0, cond={}, generator=None, progress=False)
    with pytest.raises(ValueError, match=r"eta must be a number in \[0, 1\]"):
        run_pigdm(model, problem, z, eta=1.5, cond={}, generator=None, progress=False)
    with pytest.raises(ValueError, match=r"pigdm.*scalar SDE.*CLD"):
        run_pigdm(as_model(CLD(N=10), lambda x, t: -x), problem, torch.zeros(1, 6), cond={}, generator=None,
                  progress=False)
