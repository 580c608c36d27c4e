"""Symmetric splitting CLD sampler (SSCS; Dockhorn et al. 2022, §3.3, Alg. 1) for linear recipe SDEs.

In reverse time ``s = T - t`` the reverse SDE ``dz = [beta A z + 2 beta D score] ds + sqrt(2 beta D) dW`` splits into

* a linear part ``dz = -beta (D - Q) S^-1 z ds + sqrt(2 beta D) dW``: again a recipe SDE (``Q -> -Q``), solved
  exactly (``sde.reverse_linear_step``), and
* a score part ``dz = 2 beta D (score + S^-1 z) ds`` (``sde.reverse_score_drift``), integrated by Euler.

One step is a half step of the linear part, an Euler step of the score part at the midpoint time and a second
half step of the linear part from the midpoint to the next grid time. The original implementations evaluate the
second half step's ``beta`` at the start time, which is wrong for a time-varying ``beta``; here each half step
integrates ``beta`` over its own interval.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import DiffusionModel
from ..numerics.times import resolve_eps
from ..sdes.base import randn_like
from .common import Callback, counting, report, sampler_times, steps_from_budget

__all__ = ["TIME_GRIDS", "sample_sscs"]

#: the grids of the phase-space samplers' first release (every name of ``scoresde.numerics.grids.GRIDS`` works)
TIME_GRIDS = ("uniform", "quadratic")


def sample_sscs(
    model: DiffusionModel,
    z: Tensor,
    *,
    steps: int | None = None,
    times: Tensor | None = None,
    nfe: int | None = None,
    grid: str = "uniform",
    eps: float | None = None,
    denoise: bool = True,
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
) -> tuple[Tensor, int]:
    """SSCS sampling (Dockhorn et al. 2022, §3.3 and Alg. 1) from a state ``z`` at ``T`` down to ``eps``.

    Needs an SDE with the split of its reverse SDE (``reverse_linear_step``, ``reverse_score_drift``: every
    :class:`~scoresde.sdes.RecipeSDE`, e.g. PSLD and CLD). One network evaluation per step; samples of a batch are
    independent. Prefer it to Euler–Maruyama on phase-space SDEs: the linear part is integrated exactly.

    Args:
        steps: number of steps (``sde.N`` when ``None``) on ``grid``.
        times: explicit decreasing times (overrides ``steps``, ``grid`` and ``eps``).
        nfe: a budget of network calls instead of ``steps``: ``nfe - 1`` steps with ``denoise``, else ``nfe``.
        grid: time grid (:data:`scoresde.numerics.grids.GRIDS`): ``"uniform"`` or CLD's ``"quadratic"``.
        eps: last time of the grid; ``None``: the SDE's ``sampling_eps`` (``1e-3``; EDM: ``sigma_min``).
        denoise: finish with Tweedie denoising at the last time (``sde.denoise``, one more network evaluation).
        generator: random generator for the noise of the linear half steps.
        progress: show a progress bar.
        callback: ``callback(i, t, x, x0_pred)`` after each step.

    Returns:
        ``(z, nfe)``: the final state and the number of network evaluations.
    """
    sde = model.sde
    for method in ("reverse_linear_step", "reverse_score_drift"):
        if not callable(getattr(sde, method, None)):
            raise ValueError(f"the sscs sampler needs an SDE with a linear/score split of its reverse SDE "
                             f"(method {method}): the phase-space SDEs PSLD and CLD (every RecipeSDE); "
                             f"{type(sde).__name__} has none (use dpm_solver, ddim, heun, unipc, pc or ode)")
    eps = resolve_eps(sde, eps)
    steps = steps_from_budget(nfe, steps, times, sampler="sscs", cost=lambda n: n + int(denoise))
    ts = sampler_times(sde, steps, times, grid=grid, eps=eps, dtype=z.dtype, device=z.device)
    counted = counting(model, cond)
    B = z.shape[0]
    with torch.no_grad():
        for i in tqdm(range(len(ts) - 1), disable=not progress, desc="SSCS sampling"):
            t, t_next = ts[i].expand(B), ts[i + 1].expand(B)
            t_mid = 0.5 * (t + t_next)
            # 1. half step of the linear part, t -> t_mid (exact Gaussian transition).
            z = sde.reverse_linear_step(z, t, t_mid, randn_like(z, generator))
            # 2. full Euler step of the score part at the midpoint time.
            z = z + (ts[i] - ts[i + 1]) * sde.reverse_score_drift(z, t_mid, counted.score(z, t_mid))
            # 3. half step of the linear part, t_mid -> t_next (beta integrated over this interval).
            z = sde.reverse_linear_step(z, t_mid, t_next, randn_like(z, generator))
            report(callback, i, ts[i + 1], z, counted)
        if denoise:
            t_eps = ts[-1].expand(B)
            z = sde.denoise(z, t_eps, counted.score(z, t_eps))
    return z, counted.calls
