"""The exponential multistep likelihood (``method="exp2m"/"exp3m"/"exp4m"``, ``scoresde.numerics.exponential``).

Oracles: a tight DOP853 solve of the same ODE on the exact-score 2-D mixture (the accuracy per NFE, against rk4 at
the same cost), and a Gaussian law whose model density is known in closed form (the order of convergence).
"""

from __future__ import annotations

import math

import pytest
import torch

from scoresde import log_likelihood
from scoresde.numerics.exponential import integrate_log_density, lagrange_weights
from scoresde.numerics.grids import time_steps
from scoresde.numerics.odeint import FIXED_STEP_METHODS, integrate
from scoresde.sdes import PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture
from tests.likelihood.gaussian import GaussianLaw

EPS = 1e-5
# Mean absolute error against the tight solve, nats/dim, 200 mixture samples (seed 0): measured VP exp4m steps=30
# 1.07e-3 (rk4 at 32 NFE 1.5e-2), steps=45 2.3e-4; sub-VP exp4m steps=45 5.5e-4 (rk4 at 44 NFE 8.0e-3).
CASES = {"vp": (VPSDE, 45, 5e-4, 30, 1.3e-3), "subvp": (SubVPSDE, 45, 8e-4, 30, 6e-3)}


@pytest.fixture(scope="module")
def mixture() -> dict:
    gm = GaussianMixture.example_2d()
    return {"gm": gm, "x": gm.sample(200, torch.Generator().manual_seed(0)), "ref": {}}


