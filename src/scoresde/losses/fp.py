"""FP-Diffusion training losses (Lai et al., ICML 2023, arXiv 2210.04296): denoising score matching plus the score
Fokker–Planck regulariser, for every SDE (VE, VP, sub-VP, and PSLD / CLD on their phase space).

The regulariser's maths (the residual, its two terms, the divergence estimates) is in
:mod:`scoresde.losses.fp_core`; the metric :func:`~scoresde.losses.fpe.fpe_residual` in :mod:`scoresde.losses.fpe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import check_cond, slice_cond
from ..numerics.checks import check_choice, check_count
from ..numerics.times import draw_times
from ..sdes.base import SDE
from .dsm import check_reduction, loss_blocks_of, model_of, perturbed_loss
from .fp_core import _MOMENTUM_ONLY, MODES, WEIGHTINGS, check_divergence, fp_regularizer, probe_sets

__all__ = ["fp_loss"]


def fp_loss(
    model: Any,
    sde: SDE,
    batch: Tensor,
    *,
    alpha: float = 0.15,
    beta: float = 0.01,
    mode: str = "both",
    weighting: str = "ll",
    m: float = 2,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    momentum: Tensor | None = None,
    probes: Tensor | None = None,
    blocks: str | None = None,
    cond: Mapping[str, Any] | None = None,
    reduce_mean: bool = False,
    likelihood_weighting: bool | None = None,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    min_time: float = 0.0,
    reduction: str = "mean",
    **regularizer_options: Any,
) -> Tensor:
    """FP-Diffusion training loss (Lai et al. 2023, eq. 11; the original ``get_sde_loss_fn``): use it to train with
    the score Fokker–Planck regulariser on any SDE.

    ``loss = DSM + alpha · vec + beta · scalar`` for ``mode="both"``, ``DSM + alpha · vec`` for ``"vector"``
    (the original's ``scalar_fp='False'``) and ``DSM + beta · scalar`` for ``"scalar"`` (``'True'``), where DSM is
    :func:`~scoresde.losses.dsm.sde_loss` (HSM/DSM on phase space) and ``vec``, ``scalar`` are
    :func:`~scoresde.losses.fp_core.fp_regularizer` at the same perturbed points ``x_t`` and times ``t`` (the
    original's ``fp_dist='pert'``; on phase space the state ``z_t``, where the regulariser is the phase-space score
    FPE). Draws come in :func:`sde_loss`'s order, times, the DSM initial momentum, noise, then the Hutchinson probes,
    from ``generator``, or are replayed from ``t``, ``momentum``, ``noise``, ``probes``. A zero weight on every term
    that ``mode`` uses skips the regulariser (the original instead keys this on ``alpha`` alone and asserts the rest).

    Args:
        likelihood_weighting: of the DSM term; ``None`` (default) is ``True`` for scalar SDEs (FP-Diffusion's
            setting) and ``False`` for phase space (HSM/DSM are trained unweighted; ``True`` is an error there).
        blocks: of the DSM term (:func:`sde_loss`); the regulariser needs the score of every block, so
            ``"momentum"`` (a momentum-only phase-space network) is an error unless the regulariser is off.
        cond: conditioning inputs (batch-first tensors) passed to the model as keyword arguments, sliced together
            with the batch by ``min_time``.
        min_time: only examples with ``t >= min_time`` enter the regulariser (its means are over them; with none,
            the regulariser is skipped). The default ``0`` regularises every example, as the original. Near ``t = 0``
            a phase-space kernel is stiff and the finite-difference residual of an untrained network dominates the
            loss there (``benchmarks/RESULTS.md``, "Measured numbers moved from docstrings"); ``min_time=0.01``
            removes that.
        reduction: ``"mean"`` (the batch value) or ``"none"``: per-example losses whose batch mean is the ``"mean"``
            value: each example's DSM loss plus its share of the regulariser (``fp_regularizer(reduction="none")``,
            scaled by ``B / (examples regularised)`` under ``min_time``).
        regularizer_options: go to ``fp_regularizer`` (``normalize``, ``divergence``, ``n_probes``,
            ``divergence_ad``, ``time_derivative``, ``h_s``, ``h_d``, ``t_min``, ``t_max``); ``t_min`` defaults
            to ``eps``.
        Other arguments: as for :func:`sde_loss` and ``fp_regularizer``.
    """
    check_choice("mode", mode, MODES)
    check_choice("weighting", weighting, WEIGHTINGS)
    check_reduction(reduction)
    adapter = model_of(sde, model)
    B = batch.shape[0]
    cond = check_cond(cond, B)
    if likelihood_weighting is None:
        likelihood_weighting = not sde.has_auxiliary
    if t is None:
        t = draw_times(B, sde, eps, generator, dtype=batch.dtype, device=batch.device)
    dsm = perturbed_loss(adapter, sde, batch, t=t, noise=noise, momentum=momentum, blocks=blocks, cond=cond,
                         reduce_mean=reduce_mean, likelihood_weighting=likelihood_weighting, eps=eps,
                         generator=generator)
    per_example = dsm.per_example
    loss = per_example.mean() if reduction == "mean" else per_example
    if not _regularizes(mode, alpha, beta):
        return loss
    if loss_blocks_of(adapter, blocks) == "momentum":
        raise ValueError(_MOMENTUM_ONLY)
    if not 0 <= min_time < sde.T:
        raise ValueError(f"min_time must lie in [0, T={sde.T}), got {min_time!r}")
    options = dict(regularizer_options)
    estimator = check_divergence(options.get("divergence", "hutchinson"))
    probes = probe_sets(probes, dsm.x_t, estimator, check_count("n_probes", options.pop("n_probes", 1)), generator)
    x_t, t = dsm.x_t, dsm.t
    scale = 1.0
    if min_time > 0:
        keep = t >= min_time
        if not bool(keep.any()):
            return loss
        x_t, t, cond = x_t[keep], t[keep], slice_cond(cond, keep)
        probes = None if probes is None else probes[:, keep]
        scale = B / int(keep.sum())
    options.setdefault("t_min", eps)
    terms = fp_regularizer(adapter, sde, x_t, t, mode=mode, weighting=weighting, m=m, probes=probes, cond=cond,
                           generator=generator, reduction=reduction, **options)
    if reduction == "mean":
        if terms.vector is not None:
            loss = loss + alpha * terms.vector
        if terms.scalar is not None:
            loss = loss + beta * terms.scalar
        return loss
    reg = sum(w * term for w, term in ((alpha, terms.vector), (beta, terms.scalar)) if term is not None)
    if min_time > 0:  # the examples left out get no share; the others' shares keep the batch mean
        reg = scale * torch.zeros_like(loss).masked_scatter(keep, reg)
    return loss + reg


def _regularizes(mode: str, alpha: float, beta: float) -> bool:
    """Whether ``mode`` uses a term with a non-zero weight (else the loss is the base loss alone)."""
    return (mode in ("both", "vector") and alpha != 0) or (mode in ("both", "scalar") and beta != 0)
