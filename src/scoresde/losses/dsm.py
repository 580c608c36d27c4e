"""Denoising score matching losses of Score SDE (Song et al. 2021, eq. 7; Song & Ermon 2019; Ho et al. 2020), and
hybrid / denoising score matching on phase space (Dockhorn et al. 2022, §3.2; Pandey & Mandt 2023, §3).

All follow the reference ``losses.py`` op for op, so the same draws give the same value:

* per-example squared errors are reduced over ``C·H·W`` by a **mean** when ``reduce_mean=True`` and by
  **0.5·sum** otherwise, and the result is averaged over the batch;
* every random draw (``t``, the DSM momentum, ``noise``, ``labels``) may be passed in, to replay a given draw, or is
  taken from the ``generator`` (torch's global RNG when ``None``) in the reference's order: times/labels first, then
  (phase space, DSM) the initial momentum, then noise.

:func:`sde_loss` reads everything that differs between SDEs from the SDE (``initial_state``, ``marginal_prob``,
``apply_std``, ``loss_blocks``), so one function covers VE, VP, sub-VP, PSLD and CLD. ``model`` is a model adapter
(:class:`~scoresde.models.DiffusionModel`) or a bare callable ``score_fn(x, t)``;
the discrete losses also take a bare network ``net(x, labels)``. Conditioning inputs (``cond``, a dict of batch-first
tensors such as ``class_labels``) reach the model as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel, as_model, check_cond
from ..numerics.checks import check_choice
from ..numerics.times import check_eps, check_times, draw_times
from ..sdes.base import SDE, batch_broadcast, randn_like
from ..sdes.scalar import VESDE, VPSDE

REDUCTIONS = ("mean", "none")


def model_of(sde: SDE, model: Any) -> DiffusionModel:
    """The model adapter every loss evaluates: ``model`` itself if it is one (its SDE must be ``sde``: perturbing
    with one SDE and converting the network output with another gives wrong numbers silently), else the adapter of
    the callable ``model``."""
    return as_model(sde, model)


def _net_of(model: Any, sde: SDE):
    """The network ``net(x, labels)`` of the discrete losses: ``model.net`` (an adapter's SDE must be ``sde``) or
    the bare network ``model``."""
    if isinstance(model, DiffusionModel):
        as_model(sde, model)
    net = getattr(model, "net", model)
    if not callable(net):
        raise TypeError(f"model must be a network net(x, labels) or expose .net, got {type(model).__name__}")
    return net


def _call_net(net: Any, x: Tensor, labels: Tensor, cond: dict[str, Any]) -> Tensor:
    return net(x, labels, **cond) if cond else net(x, labels)


def _reduce_per_example(sq: Tensor, reduce_mean: bool) -> Tensor:
    """Reference reduction over all but the batch dimension: ``mean`` or ``0.5 * sum``."""
    flat = sq.reshape(sq.shape[0], -1)
    return flat.mean(dim=-1) if reduce_mean else 0.5 * flat.sum(dim=-1)


def check_reduction(reduction: str) -> str:
    """``reduction`` if it is ``"mean"`` (batch mean) or ``"none"`` (per-example values), else a ``ValueError``."""
    return check_choice("reduction", reduction, REDUCTIONS)


def _finish(per_example: Tensor, reduction: str) -> Tensor:
    return per_example.mean() if check_reduction(reduction) == "mean" else per_example


def _check_noise(noise: Tensor | None, state: Tensor, generator: torch.Generator | None) -> Tensor:
    if noise is None:
        return randn_like(state, generator)
    if noise.shape != state.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, the state z_0 of the batch has {tuple(state.shape)}")
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


def loss_blocks_of(model: DiffusionModel, blocks: str | None) -> str:
    """``blocks`` if given, else the model's own ``blocks`` (a momentum-only phase-space network), else ``"all"``."""
    if blocks is not None:
        return blocks
    own = getattr(model, "blocks", None)
    return own if isinstance(own, str) else "all"


class Perturbed(NamedTuple):
    """One draw of the denoising score-matching loss: per-example losses ``(B,)`` and where they were taken (the
    perturbed states ``x_t``, times ``t``, initial states ``z_0``), so a regulariser can be added at the same points."""

    per_example: Tensor
    x_t: Tensor
    t: Tensor
    z0: Tensor


def perturbed_loss(model: DiffusionModel, sde: SDE, batch: Tensor, *, t: Tensor | None, noise: Tensor | None,
                   momentum: Tensor | None, blocks: str | None, cond: Mapping[str, Any] | None, reduce_mean: bool,
                   likelihood_weighting: bool, eps: float, generator: torch.Generator | None) -> Perturbed:
    """The per-example DSM / HSM loss of :func:`sde_loss` and its draws (``model`` already an adapter)."""
    check_eps(eps, sde)
    B = batch.shape[0]
    cond = check_cond(cond, B)
    t = draw_times(B, sde, eps, generator, dtype=batch.dtype, device=batch.device) if t is None \
        else check_times(t, B)
    z0 = sde.initial_state(batch, momentum, generator)
    noise = _check_noise(noise, z0, generator)
    mean, std = sde.marginal_prob(z0, t)
    x_t = mean + sde.apply_std(std, noise)
    score = model.score(x_t, t, **cond)
    blocks = loss_blocks_of(model, blocks)
    if not likelihood_weighting:
        resid = sde.loss_blocks(sde.apply_std(std, score, transpose=True) + noise, blocks)
        per_example = _reduce_per_example(torch.square(resid), reduce_mean)
    else:
        if sde.has_auxiliary:
            raise ValueError(f"likelihood_weighting=True is not defined for {type(sde).__name__}: HSM/DSM on a "
                             "phase-space SDE is trained unweighted (likelihood_weighting=False)")
        g = sde.sde(torch.zeros_like(z0), t)[1]
        resid = sde.loss_blocks(score - sde.eps_to_score(x_t, t, noise), blocks)  # score + noise / std
        if g.dim() == 1:
            per_example = _reduce_per_example(torch.square(resid), reduce_mean) * g**2
        else:  # a per-coordinate diffusion: weight each coordinate by its own g^2
            per_example = _reduce_per_example(g**2 * torch.square(resid), reduce_mean)
    return Perturbed(per_example, x_t, t, z0)


def sde_loss(
    model: Any,
    sde: SDE,
    batch: Tensor,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    momentum: Tensor | None = None,
    blocks: str | None = None,
    cond: Mapping[str, Any] | None = None,
    reduce_mean: bool = False,
    likelihood_weighting: bool = False,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Continuous-time denoising score matching (Song et al. 2021, eq. 7), on phase space hybrid or denoising
    score matching (Dockhorn et al. 2022, §3.2): the training loss of every continuous-time model.

    With ``t ~ U(eps, T)``, the initial state ``z_0`` of the data (``sde.initial_state``: ``x_0`` itself for VE / VP /
    sub-VP; ``[x_0, 0]`` for HSM and ``[x_0, m_0]``, ``m_0 ~ N(0, Sigma_0)``, for DSM on PSLD / CLD),
    ``eps ~ N(0, I)`` and ``z_t = mean(t) + L_t eps`` (``sde.marginal_prob``; ``L_t = std(t)`` for scalar SDEs):

    * default weighting ``lambda(t) = L_t L_t^T``: ``loss = || (L_t^T s(z_t, t) + eps)_blocks ||^2``
      (``|| std * s + z ||^2`` for scalar SDEs, the reference's loss);
    * ``likelihood_weighting=True``, ``lambda(t) = g(t)^2`` (Song et al. 2021b, Thm. 1): ``loss = g(t)^2
      || s(x_t, t) + z / std ||^2``, whose integral bounds the negative log-likelihood (scalar SDEs only: a
      phase-space SDE raises ``ValueError``).

    Args:
        model: a model adapter or a callable ``score_fn(x, t)``. An adapter's SDE must be ``sde``.
        sde: the forward SDE.
        batch: clean data ``x_0``, ``(B, C, ...)`` (for phase space the data, not the state).
        t: times to use (shape ``(B,)``); drawn from ``U(eps, T)`` when ``None``.
        noise: ``eps`` to use, the state's shape (``sde.state_shape(batch.shape)``); drawn when ``None``.
        momentum: DSM on phase space only: the auxiliary blocks of ``z_0``, ``(B, (k-1) C, ...)``; drawn from
            ``N(0, Sigma_0)`` when ``None``. Scalar SDEs and HSM reject it.
        blocks: the part of the residual kept (``sde.loss_blocks``): ``"all"``, or ``"momentum"`` on phase space
            (the last block: momentum-only networks); ``None`` is the model's ``blocks`` if it has one, else ``"all"``.
        cond: conditioning inputs, a dict of batch-first tensors passed as ``model.score(x_t, t, **cond)``.
        reduce_mean: average over ``C·H·W`` (the kept entries) instead of the reference's ``0.5 * sum``.
        likelihood_weighting: weight by ``g(t)^2`` (see above).
        eps: smallest training time (``1e-5`` in Score SDE); the score is singular at ``t = 0``.
        generator: random generator for ``t``, the DSM momentum and ``noise`` (drawn in that order).
        reduction: ``"mean"`` (batch mean, the reference's value) or ``"none"`` (per-example losses).
    """
    check_reduction(reduction)
    out = perturbed_loss(model_of(sde, model), sde, batch, t=t, noise=noise, momentum=momentum, blocks=blocks,
                         cond=cond, reduce_mean=reduce_mean, likelihood_weighting=likelihood_weighting, eps=eps,
                         generator=generator)
    return _finish(out.per_example, reduction)


def smld_loss(
    model: Any,
    sde: VESDE,
    batch: Tensor,
    *,
    labels: Tensor | None = None,
    noise: Tensor | None = None,
    cond: Mapping[str, Any] | None = None,
    reduce_mean: bool = False,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Discrete SMLD / NCSN loss (Song & Ermon 2019, eq. 2; Score SDE ``get_smld_loss_fn``).

    Noise level ``sigma_i`` with index ``i ~ U{0, N-1}`` into the *descending* table (index 0 is
    ``sigma_max``: the network's order, i.e. ``flip(sde.discrete_sigmas)``), ``x~ = x + sigma_i z`` and
    ``loss = sigma_i^2 || s(x~, i) + z / sigma_i ||^2`` with the network called on the integer labels ``i`` (and
    ``**cond``). Use it for discrete-time NCSN training (``training.continuous=false`` on VE); ``model`` is the bare
    network or an object with ``.net`` (an adapter's SDE must be ``sde``).
    """
    if not isinstance(sde, VESDE):
        raise TypeError(f"smld_loss needs a VESDE, got {type(sde).__name__}")
    net = _net_of(model, sde)
    cond = check_cond(cond, batch.shape[0])
    labels = _check_labels(labels, batch, sde.N, generator)
    sigmas = torch.flip(sde.discrete_sigmas, dims=(0,)).to(batch.device)[labels]
    sigmas_b = batch_broadcast(sigmas, batch)
    z = _check_noise(noise, batch, generator)
    scaled = z * sigmas_b
    score = _call_net(net, batch + scaled, labels, cond)
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
    cond: Mapping[str, Any] | None = None,
    reduce_mean: bool = True,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Discrete DDPM loss ``|| eps_theta(sqrt(abar_i) x + sqrt(1 - abar_i) z, i) - z ||^2`` (Ho et al. 2020, eq. 14).

    ``i ~ U{0, N-1}`` indexes the VP tables (``sqrt_alphas_cumprod``, ``sqrt_1m_alphas_cumprod``); the network
    predicts the noise and is called on the integer labels ``i``. ``reduce_mean`` defaults to ``True`` as in
    the DDPM configs. Use it for discrete-time DDPM training (``training.continuous=false`` on VP); ``model`` is the
    bare network or an object with ``.net`` (an adapter's SDE must be ``sde``); ``cond`` reaches the network as
    keyword arguments.
    """
    if not isinstance(sde, VPSDE):
        raise TypeError(f"ddpm_loss needs a VPSDE, got {type(sde).__name__}")
    net = _net_of(model, sde)
    cond = check_cond(cond, batch.shape[0])
    sde.require_discrete_chain("ddpm_loss")
    labels = _check_labels(labels, batch, sde.N, generator)
    z = _check_noise(noise, batch, generator)
    a = batch_broadcast(sde.sqrt_alphas_cumprod.to(batch.device)[labels], batch)
    s = batch_broadcast(sde.sqrt_1m_alphas_cumprod.to(batch.device)[labels], batch)
    eps_pred = _call_net(net, a * batch + s * z, labels, cond)
    per_example = _reduce_per_example(torch.square(eps_pred - z), reduce_mean)
    return _finish(per_example, reduction)
