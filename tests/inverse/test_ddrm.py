"""DDRM (``method="ddrm"``): with a noiseless measurement and ``eta_b = 1`` its samples meet ``A x = y`` exactly (and
equal ``A^-1 y`` for an invertible ``A``, the exact posterior), it needs the operator's SVD, calls the model once per
step without vector-Jacobian products, and moves mixture samples toward the exact posterior."""

from __future__ import annotations

import pytest
import torch

from scoresde.inverse.ddrm import run_ddrm
from scoresde.inverse.operators import Dense, Downsample, Mask
from scoresde.inverse.solve import InverseProblem
from scoresde.models.adapter import as_model
from scoresde.sdes import PSLD, VESDE, VPSDE
from scoresde.toy import GaussianMixture

from .posterior_oracle import SDE_IDS, SDES, SIGMA_Y, check_moves_toward_posterior


def _run(sde, gm, op, y, sigma_y, n, seed=0, **options):
    g = torch.Generator().manual_seed(seed)
    problem = InverseProblem(op, y.expand(n, *y.shape).clone(), sigma_y, (n, *op.in_shape))
    z = sde.prior_sampling((n, *op.in_shape), g, dtype=torch.float64)
    return run_ddrm(as_model(sde, gm.score_fn(sde)), problem, z, cond={}, generator=g, progress=False, **options)


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_noiseless_samples_meet_the_measurement_exactly(sde):
    gm = GaussianMixture.example_2d()
    A = torch.tensor([[0.6, 0.8]], dtype=torch.float64)
    y = torch.tensor([0.3], dtype=torch.float64)
    x, nfe, diag = _run(sde, gm, Dense(A), y, 0.0, 50, eta=0.5)
    assert nfe == 21 and diag["vjps"] == 0
    torch.testing.assert_close(x @ A.T, y.expand(50, 1), rtol=0, atol=1e-12)
    assert float(x.std(0).max()) > 0.05  # the free direction is sampled, not collapsed
    mask = Mask(torch.tensor([0.0, 1.0], dtype=torch.float64))
    x, _, _ = _run(sde, gm, mask, torch.tensor([0.0, -2.4], dtype=torch.float64), 0.0, 50)
    assert bool((x[:, 1] == -2.4).all())


def test_invertible_operator_returns_the_exact_posterior_point():
    gm = GaussianMixture.example_2d()
    A = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    y = torch.tensor([0.4, -1.0], dtype=torch.float64)
    x, _, _ = _run(VPSDE(N=100), gm, Dense(A), y, 0.0, 8)
    torch.testing.assert_close(x, torch.linalg.solve(A, y).expand(8, 2), rtol=0, atol=1e-12)


def test_image_operator_noiseless_block_means():
    sde = VESDE(N=20)
    op = Downsample(2).bind((1, 4, 4))
    gm = GaussianMixture([0.5, 0.5], torch.stack([torch.zeros(16), torch.ones(16)]).double(), [1.0, 0.5])
    y = torch.tensor([[[0.2, -0.4], [1.0, 0.0]]], dtype=torch.float64)
    x, _, _ = _run(sde, gm, op, y, 0.0, 3, steps=10)
    torch.testing.assert_close(op(x), y.expand(3, 1, 2, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_moves_mixture_samples_toward_the_exact_posterior(sde):
    assert check_moves_toward_posterior(run_ddrm, sde) == 21


def test_refusals_are_one_line():
    gm = GaussianMixture.example_2d()
    A = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    composed = Dense(A) @ Dense(torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="'ddrm' needs an operator with an SVD"):
        _run(VPSDE(N=10), gm, composed, torch.zeros(1, dtype=torch.float64), SIGMA_Y, 2)
    with pytest.raises(ValueError, match=r"eta_b must be a number in \[0, 1\]"):
        _run(VPSDE(N=10), gm, Dense(A), torch.zeros(1, dtype=torch.float64), SIGMA_Y, 2, eta_b=2.0)
    problem = InverseProblem(Dense(A), torch.zeros(1, 1, dtype=torch.float64), SIGMA_Y, (1, 2))
    with pytest.raises(ValueError, match=r"ddrm.*scalar SDE.*PSLD"):
        run_ddrm(as_model(PSLD(N=10), lambda x, t: -x), problem, torch.zeros(1, 4), cond={}, generator=None,
                 progress=False)
