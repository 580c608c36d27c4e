"""The flow-matching velocity loss (Lipman et al. 2023, eq. 23 with the conditional path of §4.1; Liu et al. 2023,
rectified flow, eq. 1): ``E_{t, x0, eps} || u_hat(x_t, t) - u_t ||^2`` with the velocity of the path
``x_t = alpha_t x0 + sigma_t eps``, ``u_t = dx_t/dt = alpha_t' x0 + sigma_t' eps``.

On :class:`~scoresde.sdes.RectifiedFlow` (``alpha = 1 - t``, ``sigma = t``) the target is ``eps - x0`` (the
``x1 - x0`` of rectified flow, with ``x1`` the noise). The model's velocity is read from its data prediction,
``u_hat = alpha_t' x0_hat + sigma_t' eps_hat`` with ``eps_hat = (x_t - alpha_t x0_hat) / sigma_t``, so any network
parameterisation and preconditioning trains with it; as a weighting of the data error it is
``lambda = (alpha_t' - sigma_t' alpha_t / sigma_t)^2`` (``1 / t^2`` on rectified flow).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..sdes.base import batch_broadcast
from .dsm import _finish, _reduce_per_example, check_reduction
from .edm import perturbed_batch

__all__ = ["flow_matching_loss", "schedule_derivatives"]


def schedule_derivatives(sde: Any, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(d alpha/dt, d sigma/dt)`` at ``t`` (shape ``(B,)``) from the SDE's coefficients: the drift is ``f x`` with
    ``f = d log alpha / dt`` and ``g^2 = d sigma^2/dt - 2 f sigma^2`` (Song et al. 2021, eq. 29; Kingma et al. 2021,
    eq. 33), so ``alpha' = f alpha`` and ``sigma' = (g^2 + 2 f sigma^2) / (2 sigma)``."""
    drift, g = sde.sde(torch.ones_like(t)[:, None], t)
    f, sigma = drift[:, 0], sde.sigma(t)
    return f * sde.alpha(t), (g**2 + 2 * f * sigma**2) / (2 * sigma)


def flow_matching_loss(
    model: Any,
    sde: Any,
    batch: Tensor,
    *,
    time_distribution: str = "uniform",
    p_mean: float | None = None,
    p_std: float | None = None,
    eps: float = 1e-5,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    cond: Mapping[str, Any] | None = None,
    reduce_mean: bool = False,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Conditional flow matching ``|| u_hat(x_t, t) - (alpha_t' x0 + sigma_t' eps) ||^2`` (module docstring): the
    training loss of rectified flow / flow matching. Use it on :class:`~scoresde.sdes.RectifiedFlow` (target
    ``eps - x0``); on other scalar SDEs it is the velocity loss of their probability path.

    Args:
        model: a model adapter or a callable ``score_fn(x, t)``; an adapter's SDE must be ``sde``.
        sde: a scalar SDE.
        batch: clean data ``x0``, ``(B, C, ...)``.
        time_distribution: ``"uniform"`` (``t ~ U(eps, T)``, Lipman et al.), ``"logit_normal"`` (Esser et al. 2024)
            or ``"lognormal"`` (:func:`~scoresde.losses.weighting.draw_loss_times`).
        p_mean, p_std: mean and std of the normal the time distribution transforms (``None``: its defaults).
        eps: smallest time of the ``"uniform"`` and ``"logit_normal"`` draws.
        t: times to use (shape ``(B,)``) instead of a draw.
        noise: ``eps ~ N(0, I)`` to use (shape of ``batch``) instead of a draw.
        cond: conditioning inputs, passed as ``model.x0(x_t, t, **cond)``.
        reduce_mean: average over ``C·H·W`` instead of ``0.5 * sum``.
        generator: source of the draws, in this order: the times (one ``rand``/``randn`` per example), then
            ``noise``.
        reduction: ``"mean"`` over the batch or ``"none"`` (per-example losses).
    """
    check_reduction(reduction)
    d = perturbed_batch("flow_matching_loss", model, sde, batch, time_distribution=time_distribution, p_mean=p_mean,
                        p_std=p_std, eps=eps, t=t, noise=noise, cond=cond, generator=generator)
    t, noise, x_t = d.t, d.noise, d.x_t
    x0_hat = d.model.x0(x_t, t, **d.cond)
    alpha, sigma = (batch_broadcast(c, batch) for c in (sde.alpha(t), sde.sigma(t)))
    d_alpha, d_sigma = (batch_broadcast(c, batch) for c in schedule_derivatives(sde, t))
    velocity = d_alpha * x0_hat + d_sigma * (x_t - alpha * x0_hat) / sigma
    target = d_alpha * batch + d_sigma * noise
    return _finish(_reduce_per_example(torch.square(velocity - target), reduce_mean), reduction)
