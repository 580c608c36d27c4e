"""Pieces every sampler shares: NFE counting with conditioning, the time grid from ``steps``/``times``/``grid``, the
budget ``nfe`` of network calls, the per-step callback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import CountingModel, DiffusionModel
from ..numerics.checks import check_count
from ..numerics.grids import check_times, time_steps
from ..sdes.base import SDE

__all__ = ["Callback", "counting", "interval_calls", "levels_before_zero", "report", "require_scalar_schedule",
           "sampler_times", "steps_from_budget"]

#: ``callback(i, t, x, x0_pred)`` after step ``i``: ``t`` the time the step reached (a 0-d tensor), ``x`` the state
#: there, ``x0_pred`` the data prediction of the step's last model evaluation (no extra network call), or ``None``
Callback = Callable[[int, Tensor, Tensor, "Tensor | None"], Any]


def require_scalar_schedule(sde: SDE, sampler: str) -> None:
    """Refuse an SDE without a scalar noise schedule (``log_alpha``, ``sigma``, ``lambda_t``: VE, VP, sub-VP) for a
    sampler built on one, naming the samplers that serve phase-space SDEs."""
    if not sde.scalar_schedule:
        raise ValueError(f"{sampler} needs a scalar noise schedule (alpha, sigma, lambda_t): VE, VP or sub-VP; "
                         f"{type(sde).__name__} has a matrix kernel (use ddim, dpm_solver, sscs, pc or ode)")


def counting(model: DiffusionModel, cond: dict[str, Any] | None) -> CountingModel:
    """The adapter with ``cond`` bound, counting network evaluations (the NFE)."""
    return CountingModel(model, cond)


def sampler_times(sde: SDE, steps: int | None, times: Tensor | None, *, grid: str, eps: float, rho: float = 7.0,
                  dtype: torch.dtype, device: torch.device, denoise: bool = False) -> Tensor:
    """``steps + 1`` times from ``T`` to ``eps`` on ``grid`` (``steps`` defaults to ``sde.N``), or the explicit
    decreasing ``times`` (which then override ``steps``, ``grid`` and ``eps``).

    On the ``karras`` grid with ``denoise`` the count is k-diffusion's: ``steps`` intervals *including* the final step
    to ``sigma = 0`` that ``denoise`` takes (the data prediction at the last level), i.e. ``steps`` noise levels, those
    of ``get_sigmas_karras(steps, sigma_hat(eps), sigma_hat(T), rho)`` before its appended zero; so ``steps=n``
    makes the NFE of k-diffusion's ``sample_euler`` / ``sample_dpmpp_2m`` with ``n``. ``steps=1`` is the one level
    ``T``. The other grids keep ``steps + 1`` times and ``denoise`` adds one evaluation (DPM-Solver's
    ``denoise_to_zero``)."""
    if times is not None:
        if steps is not None:
            raise ValueError("pass steps (with grid) or an explicit times grid, not both")
        return check_times(times, sde).to(dtype=dtype, device=device)
    n = sde.N if steps is None else steps
    if grid == "karras" and denoise:
        return levels_before_zero(sde, n, grid=grid, eps=eps, rho=rho, dtype=dtype, device=device)
    return time_steps(sde, n, grid=grid, eps=eps, rho=rho, dtype=dtype, device=device)


def levels_before_zero(sde: SDE, steps: int, *, grid: str, eps: float, rho: float, dtype: torch.dtype,
                       device: torch.device) -> Tensor:
    """The ``steps`` times of the noise levels of a schedule whose last of ``steps`` steps goes to ``sigma = 0``
    (k-diffusion's and EDM's count): ``steps - 1`` intervals from ``T`` to ``eps`` on ``grid``, or ``[T]`` alone for
    one step."""
    check_count("steps", steps)
    if steps == 1:
        return torch.tensor([sde.T], dtype=dtype, device=device)
    return time_steps(sde, steps - 1, grid=grid, eps=eps, rho=rho, dtype=dtype, device=device)


def report(callback: Callback | None, i: int, t: Tensor, x: Tensor, model: CountingModel) -> None:
    """Call ``callback(i, t, x, x0_pred)`` if one was given."""
    if callback is not None:
        callback(i, t, x, model.last_x0())


def steps_from_budget(nfe: int | None, steps: int | None, times: Tensor | None, *, sampler: str,
                      cost: Callable[[int], int] | None = None, grid: str = "uniform", denoise: bool = False,
                      minimum: int = 1) -> int | None:
    """``steps`` unchanged without a budget; with ``nfe`` (a budget of network calls, refused together with
    ``steps`` or ``times``) the largest ``steps >= minimum`` whose ``cost(steps)`` (the sampler's network calls,
    non-decreasing in ``steps``; default :func:`interval_calls` with ``grid`` and ``denoise``) is at most ``nfe``, or
    a ``ValueError`` naming the fewest calls ``sampler`` can run with. Every fixed-step sampler turns its ``nfe=``
    option into ``steps`` with it."""
    if nfe is None:
        return steps
    check_count("nfe", nfe)
    given = [name for name, value in (("steps", steps), ("times", times)) if value is not None]
    if given:
        raise ValueError(f"pass steps, times or nfe (a budget of network calls), not nfe={nfe} with {given[0]}")
    if cost is None:
        def cost(n: int) -> int:
            return interval_calls(n, grid=grid, denoise=denoise)
    if cost(minimum) > nfe:
        raise ValueError(f"nfe={nfe} is too small for {sampler}: its fewest steps cost {cost(minimum)} network calls")
    steps = minimum
    while cost(steps + 1) <= nfe:
        steps += 1
    return steps


def interval_calls(steps: int, *, grid: str, denoise: bool) -> int:
    """Network calls of a sampler with one call per grid interval and ``steps`` from :func:`sampler_times` (DDIM,
    multistep DPM-Solver, UniPC): ``steps`` on the ``karras`` grid with ``denoise`` (k-diffusion's count, the last
    interval being the data prediction), ``steps + denoise`` otherwise."""
    return steps if grid == "karras" and denoise else steps + int(denoise)
