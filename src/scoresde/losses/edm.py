"""EDM's training loss (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
eq. 2 with §5's noise distribution and weighting): ``E_{s, x0, eps} lambda(s) || D(x_t; s) - x0 ||^2`` with
``ln s ~ N(P_mean, P_std^2)`` and ``lambda(s) = 1 / c_out(s)^2 = (s^2 + sigma_d^2) / (s sigma_d)^2``.

:func:`edm_loss` is written on the model adapter's data prediction (``model.x0``, which is EDM's denoiser ``D`` for a
model with ``preconditioning="edm"``), so it runs on any scalar SDE and any network parameterisation; the weighting
and the time distribution are options (:mod:`scoresde.losses.weighting`): min-SNR-gamma with uniform times, the
likelihood weighting with log-normal noise levels, ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel, as_model, check_cond
from ..numerics.checks import check_choice
from ..numerics.times import check_times
from ..sdes.base import batch_broadcast
from .dsm import _check_noise, _finish, _reduce_per_example, check_reduction
from .weighting import WEIGHTINGS, draw_loss_times, loss_weight, scalar_sde

__all__ = ["PerturbedBatch", "edm_loss", "perturb", "perturbed_batch"]


def perturb(sde: Any, batch: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """``x_t = alpha_t x0 + sigma_t eps`` (the SDE's ``marginal_prob``), shape of ``batch``."""
    mean, std = sde.marginal_prob(batch, t)
    return mean + batch_broadcast(std, batch) * noise


class PerturbedBatch(NamedTuple):
    """One draw of a recipe loss: the model adapter, its checked ``cond``, times ``t`` ``(B,)``, ``noise`` and
    ``x_t = alpha_t x0 + sigma_t noise``."""

    model: DiffusionModel
    cond: dict[str, Any]
    t: Tensor
    noise: Tensor
    x_t: Tensor


def perturbed_batch(what: str, model: Any, sde: Any, batch: Tensor, *, time_distribution: str, p_mean: float | None,
                    p_std: float | None, eps: float, t: Tensor | None, noise: Tensor | None,
                    cond: Mapping[str, Any] | None, generator: torch.Generator | None) -> PerturbedBatch:
    """The common start of :func:`edm_loss` and :func:`~scoresde.losses.flow_matching_loss` (``what`` names the loss
    in errors): a scalar SDE, the adapter, then the draws in their documented order, the times
    (:func:`~scoresde.losses.weighting.draw_loss_times`) first and the noise second, each replaced by ``t`` /
    ``noise`` when given."""
    sde = scalar_sde(sde, what)
    model = as_model(sde, model)
    B = batch.shape[0]
    cond = check_cond(cond, B)
    t = check_times(t, B) if t is not None else draw_loss_times(
        time_distribution, B, sde, eps=eps, mean=p_mean, std=p_std, generator=generator, dtype=batch.dtype,
        device=batch.device)
    noise = _check_noise(noise, batch, generator)
    return PerturbedBatch(model, cond, t, noise, perturb(sde, batch, t, noise))


def edm_loss(
    model: Any,
    sde: Any,
    batch: Tensor,
    *,
    weighting: str = "edm",
    time_distribution: str = "lognormal",
    p_mean: float | None = None,
    p_std: float | None = None,
    sigma_data: float = 0.5,
    gamma: float = 5.0,
    eps: float = 1e-5,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    cond: Mapping[str, Any] | None = None,
    reduce_mean: bool = False,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Weighted denoising loss ``lambda(t) || x0_hat(x_t, t) - x0 ||^2`` (Karras et al. 2022, eq. 2); with the
    defaults EDM's loss (``ln s ~ N(-1.2, 1.2^2)``, ``lambda = 1 / c_out^2``).

    Use it with EDM's preconditioning (``ScoreModel(..., preconditioning="edm")``) and for the weightings of
    :data:`~scoresde.losses.weighting.WEIGHTINGS`; :func:`~scoresde.losses.sde_loss` is Score SDE's loss (its default
    equals ``weighting="snr", time_distribution="uniform"`` here, to float rounding, and it serves phase-space SDEs).

    Args:
        model: a model adapter or a callable ``score_fn(x, t)``; an adapter's SDE must be ``sde``.
        sde: a scalar SDE (``x_t = alpha_t x0 + sigma_t eps``).
        batch: clean data ``x0``, ``(B, C, ...)``.
        weighting: ``lambda`` (:func:`~scoresde.losses.weighting.loss_weight`): ``"edm"``, ``"snr"``,
            ``"likelihood"``, ``"min_snr"``, ``"soft_min_snr"``.
        time_distribution: ``"lognormal"`` (EDM), ``"uniform"`` or ``"logit_normal"``
            (:func:`~scoresde.losses.weighting.draw_loss_times`).
        p_mean, p_std: mean and std of the normal the time distribution transforms (``None``: -1.2 and 1.2 for
            ``"lognormal"``, 0 and 1 for ``"logit_normal"``).
        sigma_data: ``sigma_d`` of the ``"edm"`` / ``"soft_min_snr"`` weightings (the preconditioning's).
        gamma: the cap of ``"min_snr"``.
        eps: smallest time of the ``"uniform"`` and ``"logit_normal"`` draws.
        t: times to use (shape ``(B,)``) instead of a draw.
        noise: ``eps ~ N(0, I)`` to use (shape of ``batch``) instead of a draw.
        cond: conditioning inputs, passed as ``model.x0(x_t, t, **cond)``.
        reduce_mean: average the squared error over ``C·H·W`` instead of ``0.5 * sum`` (EDM's own value is the plain
            sum, twice the default's).
        generator: source of the draws, in this order: the times (one ``rand``/``randn`` per example), then
            ``noise``.
        reduction: ``"mean"`` over the batch or ``"none"`` (per-example losses).
    """
    check_reduction(reduction)
    check_choice("weighting", weighting, WEIGHTINGS)
    d = perturbed_batch("edm_loss", model, sde, batch, time_distribution=time_distribution, p_mean=p_mean,
                        p_std=p_std, eps=eps, t=t, noise=noise, cond=cond, generator=generator)
    weight = loss_weight(weighting, sde, d.t, sigma_data=sigma_data, gamma=gamma)
    x0_hat = d.model.x0(d.x_t, d.t, **d.cond)
    return _finish(_reduce_per_example(torch.square(x0_hat - batch), reduce_mean) * weight, reduction)