def tight(mixture: dict, name: str) -> torch.Tensor:
    if name not in mixture["ref"]:
        sde = CASES[name][0]()
        mixture["ref"][name] = log_likelihood(sde, mixture["gm"].score_fn(sde), mixture["x"], trace="exact",
                                              method="scipy-DOP853", rtol=1e-10, atol=1e-10)
    return mixture["ref"][name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_exp4m_error_per_nfe_on_the_mixture(mixture: dict, name: str) -> None:
    """1e-3 nats/dim of a tight solve at 46 NFE on 200 points (VP and sub-VP; on RESULTS.md's 300 points exp4m needs
    31 / 51 NFE, dopri5 74 / 80), and 5-10x less error than rk4 at the same NFE."""
    cls, steps, tol, few, few_tol = CASES[name]
    sde, x = cls(), mixture["x"]
    ref = tight(mixture, name)
    err = {}
    for method, n in (("exp4m", steps), ("exp4m", few), ("rk4", (steps + 1) // 4)):
        grid = "time_quadratic" if method == "exp4m" else None
        logp, info = log_likelihood(sde, mixture["gm"].score_fn(sde), x, trace="exact", method=method, steps=n,
                                    grid=grid, return_info=True)
        assert info.nfe == (n + 1 if method == "exp4m" else 4 * n)
        err[method, n] = float((logp - ref).abs().mean()) / 2
    assert err["exp4m", steps] <= tol, err
    assert err["exp4m", few] <= few_tol, err
    assert err["exp4m", steps] * 5 <= err["rk4", (steps + 1) // 4], err


@pytest.mark.parametrize(("method", "order"), [("exp2m", 2), ("exp3m", 3), ("exp4m", 4)])
def test_order_of_convergence_on_a_gaussian(method: str, order: int) -> None:
    """Against the closed-form density of a Gaussian law (prior mismatch included), on the logSNR grid with the
    polynomials in lambda, doubling the steps divides the error by at least about 2^order (measured from 80 to 160
    steps: 3.9, 15.5, 15.1; exp3m converges at order 4 on this linear flow)."""
    sde, law = VPSDE(), GaussianLaw(mean=0.5, std=1.0)
    y = 0.5 + torch.randn(16, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    score = law.score_fn(sde)

    def evaluate(t: float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tt = torch.full((x.shape[0],), t, dtype=x.dtype)
        _, var = law._schedule(sde, tt)
        return score(x, tt), -x.shape[1] / var

    errors = []
    for steps in (80, 160):
        times = time_steps(sde, steps, grid="logSNR", eps=EPS).flip(0)
        xT, delta, nfe = integrate_log_density(evaluate, sde, y, times, method=method, interpolation="lambda")
        assert nfe == steps + 1
        errors.append(float((sde.prior_logp(xT) + delta - law.model_log_prob(sde, y, EPS)).abs().max()))
    ratio = errors[0] / errors[1]
    assert 2**order * 0.75 < ratio < 2 ** (order + 1) * 1.3, (errors, ratio)


def test_hutchinson_on_one_dimension_equals_the_exact_trace() -> None:
    """In one dimension a Rademacher probe gives the exact divergence: same value, VE included."""
    gm = GaussianMixture([0.4, 0.6], [[-1.0], [1.5]], [0.3, 0.5])
    x = gm.sample(32, torch.Generator().manual_seed(3))
    for sde in (VESDE(), VPSDE()):
        exact = log_likelihood(sde, gm.score_fn(sde), x, trace="exact", method="exp3m", steps=20)
        hutch = log_likelihood(sde, gm.score_fn(sde), x, method="exp3m", steps=20,
                               generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(hutch, exact)
        truth = gm.log_prob(x, EPS, sde)
        assert float((exact - truth).abs().mean()) < 0.05


def test_lagrange_weights_are_exact() -> None:
    """Weights of a plain quadrature integrate the nodes' polynomial exactly; the exponential weights of one node are
    ``1 - e^(a - b)``; 16 Gauss points agree with 48 on a curved coordinate."""
    nodes = [0.0, -0.4, -1.1]
    w = lagrange_weights(nodes, 0.0, -0.7, 0.0)
    f = lambda v: 2 - v + 3 * v**2  # noqa: E731
    exact = (2 * -0.7 - (-0.7) ** 2 / 2 + (-0.7) ** 3) - 0.0
    assert abs(sum(wj * f(n) for wj, n in zip(w, nodes, strict=True)) - exact) < 1e-13
    assert abs(lagrange_weights([0.3], 0.3, -0.5, 1.0)[0] - (1 - math.exp(0.8))) < 1e-13
    sde = VPSDE()
    coord = lambda lam: sde.t_from_lambda(torch.from_numpy(lam)).numpy() ** 0.5  # noqa: E731
    c = [float(v) for v in sde.t_from_lambda(torch.tensor([6.9, 4.0, 3.0], dtype=torch.float64)) ** 0.5]
    for rate in (0.0, 1.0):
        w16 = lagrange_weights(c, 6.9, 4.0, rate, coordinate=coord)
        w48 = lagrange_weights(c, 6.9, 4.0, rate, coordinate=coord, gauss_points=48)
        assert max(abs(a - b) for a, b in zip(w16, w48, strict=True)) < 1e-12


def test_bad_input_is_refused_in_one_line() -> None:
    gm = GaussianMixture.example_2d()
    x = gm.sample(4, torch.Generator().manual_seed(0))
    sde = VPSDE()
    with pytest.raises(ValueError, match=r"'exp4m' needs a scalar noise schedule .*PSLD.*dopri5.*rk4") as e:
        log_likelihood(PSLD(), lambda z, t: -z, x, method="exp4m", steps=10)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="'exp3m' needs steps"):
        log_likelihood(sde, gm.score_fn(sde), x, method="exp3m")
    with pytest.raises(ValueError, match="grid='logSNR' is for the fixed-step methods"):
        log_likelihood(sde, gm.score_fn(sde), x, grid="logSNR")
    with pytest.raises(ValueError, match="the exponential method 'exp2m' integrates the likelihood"):
        integrate(lambda t, y: -y, torch.ones(1), 0.0, 1.0, rtol=1e-5, atol=1e-5, method="exp2m",
                  times=torch.linspace(0, 1, 3))
    assert {"exp2m", "exp3m", "exp4m", "rk4"} <= set(FIXED_STEP_METHODS)
    ev = lambda t, z: (-z, torch.full((z.shape[0],), -2.0))  # noqa: E731
    good = torch.tensor([EPS, 0.5, 1.0], dtype=torch.float64)
    for kwargs, match in [({"method": "exp5m"}, "unknown exponential method 'exp5m'; valid methods are: exp2m"),
                          ({"interpolation": "t"}, "unknown interpolation 't'; valid values are: lambda"),
                          ({"gauss_points": 1}, "gauss_points must be an integer >= 2, got 1"),
                          ({"times": good.flip(0)}, "strictly increasing times"),
                          ({"times": torch.tensor([0.0, 1.0])}, r"times must lie in \(0, T=1.0\]")]:
        with pytest.raises(ValueError, match=match):
            integrate_log_density(ev, sde, x, kwargs.pop("times", good), **kwargs)
