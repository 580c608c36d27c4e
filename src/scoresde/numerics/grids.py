"""Time grids of the fixed-step samplers: every sampler reads its times from here (or from an explicit ``times``).

A grid is ``steps + 1`` decreasing forward times from ``T`` to ``eps`` (DPM-Solver's ``get_time_steps``
convention). Which to pick:

* ``"uniform"`` (alias ``"time_uniform"``): equal steps in ``t``; Score SDE's PC grid, DDIM's default.
* ``"quadratic"``: ``t_i = eps + (T - eps)(1 - i/n)^2``, small steps near ``eps``; CLD/PSLD's striding.
* ``"time_quadratic"``: ``t_i = (sqrt(T) + i/n (sqrt(eps) - sqrt(T)))^2``; DPM-Solver's ``time_quadratic``
  (recommended there for high-resolution pixel models).
* ``"logSNR"``: uniform in the half log-SNR ``lambda = log(alpha/sigma)``; DPM-Solver's ``logSNR``, its default and the
  best choice for few-step solvers (needs ``sde.lambda_t``: VE/VP/sub-VP, and PSLD/CLD's matrix half log-SNR).
* ``"karras"``: the EDM grid (Karras et al. 2022, eq. 5) in ``sigma/alpha = exp(-lambda)``:
  ``s_i = (s_max^(1/rho) + i/n (s_min^(1/rho) - s_max^(1/rho)))^rho`` from ``s(T)`` to ``s(eps)``, mapped back to
  times with ``sde.t_from_lambda``; ``rho = 7`` by default. k-diffusion's ``get_sigmas_karras`` appends a final
  ``sigma = 0``; here that last step is the samplers' ``denoise`` option, and a sampler called with ``grid="karras",
  steps=n, denoise=True`` counts that step among its ``n`` (k-diffusion's ``n`` levels then 0, the same NFE:
  :func:`scoresde.sampling.common.sampler_times`); this function itself always returns ``steps + 1`` times.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..sdes.base import SDE
from .checks import check_count
from .times import check_eps

__all__ = ["GRIDS", "check_times", "time_steps"]


def _u(steps: int) -> Tensor:
    return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)


def _uniform(sde: SDE, steps: int, eps: float, rho: float) -> Tensor:
    return torch.linspace(sde.T, eps, steps + 1, dtype=torch.float64)


def _quadratic(sde: SDE, steps: int, eps: float, rho: float) -> Tensor:
    t = eps + (sde.T - eps) * torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64) ** 2
    t[0] = sde.T  # exact start (eps + (T - eps) may round above T, e.g. T = 80)
    return t


def _time_quadratic(sde: SDE, steps: int, eps: float, rho: float) -> Tensor:
    t = (sde.T**0.5 + (eps**0.5 - sde.T**0.5) * _u(steps)) ** 2
    t[0] = sde.T  # exact start: sqrt(T)^2 rounds above T for T = 2, 80 (the grid was refused there)
    return t


def _lambdas(sde: SDE, eps: float, name: str) -> tuple[Tensor, Tensor]:
    if not callable(getattr(sde, "lambda_t", None)):
        raise ValueError(f"grid {name!r} needs a noise schedule (lambda_t, t_from_lambda); "
                         f"{type(sde).__name__} has none (use 'uniform' or 'quadratic')")
    ends = torch.tensor([sde.T, eps], dtype=torch.float64)
    lam = sde.lambda_t(ends)
    return lam[0], lam[1]


def _log_snr(sde: SDE, steps: int, eps: float, rho: float) -> Tensor:
    lam_T, lam_0 = _lambdas(sde, eps, "logSNR")
    t = sde.t_from_lambda(lam_T + (lam_0 - lam_T) * _u(steps))
    t[0], t[-1] = sde.T, eps  # exact ends (the inverse may round)
    return t


def _karras(sde: SDE, steps: int, eps: float, rho: float) -> Tensor:
    lam_T, lam_0 = _lambdas(sde, eps, "karras")
    s_max, s_min = torch.exp(-lam_T), torch.exp(-lam_0)
    s = (s_max ** (1 / rho) + _u(steps) * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    t = sde.t_from_lambda(-torch.log(s))
    t[0], t[-1] = sde.T, eps
    return t


GridFn = Callable[[SDE, int, float, float], Tensor]

#: grid name -> ``fn(sde, steps, eps, rho)`` returning ``steps + 1`` float64 times from ``T`` to ``eps``
GRIDS: dict[str, GridFn] = {
    "uniform": _uniform,
    "time_uniform": _uniform,
    "quadratic": _quadratic,
    "time_quadratic": _time_quadratic,
    "logSNR": _log_snr,
    "karras": _karras,
}


def time_steps(sde: SDE, steps: int, *, grid: str = "uniform", eps: float = 1e-3, rho: float = 7.0,
               dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """``steps + 1`` decreasing times ``T = t_0 > ... > t_steps = eps`` on the grid ``grid`` (module docstring).

    Args:
        sde: the forward SDE (``T``; ``lambda_t``/``t_from_lambda`` for ``logSNR`` and ``karras``).
        steps: number of intervals (a positive integer).
        grid: grid name, see :data:`GRIDS`.
        eps: last time, in ``(0, T)``.
        rho: exponent of the ``karras`` grid (7 in EDM); ignored by the others.
        dtype, device: of the returned tensor (the grid is computed in float64).
    """
    if grid not in GRIDS:
        raise ValueError(f"unknown time grid {grid!r}; valid time grids are: {', '.join(GRIDS)}")
    check_count("steps", steps)
    check_eps(eps, sde)
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho!r}")
    return check_times(GRIDS[grid](sde, steps, eps, rho), sde).to(dtype=dtype, device=device)


def check_times(times: Tensor, sde: SDE, *, allow_zero_end: bool = False) -> Tensor:
    """Validate an explicit time grid: 1-D, at least two times, strictly decreasing, within ``(0, T]`` (the last
    may be 0 with ``allow_zero_end``). Returns it as a float64 tensor."""
    times = torch.as_tensor(times).detach().to(torch.float64).cpu()
    if times.dim() != 1 or times.numel() < 2:
        raise ValueError(f"times must be a 1-D tensor of at least 2 decreasing times, got shape {tuple(times.shape)}")
    if not bool((times[1:] < times[:-1]).all()):
        raise ValueError(f"times must be strictly decreasing, got {times.tolist()}")
    low_ok = times[-1] >= 0 if allow_zero_end else times[-1] > 0
    if not (bool(low_ok) and float(times[0]) <= sde.T):
        raise ValueError(f"times must lie in (0, T={sde.T}], got [{float(times[-1])}, {float(times[0])}]")
    return times
