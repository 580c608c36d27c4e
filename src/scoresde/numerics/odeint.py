"""Adaptive ODE integration shared by the probability-flow sampler and the likelihood (moved from
``scoresde.sampling.odeint``, which re-exports it).

Two back ends: torchdiffeq (the integration stays on the tensor's device) and scipy's ``solve_ivp`` (float64 on
the CPU, as the Score SDE reference does). Both count function evaluations (NFE).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

TORCHDIFFEQ_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
SCIPY_METHODS = ("scipy-RK45", "scipy-RK23", "scipy-DOP853", "scipy-Radau", "scipy-BDF", "scipy-LSODA")
ODE_METHODS = TORCHDIFFEQ_METHODS + SCIPY_METHODS


def integrate(
    fn: Callable[[float, Tensor], Tensor],
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    rtol: float,
    atol: float,
    method: str = "dopri5",
) -> tuple[Tensor, int]:
    """Solve ``dy/dt = fn(t, y)`` from ``t0`` to ``t1`` with an adaptive solver; return ``(y(t1), nfe)``.

    ``method`` is a torchdiffeq adaptive method (``dopri5`` is the Dormand–Prince RK45 pair) or ``scipy-<name>``
    for ``scipy.integrate.solve_ivp`` (``scipy-RK45`` is the Score SDE reference's choice).
    """
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; valid methods are: {', '.join(ODE_METHODS)}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    nfe = 0

    def counted(t: float, y: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        return fn(t, y)

    if method in TORCHDIFFEQ_METHODS:
        import torchdiffeq

        times = torch.tensor([t0, t1], dtype=y0.dtype, device=y0.device)
        # step_t makes the solver land exactly on t1 instead of stepping past it and interpolating back: the
        # drift may be undefined beyond the interval (e.g. a negative VP variance for t < 0).
        y = torchdiffeq.odeint(lambda t, y: counted(float(t), y), y0, times, rtol=rtol, atol=atol, method=method,
                               options={"step_t": times[1:]})
        return y[-1], nfe

    from scipy.integrate import solve_ivp

    shape, dtype, device = y0.shape, y0.dtype, y0.device

    def scipy_fn(t: float, y: np.ndarray) -> np.ndarray:
        y_t = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
        return counted(t, y_t).detach().cpu().to(torch.float64).numpy().reshape(-1)

    y0_np = y0.detach().cpu().to(torch.float64).numpy().reshape(-1)
    sol = solve_ivp(scipy_fn, (t0, t1), y0_np, rtol=rtol, atol=atol, method=method.removeprefix("scipy-"))
    if not sol.success:
        raise RuntimeError(f"ODE solver {method} failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).reshape(shape).to(device=device, dtype=dtype), nfe
