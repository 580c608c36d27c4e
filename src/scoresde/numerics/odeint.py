"""ODE integration shared by the probability-flow sampler and the likelihood.

Adaptive methods from two back ends: torchdiffeq (the integration stays on the tensor's device) and scipy's
``solve_ivp`` (float64 on the CPU, as the Score SDE reference does); fixed-step explicit Runge–Kutta methods on a
given grid; and (registered among the fixed-step methods) the exponential multistep methods of the likelihood's
probability-flow ODE, :mod:`scoresde.numerics.exponential`, which need the SDE's noise schedule and so are run by
:func:`scoresde.log_likelihood`, not by :func:`integrate`. All count function evaluations (NFE).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .exponential import EXPONENTIAL_METHODS

TORCHDIFFEQ_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
SCIPY_METHODS = ("scipy-RK45", "scipy-RK23", "scipy-DOP853", "scipy-Radau", "scipy-BDF", "scipy-LSODA")
#: explicit Runge-Kutta methods on a given time grid (one ``fn`` evaluation per stage): their Butcher tableaus
FIXED_STEP_TABLEAUS: dict[str, tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[float, ...]]] = {
    "euler": (((),), (1.0,), (0.0,)),
    "heun2": (((), (1.0,)), (0.5, 0.5), (0.0, 1.0)),
    "rk3": (((), (0.5,), (-1.0, 2.0)), (1 / 6, 2 / 3, 1 / 6), (0.0, 0.5, 1.0)),
    "rk4": (((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6), (0.0, 0.5, 0.5, 1.0)),
}
RUNGE_KUTTA_METHODS = tuple(FIXED_STEP_TABLEAUS)
#: every method with a grid of ``steps`` intervals instead of tolerances: the Runge–Kutta tableaus (any ODE) and the
#: exponential multistep methods of the likelihood (``exp2m``, ``exp3m``: scalar linear SDEs only)
FIXED_STEP_METHODS = RUNGE_KUTTA_METHODS + EXPONENTIAL_METHODS
ADAPTIVE_METHODS = TORCHDIFFEQ_METHODS + SCIPY_METHODS
ODE_METHODS = ADAPTIVE_METHODS + FIXED_STEP_METHODS


def integrate(
    fn: Callable[[float, Tensor], Tensor],
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    rtol: float,
    atol: float,
    method: str = "dopri5",
    times: Tensor | None = None,
) -> tuple[Tensor, int]:
    """Solve ``dy/dt = fn(t, y)`` from ``t0`` to ``t1``; return ``(y(t1), nfe)``.

    ``method`` is a torchdiffeq adaptive method (``dopri5`` is the Dormand–Prince RK45 pair), ``scipy-<name>`` for
    ``scipy.integrate.solve_ivp`` (``scipy-RK45`` is the Score SDE reference's choice), or a fixed-step explicit
    Runge–Kutta method (``euler``, ``heun2``, ``rk3``, ``rk4``) on the grid ``times`` (from ``t0`` to ``t1``; NFE =
    stages x steps), which :func:`integrate_fixed` runs. Adaptive methods take ``rtol``/``atol`` and no grid.
    """
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; valid methods are: {', '.join(ODE_METHODS)}")
    if method in EXPONENTIAL_METHODS:
        raise ValueError(f"the exponential method {method!r} integrates the likelihood's probability-flow ODE of a "
                         "VE/VP/sub-VP SDE (scoresde.log_likelihood, numerics.exponential.integrate_log_density); for "
                         f"a general ODE use {', '.join(RUNGE_KUTTA_METHODS)} or an adaptive method")
    if method in FIXED_STEP_METHODS:
        if times is None:
            raise ValueError(f"the fixed-step method {method!r} needs a time grid (times)")
        return integrate_fixed(fn, y0, times, method=method)
    if times is not None:
        raise ValueError(f"the adaptive method {method!r} chooses its own steps; times are for the fixed-step "
                         f"methods ({', '.join(RUNGE_KUTTA_METHODS)})")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    nfe = 0

    def counted(t: float, y: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        return fn(t, y)

    if method in TORCHDIFFEQ_METHODS:
        import torchdiffeq  # deferred: start-up time (only the torchdiffeq methods need it)

        times = torch.tensor([t0, t1], dtype=y0.dtype, device=y0.device)
        # step_t makes the solver land exactly on t1 instead of stepping past it and interpolating back: the
        # drift may be undefined beyond the interval (e.g. a negative VP variance for t < 0).
        y = torchdiffeq.odeint(lambda t, y: counted(float(t), y), y0, times, rtol=rtol, atol=atol, method=method,
                               options={"step_t": times[1:]})
        return y[-1], nfe

    from scipy.integrate import solve_ivp  # deferred: start-up time (only the scipy methods need it)

    shape, dtype, device = y0.shape, y0.dtype, y0.device

    def scipy_fn(t: float, y: np.ndarray) -> np.ndarray:
        y_t = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
        return counted(t, y_t).detach().cpu().to(torch.float64).numpy().reshape(-1)

    y0_np = y0.detach().cpu().to(torch.float64).numpy().reshape(-1)
    sol = solve_ivp(scipy_fn, (t0, t1), y0_np, rtol=rtol, atol=atol, method=method.removeprefix("scipy-"))
    if not sol.success:
        raise RuntimeError(f"ODE solver {method} failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).reshape(shape).to(device=device, dtype=dtype), nfe


def integrate_fixed(fn: Callable[[float, Tensor], Tensor], y0: Tensor, times: Tensor, *,
                    method: str = "rk4") -> tuple[Tensor, int]:
    """Solve ``dy/dt = fn(t, y)`` along the grid ``times`` (monotone, ``times[0]`` the start) with the explicit
    Runge–Kutta method ``method`` (its Butcher tableau in :data:`FIXED_STEP_TABLEAUS`: Euler, Heun's second-order,
    Kutta's third-order, classical RK4); return ``(y(times[-1]), nfe)`` with ``nfe`` = stages x steps.

    Use it when a fixed budget of evaluations matters more than a tolerance (on a grid that follows the problem's
    scale, e.g. uniform in log-SNR for diffusion ODEs); use the adaptive methods when the error must be controlled.
    """
    if method not in FIXED_STEP_TABLEAUS:
        raise ValueError(f"unknown Runge-Kutta method {method!r}; valid methods are: {', '.join(RUNGE_KUTTA_METHODS)}")
    times = torch.as_tensor(times, dtype=torch.float64).flatten().cpu()
    if times.numel() < 2:
        raise ValueError(f"times must hold at least 2 points, got {times.numel()}")
    d = times.diff()
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise ValueError(f"times must be strictly monotone, got {times.tolist()}")
    a, b, c = FIXED_STEP_TABLEAUS[method]
    y, nfe = y0, 0
    for i in range(times.numel() - 1):
        t, h = float(times[i]), float(times[i + 1] - times[i])
        ks: list[Tensor] = []
        for row, ci in zip(a, c, strict=True):
            yi = y
            for aij, kj in zip(row, ks, strict=False):
                if aij != 0.0:
                    yi = yi + (h * aij) * kj
            ks.append(fn(t + ci * h, yi))
            nfe += 1
        y = y + sum((h * bi) * ki for bi, ki in zip(b, ks, strict=True) if bi != 0.0)
    return y, nfe
