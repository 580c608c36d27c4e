"""Exponential multistep integration of the probability-flow ODE with its log-density, for the likelihood.

For a scalar linear SDE (``x_t = alpha_t x_0 + sigma_t eps``: VE, VP, sub-VP) the probability-flow ODE (Song et al.
2021, eq. 13) written in the half log-SNR ``lambda = log(alpha / sigma)`` has the exact solution (Lu et al. 2022b,
DPM-Solver++, eq. 9)

    ``x_t = (sigma_t / sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^lambda x0_hat(x_lambda, lambda) d lambda``

with the data prediction ``x0_hat = (x + sigma^2 score) / alpha`` (Tweedie). The multistep method of order ``k``
replaces ``x0_hat`` by the polynomial through its last ``k`` values and integrates it against ``e^lambda`` exactly (an
exponential Adams–Bashforth step, the exponential Adams methods of Hochbruck & Ostermann 2010; with the polynomial
in ``lambda`` and ``k = 2`` it is DPM-Solver++(2M) up to that solver's approximation of the linear term). The
polynomial's variable is an explicit choice (``interpolation``): ``lambda``, ``t`` or ``sqrt(t)``; the integrals are
taken in ``lambda`` whatever it is.

The log-density term (Song et al. 2021, App. D.2, eq. 39; Chen et al. 2018, Thm. 1) is rewritten in the same
variable: the drift is ``f_pf = (d log alpha / dt) x - 1/2 g^2 score`` and ``g^2 = -2 sigma^2 d lambda / dt``, so

    ``int_eps^T div f_pf dt = D (log alpha_T - log alpha_eps) + int_{lambda_eps}^{lambda_T} sigma^2 div score d lambda``

whose first part is exact and whose second part is integrated by the matching quadrature: on each interval the
polynomial (same variable) through ``k`` values of ``sigma^2 div score`` at the grid nodes, ending at the interval's
right node (Adams–Moulton form), so one evaluation at ``T`` completes it. NFE = steps + 1.

Use :func:`integrate_log_density` (through :func:`scoresde.log_likelihood` with ``method="exp4m"``) when a fixed,
known cost of a likelihood matters on a VE/VP/sub-VP model; the Runge–Kutta methods of
:mod:`scoresde.numerics.odeint` serve every SDE and any ODE; the adaptive ones control the error. Measured against
them in ``benchmarks/RESULTS.md``, "Exponential multistep likelihood (issue 26)".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..sdes.base import SDE

#: method name -> order ``k``: nodes of the data-prediction polynomial and of the log-density quadrature
EXPONENTIAL_ORDERS = {"exp2m": 2, "exp3m": 3, "exp4m": 4}
EXPONENTIAL_METHODS = tuple(EXPONENTIAL_ORDERS)
#: the time grid the likelihood uses for these methods unless told otherwise: uniform in lambda, so every noise scale
#: gets its share of the steps (on the digits model time_quadratic was 0.155 bits/dim off dopri5 at 46 NFE, logSNR
#: 0.001; on the 2-D mixture, which has no structure at small noise, time_quadratic is the better grid:
#: benchmarks/RESULTS.md)
EXPONENTIAL_DEFAULT_GRID = "logSNR"
#: variables the polynomials may interpolate in (``sqrt_time`` makes the nodes of the time_quadratic grid equispaced)
INTERPOLATIONS = ("lambda", "time", "sqrt_time")
#: the interpolation variable the likelihood uses on each named grid: the one the grid is uniform in (``lambda`` for
#: the grids in the log-SNR)
GRID_INTERPOLATION = {"uniform": "time", "time_uniform": "time", "quadratic": "sqrt_time",
                      "time_quadratic": "sqrt_time", "logSNR": "lambda", "karras": "lambda"}

Evaluate = Callable[[float, Tensor], tuple[Tensor, Tensor]]
"""``evaluate(t, x) -> (score, div_score)``: the score at ``(x, t)`` (shape of ``x``) and its divergence ``(B,)``
(exact or a Hutchinson estimate with probes fixed along the path)."""


def require_scalar_schedule(sde: SDE, method: str) -> None:
    """Refuse an SDE without a scalar noise schedule (``log_alpha``, ``sigma``, ``lambda_t``: VE, VP, sub-VP) or
    with auxiliary variables (PSLD, CLD), naming the methods that serve it."""
    if not sde.scalar_schedule:
        raise ValueError(f"the exponential likelihood method {method!r} needs a scalar noise schedule (VE, VP, "
                         f"sub-VP); {type(sde).__name__} has a matrix kernel: use an adaptive method (dopri5, ...) "
                         "or a Runge-Kutta method (rk4, rk3, heun2, euler)")


def lagrange_weights(nodes: Sequence[float], a: float, b: float, rate: float, *,
                     coordinate: Callable[[np.ndarray], np.ndarray] | None = None,
                     gauss_points: int = 16) -> list[float]:
    """``w_j = int_a^b e^(rate (lambda - b)) l_j(c(lambda)) d lambda`` for the Lagrange basis ``l_j`` of ``nodes``
    (given in the coordinate ``c``; ``coordinate=None``: ``c(lambda) = lambda``), ``a > b`` allowed (a signed
    integral), by Gauss–Legendre quadrature in ``lambda`` with ``gauss_points`` points in float64.

    Use it for the weights of an exponential multistep step (``rate = 1``) or of an interpolatory quadrature
    (``rate = 0``). The integrand is analytic; 16 points are exact to round-off on the grids of the likelihood
    (checked against 48 points in ``tests/likelihood/test_exponential.py``).
    """
    xs, ws = np.polynomial.legendre.leggauss(gauss_points)
    lam = (a + b) / 2 + (b - a) / 2 * xs
    c = lam if coordinate is None else coordinate(lam)
    wq = (b - a) / 2 * ws * np.exp(rate * (lam - b))
    out = []
    for j, nj in enumerate(nodes):
        basis = np.ones_like(lam)
        for m, nm in enumerate(nodes):
            if m != j:
                basis = basis * (c - nm) / (nj - nm)
        out.append(float((wq * basis).sum()))
    return out


def _coordinate(sde: SDE, interpolation: str) -> tuple[Callable[[np.ndarray], np.ndarray] | None,
                                                         Callable[[Tensor], Tensor]]:
    """``(lambda -> c, t -> c)`` of an interpolation variable (``None``: ``lambda`` itself)."""
    if interpolation == "lambda":
        return None, sde.lambda_t
    power = 0.5 if interpolation == "sqrt_time" else 1.0

    def from_lambda(lam: np.ndarray) -> np.ndarray:
        return sde.t_from_lambda(torch.from_numpy(lam)).numpy() ** power

    return from_lambda, lambda t: t**power


def check_increasing_times(times: Tensor, sde: SDE) -> Tensor:
    """``times`` as float64 if it is 1-D, strictly increasing, of at least 2 points within ``(0, T]``."""
    times = torch.as_tensor(times).detach().to(torch.float64).flatten().cpu()
    if times.numel() < 2 or not bool((times.diff() > 0).all()):
        raise ValueError(f"times must hold at least 2 strictly increasing times, got {times.tolist()}")
    if not (float(times[0]) > 0 and float(times[-1]) <= sde.T):
        raise ValueError(f"times must lie in (0, T={sde.T}], got [{float(times[0])}, {float(times[-1])}]")
    return times


def integrate_log_density(evaluate: Evaluate, sde: SDE, x: Tensor, times: Tensor, *, method: str = "exp4m",
                          interpolation: str = "sqrt_time", gauss_points: int = 16) -> tuple[Tensor, Tensor, int]:
    """Carry ``x`` (``B`` examples at ``times[0]``) along the probability-flow ODE of the scalar linear ``sde`` to
    ``times[-1]`` by the exponential multistep method ``method`` in ``lambda`` (module docstring: DPM-Solver++'s
    data-prediction form, Lu et al. 2022b) and integrate ``div f_pf`` along the way by the matching quadrature.

    Args:
        evaluate: ``evaluate(t, x) -> (score, div_score)``, called once per grid time (``steps + 1`` calls).
        sde: a scalar linear SDE (``log_alpha``, ``sigma``, ``lambda_t``, ``t_from_lambda``); others are refused.
        x: the states at ``times[0]``, ``(B, ...)``.
        times: increasing grid ``eps = t_0 < ... < t_steps <= T`` (e.g. a time grid of
            :func:`scoresde.numerics.grids.time_steps` reversed).
        method: ``"exp2m"``, ``"exp3m"`` or ``"exp4m"`` (order 2, 3, 4; the first steps use the past values there
            are). Measured on the 2-D mixture (benchmarks/RESULTS.md) order 4 is the most accurate from 30 NFE,
            order 5 and 6 less accurate up to 50 NFE (their extrapolation over the sharp part of the flow).
        interpolation: the variable of the polynomials, ``"sqrt_time"`` (default: on the ``time_quadratic`` grid its
            nodes are equispaced; measured 1-4x more accurate than ``"lambda"`` there), ``"time"`` or ``"lambda"``
            (DPM-Solver's choice; the natural one on the ``logSNR`` grid).
        gauss_points: Gauss–Legendre points of :func:`lagrange_weights`.

    Returns:
        ``(x at times[-1], int div f_pf dt (B,), nfe)``.
    """
    if method not in EXPONENTIAL_ORDERS:
        raise ValueError(f"unknown exponential method {method!r}; valid methods are: {', '.join(EXPONENTIAL_METHODS)}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid values are: {', '.join(INTERPOLATIONS)}")
    if not (isinstance(gauss_points, int) and gauss_points >= 2):
        raise ValueError(f"gauss_points must be an integer >= 2, got {gauss_points!r}")
    require_scalar_schedule(sde, method)
    times = check_increasing_times(times, sde)
    order, N = EXPONENTIAL_ORDERS[method], times.numel() - 1
    from_lambda, from_time = _coordinate(sde, interpolation)
    lam, c = sde.lambda_t(times).tolist(), from_time(times).tolist()
    alpha, sigma = torch.exp(sde.log_alpha(times)).tolist(), sde.sigma(times).tolist()

    def weights(nodes: range, i: int, rate: float) -> list[float]:
        return lagrange_weights([c[j] for j in nodes], lam[i], lam[i + 1], rate, coordinate=from_lambda,
                                gauss_points=gauss_points)

    x0_hats: list[Tensor] = []
    div_terms: list[Tensor] = []
    for i in range(N + 1):
        score, div = evaluate(float(times[i]), x)
        x0_hats.append((x + sigma[i] ** 2 * score) / alpha[i])
        div_terms.append(sigma[i] ** 2 * div)
        if i == N:
            break
        nodes = range(i - min(order, i + 1) + 1, i + 1)
        w = weights(nodes, i, 1.0)
        x = sigma[i + 1] / sigma[i] * x + alpha[i + 1] * sum(wj * x0_hats[j] for j, wj in zip(nodes, w, strict=True))
    delta = torch.zeros_like(div_terms[0])
    k = min(order, N + 1)
    for i in range(N):  # the interval [i, i + 1] from the k nodes ending at i + 1 (shifted right at the start)
        nodes = range(max(0, i + 2 - k), max(0, i + 2 - k) + k)
        w = weights(nodes, i, 0.0)
        delta = delta + sum(wj * div_terms[j] for j, wj in zip(nodes, w, strict=True))
    D = x[0].numel()
    delta = delta + D * float(sde.log_alpha(times[-1:]) - sde.log_alpha(times[:1]))
    return x, delta, N + 1
