"""DPS (``method="dps"``): its guidance direction is the gradient of ``||y - A x0_hat(x_t)||^2`` (checked by finite
differences of the mixture's exact data prediction), ``step_size = 0`` is the unguided sampler, and it moves mixture
samples toward the exact posterior."""

from __future__ import annotations

import pytest
import torch

from scoresde.inverse.dps import measurement_gradient, run_dps
from scoresde.inverse.operators import Dense, Downsample
from scoresde.inverse.solve import InverseProblem
from scoresde.models.adapter import as_model
from scoresde.sdes import PSLD, VESDE, VPSDE
from scoresde.toy import GaussianMixture

from .posterior_oracle import SDE_IDS, SDES, SIGMA_Y, check_moves_toward_posterior


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_gradient_is_the_finite_difference_of_the_squared_residual(sde):
    gm = GaussianMixture.example_2d()
    A = torch.tensor([[0.6, 0.8], [-1.0, 0.3]], dtype=torch.float64)
    model = as_model(sde, gm.score_fn(sde))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, generator=g, dtype=torch.float64)
    y = torch.randn(3, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([0.7, 0.2, 0.05], dtype=torch.float64)

    def loss(x):
        x0 = sde.denoise(x, t, gm.score(x, t, sde))
        return ((y - x0 @ A.T) ** 2).sum(1)

    tally = {"vjps": 0}
    grad, _, norm = measurement_gradient(model, Dense(A), y, x, t, tally)
    h = 1e-6
    fd = torch.stack([(loss(x + h * e) - loss(x - h * e)) / (2 * h) for e in torch.eye(2, dtype=torch.float64)], 1)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(norm**2, loss(x), rtol=1e-12, atol=1e-12)
    assert tally["vjps"] == 1


def test_zero_step_size_is_the_unguided_ddim_sampler():
    """With ``step_size = 0`` DPS is the DDIM sampler (eta = 1): the samples follow the prior mixture's weights."""
    gm = GaussianMixture.example_2d()
    sde = VPSDE(N=100)
    n = 1500
    problem = InverseProblem(Dense(torch.tensor([[1.0, 0.0]], dtype=torch.float64)),
                             torch.full((n, 1), 1.7, dtype=torch.float64), SIGMA_Y, (n, 2))
    g = torch.Generator().manual_seed(1)
    z = sde.prior_sampling((n, 2), g, dtype=torch.float64)
    x, nfe, diag = run_dps(as_model(sde, gm.score_fn(sde)), problem, z, steps=60, step_size=0.0, cond={},
                           generator=g, progress=False)
    assert nfe == 61 and diag["vjps"] == 61 and diag["residual"].shape == (n,)
    torch.testing.assert_close(gm.responsibilities(x).mean(0), gm.weights, rtol=0, atol=0.04)


def test_moves_mixture_samples_toward_the_exact_posterior():
    check_moves_toward_posterior(run_dps, VPSDE(N=100), steps=100, step_size=0.1)


def test_works_on_image_shaped_operators_and_refuses_phase_space():
    sde = VESDE(N=20)
    op = Downsample(2).bind((1, 4, 4))
    y = torch.zeros(2, 1, 2, 2)
    x, nfe, _ = run_dps(as_model(sde, lambda x, t: -x / (1 + sde.sigma(t)[:, None, None, None] ** 2)),
                        InverseProblem(op, y, SIGMA_Y, (2, 1, 4, 4)), torch.randn(2, 1, 4, 4) * 50, steps=5,
                        cond={}, generator=None, progress=False)
    assert x.shape == (2, 1, 4, 4) and torch.isfinite(x).all() and nfe == 6
    problem = InverseProblem(Dense(torch.eye(2)[:1]), torch.zeros(1, 1), 0.1, (1, 2))
    with pytest.raises(ValueError, match=r"dps.*scalar SDE.*PSLD"):
        run_dps(as_model(PSLD(N=10), lambda x, t: -x), problem, torch.zeros(1, 4), cond={}, generator=None,
                progress=False)
    with pytest.raises(ValueError, match="step_size must be a finite number >= 0, got -1"):
        run_dps(as_model(sde, lambda x, t: -x), problem, torch.zeros(1, 2), step_size=-1.0, cond={}, generator=None,
                progress=False)
