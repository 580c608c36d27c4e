"""Denoising score matching losses of Score SDE (Song et al. 2021, eq. 7; Song & Ermon 2019; Ho et al. 2020).

All three follow the reference ``losses.py`` op for op, so the same draws give the same value:

* per-example squared errors are reduced over ``C·H·W`` by a **mean** when ``reduce_mean=True`` and by
  **0.5·sum** otherwise, and the result is averaged over the batch;
* every random draw (``t``, ``noise``, ``labels``) may be passed in, to replay a given draw, or is taken from the
  ``generator`` (torch's global RNG when ``None``) in the reference's order: times/labels first, then noise.

``model`` is either an object with ``score_fn(x, t)`` (and ``.net`` for the discrete losses), a bare callable
``score_fn(x, t)`` for :func:`sde_loss`, or a bare network ``net(x, labels)`` for :func:`smld_loss` /
:func:`ddpm_loss`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..sdes.base import SDE, batch_broadcast, randn_like
from ..sdes.scalar import VESDE, VPSDE

REDUCTIONS = ("mean", "none")


def _score_fn_of(model: Any):
    score_fn = getattr(model, "score_fn", model)
    if not callable(score_fn):
        raise TypeError(f"model must be callable as score_fn(x, t) or expose .score_fn, got {type(model).__name__}")
    return score_fn


def _net_of(model: Any):
    net = getattr(model, "net", model)
    if not callable(net):
        raise TypeError(f"model must be a network net(x, labels) or expose .net, got {type(model).__name__}")
    return net


def _reduce_per_example(sq: Tensor, reduce_mean: bool) -> Tensor:
    """Reference reduction over all but the batch dimension: ``mean`` or ``0.5 * sum``."""
    flat = sq.reshape(sq.shape[0], -1)
    return flat.mean(dim=-1) if reduce_mean else 0.5 * flat.sum(dim=-1)


def _finish(per_example: Tensor, reduction: str) -> Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid values are: {', '.join(REDUCTIONS)}")
    return per_example.mean() if reduction == "mean" else per_example


def _check_noise(noise: Tensor | None, batch: Tensor, generator: torch.Generator | None) -> Tensor:
    if noise is None:
        return randn_like(batch, generator)
    if noise.shape != batch.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, the batch has {tuple(batch.shape)}")
    return noise


def _check_labels(labels: Tensor | None, batch: Tensor, N: int, generator: torch.Generator | None) -> Tensor:
    B = batch.shape[0]
    if labels is None:
        return torch.randint(0, N, (B,), generator=generator, device=batch.device)
    if labels.shape != (B,) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor of shape ({B},), got {labels.dtype} {tuple(labels.shape)}")
    if labels.min() < 0 or labels.max() >= N:
        raise ValueError(f"labels must lie in [0, {N - 1}], got [{int(labels.min())}, {int(labels.max())}]")
    return labels


def sde_loss(
    model: Any,
    sde: SDE,
    batch: Tensor,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    reduce_mean: bool = False,
    likelihood_weighting: bool = False,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Continuous-time denoising score matching (Song et al. 2021, eq. 7).

    With ``t ~ U(eps, T)``, ``z ~ N(0, I)`` and ``x_t = mean(t) + std(t) z`` (``sde.marginal_prob``):

    * default weighting ``lambda(t) = std(t)^2``: ``loss = || std * s(x_t, t) + z ||^2``;
    * ``likelihood_weighting=True``, ``lambda(t) = g(t)^2`` (Song et al. 2021b, Thm. 1): ``loss = g(t)^2
      || s(x_t, t) + z / std ||^2``, whose integral bounds the negative log-likelihood.

    Args:
        model: ``score_fn(x, t)`` or an object with ``.score_fn``.
        sde: the forward SDE.
        batch: clean data ``x_0``.
        t: times to use (shape ``(B,)``); drawn from ``U(eps, T)`` when ``None``.
        noise: ``z`` to use (shape of ``batch``); drawn when ``None``.
        reduce_mean: average over ``C·H·W`` instead of the reference's ``0.5 * sum``.
        likelihood_weighting: weight by ``g(t)^2`` (see above).
        eps: smallest training time (``1e-5`` in Score SDE); the score is singular at ``t = 0``.
        generator: random generator for ``t`` and ``noise``.
        reduction: ``"mean"`` (batch mean, the reference's value) or ``"none"`` (per-example losses).
    """
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    B = batch.shape[0]
    if t is None:
        t = torch.rand(B, generator=generator, device=batch.device, dtype=batch.dtype) * (sde.T - eps) + eps
    elif t.shape != (B,):
        raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
    z = _check_noise(noise, batch, generator)
    mean, std = sde.marginal_prob(batch, t)
    std_b = batch_broadcast(std, batch)
    score = _score_fn_of(model)(mean + std_b * z, t)
    if not likelihood_weighting:
        per_example = _reduce_per_example(torch.square(score * std_b + z), reduce_mean)
    else:
        g2 = sde.sde(torch.zeros_like(batch), t)[1] ** 2
        per_example = _reduce_per_example(torch.square(score + z / std_b), reduce_mean) * g2
    return _finish(per_example, reduction)


