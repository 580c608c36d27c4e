"""Fixed-step Runge-Kutta integration and the likelihood's fixed-step option."""

from __future__ import annotations

import math

import pytest
import torch

from scoresde import log_likelihood
from scoresde.numerics.odeint import RUNGE_KUTTA_METHODS, integrate, integrate_fixed
from scoresde.sdes import VPSDE
from scoresde.toy import GaussianMixture

F64 = torch.float64
ORDERS = {"euler": 1, "heun2": 2, "rk3": 3, "rk4": 4}


@pytest.mark.parametrize("method", RUNGE_KUTTA_METHODS)
def test_each_method_converges_at_its_order(method: str) -> None:
    """dy/dt = y cos(t) has y(t) = exp(sin t); the error ratio when halving the step is 2^order; NFE = stages x
    steps; a decreasing grid integrates backwards."""
    fn = lambda t, y: y * math.cos(t)  # noqa: E731
    errors = []
    for n in (16, 32):
        times = torch.linspace(0.0, 2.0, n + 1, dtype=F64)
        y, nfe = integrate_fixed(fn, torch.ones(1, dtype=F64), times, method=method)
        assert nfe == ORDERS[method] * n if method != "heun2" else nfe == 2 * n
        errors.append(abs(float(y) - math.exp(math.sin(2.0))))
    ratio = errors[0] / errors[1]
    assert 2 ** ORDERS[method] * 0.8 < ratio < 2 ** ORDERS[method] * 1.25, ratio
    back, _ = integrate_fixed(fn, torch.tensor([math.exp(math.sin(2.0))], dtype=F64),
                              torch.linspace(2.0, 0.0, 65, dtype=F64), method=method)
    assert abs(float(back) - 1.0) < 10 * errors[1] + 1e-12


def test_grid_and_tolerances_are_not_mixed_up() -> None:
    fn = lambda t, y: -y  # noqa: E731
    with pytest.raises(ValueError, match="'rk4' needs a time grid"):
        integrate(fn, torch.ones(1), 0.0, 1.0, rtol=1e-5, atol=1e-5, method="rk4")
    with pytest.raises(ValueError, match="adaptive method 'dopri5' chooses its own steps"):
        integrate(fn, torch.ones(1), 0.0, 1.0, rtol=1e-5, atol=1e-5, times=torch.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="strictly monotone"):
        integrate_fixed(fn, torch.ones(1), torch.tensor([0.0, 1.0, 0.5]))


def test_fixed_step_likelihood_converges_to_the_exact_log_density() -> None:
    sde = VPSDE()
    gm = GaussianMixture.example_2d()
    x = gm.sample(200, torch.Generator().manual_seed(0))
    exact = gm.log_prob(x, 1e-5, sde)
    errors = {}
    for steps in (10, 40):
        logp, info = log_likelihood(sde, gm.score_fn(sde), x, trace="exact", method="rk4", steps=steps,
                                    return_info=True)
        assert info.nfe == 4 * steps
        errors[steps] = float((logp - exact).abs().mean())
    assert errors[40] < 0.2 * errors[10] and errors[40] < 5e-3, errors
    with pytest.raises(ValueError, match="'rk4' needs steps"):
        log_likelihood(sde, gm.score_fn(sde), x, method="rk4", return_info=True)
    with pytest.raises(ValueError, match="steps=10 is for the fixed-step methods"):
        log_likelihood(sde, gm.score_fn(sde), x, steps=10, return_info=True)
