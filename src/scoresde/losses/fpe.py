"""The score Fokker–Planck residual as an evaluation metric (Lai et al. 2023, Prop. 3.1): how far a score model is
from solving the score FPE on perturbed data (the regulariser's maths: :mod:`scoresde.losses.fp_core`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..models.adapter import check_cond, slice_cond
from ..numerics.checks import check_count
from ..numerics.divergence import draw_probes, is_hutchinson
from ..numerics.times import check_eps
from ..sdes.base import SDE, randn_like
from .dsm import model_of
from .fp_core import check_full_score, conditioned, fp_core, validate


class FPEResidual(NamedTuple):
    """Result of :func:`fpe_residual`.

    ``times`` ``(n,)``; ``per_time`` ``(n,)``: mean over the data of ``||r||^2 / D`` at each time;
    ``per_time_stderr`` ``(n,)``: its standard error over the data; ``mean``: the mean over data and times;
    ``stderr``: its standard error (over the data of the per-example time averages, so correlations between times
    of the same example are accounted for); ``per_example`` ``(N,)``: the per-example time averages.
    """

    times: Tensor
    per_time: Tensor
    per_time_stderr: Tensor
    mean: float
    stderr: float
    per_example: Tensor


def fpe_residual(
    score_fn: Any,
    sde: SDE,
    x0: Tensor,
    *,
    n_times: int = 10,
    t_grid: Tensor | None = None,
    eps: float = 1e-3,
    divergence: str = "hutchinson",
    n_probes: int = 1,
    divergence_ad: str = "reverse",
    unbiased: bool = True,
    time_derivative: str = "finite_difference",
    h_s: float = 1e-3,
    h_d: float = 5e-4,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    cond: Mapping[str, Any] | None = None,
) -> FPEResidual:
    """How far a score model is from solving the score Fokker–Planck equation on perturbed data (a metric).

    For each time ``t_i`` of the grid and each example ``x_0`` a point ``x_t ~ p(x_t | x_0)`` is drawn (phase
    space: ``z_0`` of the SDE's score-matching mode, then ``z_t ~ p(z_t | z_0)``) and the vector residual
    ``r = d_t s - grad_x B`` of :func:`fp_regularizer` (Lai et al. 2023, Prop. 3.1) is evaluated; the value is
    ``||r||^2 / D`` (mean squared residual per dimension), averaged over the data at each time and over the grid.
    Use it to compare how well score models satisfy the equation (``scoresde eval --metrics fpe``). The exact score
    gives finite-difference error only; on phase space the finite difference is accurate only where the kernel is
    not stiff, so start the grid at ``sde.fd_min_time`` or later (measured values: ``benchmarks/RESULTS.md``,
    "Measured numbers moved from docstrings").

    Args:
        score_fn: a model adapter, ``score_fn(x, t)`` or an object with ``.score_fn`` (an adapter's SDE must be
            ``sde``).
        sde: the model's forward SDE (scalar or phase space).
        x0: clean data in the model's range, ``(N, ...)`` (for phase space the data ``x``, not the state).
        n_times: grid size when ``t_grid`` is ``None``: ``t_grid = linspace(eps, T, n_times)`` (both ends in).
        t_grid: explicit times in ``(0, T]`` (1-D); overrides ``n_times`` and ``eps``.
        eps: first time of the default grid (``1e-3``, the samplers' end time: below it the VP score is
            dominated by the data's discreteness and the residual by finite-difference error).
        divergence, n_probes, divergence_ad, time_derivative, h_s, h_d: as for :func:`fp_regularizer`; the finite
            difference stays in ``[min(t_grid), T]`` (one-sided at the ends).
        unbiased: with ``divergence="hutchinson"``, use two independent probe sets and report ``r_1 · r_2 / D``,
            an unbiased estimate of ``||r||^2 / D`` (it can be slightly negative); ``False`` reports
            ``||r_1||^2 / D``, which the probes' variance biases upwards (even for the exact score). Ignored for
            ``divergence="exact"``.
        batch_size: examples per evaluation (the draws do not depend on it).
        generator: random generator; per grid time, in order: the DSM initial momentum (phase space, DSM mode),
            the noise of ``x_t`` (``N`` states), then the probes (``(2 or 1, n_probes, N, ...)``).
        cond: conditioning inputs (batch-first, ``N`` rows), sliced with the data into the evaluation batches.

    Returns:
        :class:`FPEResidual` (detached, float64 statistics).
    """
    estimator = validate("vector", "constant", divergence, divergence_ad, time_derivative, n_probes, h_s, h_d, 2)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if t_grid is None:
        check_count("n_times", n_times)
        check_eps(eps, sde)
        t_grid = torch.linspace(eps, sde.T, n_times, dtype=torch.float64)
    t_grid = torch.as_tensor(t_grid, dtype=torch.float64).flatten().cpu()
    if len(t_grid) == 0 or not bool(((t_grid > 0) & (t_grid <= sde.T)).all()):
        raise ValueError(f"t_grid must be non-empty with times in (0, T={sde.T}], got {t_grid.tolist()}")
    t_min, t_max = float(t_grid.min()), sde.T
    if time_derivative == "finite_difference" and t_max - t_min < h_s + h_d:
        raise ValueError(f"[min(t_grid), T] = [{t_min}, {t_max}] is shorter than h_s + h_d = {h_s + h_d}")
    model = model_of(sde, score_fn)
    check_full_score(model)
    N = x0.shape[0]
    cond = check_cond(cond, N)
    hutchinson = is_hutchinson(estimator)
    n_sets = 2 if (unbiased and hutchinson) else 1
    values = torch.empty(N, len(t_grid), dtype=torch.float64)
    for i, ti in enumerate(t_grid.tolist()):
        t = torch.full((N,), ti, dtype=x0.dtype, device=x0.device)
        z0 = sde.initial_state(x0, None, generator)
        mean, std = sde.marginal_prob(z0, t)
        x_t = mean + sde.apply_std(std, randn_like(z0, generator))
        probes = (torch.stack([draw_probes(x_t, estimator, n_probes, generator) for _ in range(n_sets)])
                  if hutchinson else None)
        for start in range(0, N, batch_size):
            sl = slice(start, min(N, start + batch_size))
            sets = [None] if probes is None else [probes[k][:, sl] for k in range(n_sets)]
            core = fp_core(conditioned(model, slice_cond(cond, sl)), sde, x_t[sl], t[sl], vector=True,
                           estimator=estimator, divergence_ad=divergence_ad, probe_sets=sets,
                           time_derivative=time_derivative, h_s=h_s, h_d=h_d, t_min=t_min, t_max=t_max)
            r = [res.detach().double() for res in core.residuals]
            sq = (r[0] * r[-1]).sum(-1) / r[0].shape[1]
            values[sl, i] = sq.cpu()
    per_time = values.mean(0)
    per_example = values.mean(1)
    if N > 1:
        per_time_se = values.std(0) / math.sqrt(N)
        se = float(per_example.std() / math.sqrt(N))
    else:
        per_time_se, se = torch.full_like(per_time, float("nan")), float("nan")
    return FPEResidual(t_grid, per_time, per_time_se, float(per_example.mean()), se, per_example)