def smld_loss(
    model: Any,
    sde: VESDE,
    batch: Tensor,
    *,
    labels: Tensor | None = None,
    noise: Tensor | None = None,
    reduce_mean: bool = False,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Discrete SMLD / NCSN loss (Song & Ermon 2019, eq. 2; Score SDE ``get_smld_loss_fn``).

    Noise level ``sigma_i`` with index ``i ~ U{0, N-1}`` into the *descending* table (index 0 is
    ``sigma_max``: the network's order, i.e. ``flip(sde.discrete_sigmas)``), ``x~ = x + sigma_i z`` and
    ``loss = sigma_i^2 || s(x~, i) + z / sigma_i ||^2`` with the network called on the integer labels ``i``.
    """
    if not isinstance(sde, VESDE):
        raise TypeError(f"smld_loss needs a VESDE, got {type(sde).__name__}")
    labels = _check_labels(labels, batch, sde.N, generator)
    sigmas = torch.flip(sde.discrete_sigmas, dims=(0,)).to(batch.device)[labels]
    sigmas_b = batch_broadcast(sigmas, batch)
    z = _check_noise(noise, batch, generator)
    scaled = z * sigmas_b
    score = _net_of(model)(batch + scaled, labels)
    target = -scaled / sigmas_b**2
    per_example = _reduce_per_example(torch.square(score - target), reduce_mean) * sigmas**2
    return _finish(per_example, reduction)


def ddpm_loss(
    model: Any,
    sde: VPSDE,
    batch: Tensor,
    *,
    labels: Tensor | None = None,
    noise: Tensor | None = None,
    reduce_mean: bool = True,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Discrete DDPM loss ``|| eps_theta(sqrt(abar_i) x + sqrt(1 - abar_i) z, i) - z ||^2`` (Ho et al. 2020, eq. 14).

    ``i ~ U{0, N-1}`` indexes the VP tables (``sqrt_alphas_cumprod``, ``sqrt_1m_alphas_cumprod``); the network
    predicts the noise and is called on the integer labels ``i``. ``reduce_mean`` defaults to ``True`` as in
    the DDPM configs.
    """
    if not isinstance(sde, VPSDE):
        raise TypeError(f"ddpm_loss needs a VPSDE, got {type(sde).__name__}")
    sde.require_discrete_chain("ddpm_loss")
    labels = _check_labels(labels, batch, sde.N, generator)
    z = _check_noise(noise, batch, generator)
    a = batch_broadcast(sde.sqrt_alphas_cumprod.to(batch.device)[labels], batch)
    s = batch_broadcast(sde.sqrt_1m_alphas_cumprod.to(batch.device)[labels], batch)
    eps_pred = _net_of(model)(a * batch + s * z, labels)
    per_example = _reduce_per_example(torch.square(eps_pred - z), reduce_mean)
    return _finish(per_example, reduction)
