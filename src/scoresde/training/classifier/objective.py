"""The objective of noise-conditional classifiers ``p_t(y | x_t)`` (Song et al. 2021, §5 and App. I.4; Dhariwal &
Nichol 2021, §4): cross-entropy on labelled data perturbed by the SDE's marginal at ``t ~ U(eps, T)``.

* :func:`noisy_state` draws ``x_t ~ p_t(. | x_0)`` through the SDE's hooks (``initial_state``, ``marginal_prob``,
  ``apply_std``), so on PSLD/CLD the classifier sees the whole state ``z_t = [x_t, m_t]`` with the initial momentum
  marginalised, exactly the variable whose law ``p_t`` the sampler follows.
* :func:`perturbation_draws` makes the random inputs of one perturbation on the CPU (the same numbers on every
  device), in the score losses' order; :func:`classifier_loss` is the cross-entropy to minimise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...losses.dsm import check_reduction
from ...models.classifier import ClassifierModel
from ...numerics.times import check_eps, check_times, draw_times
from ...sdes.base import SDE, randn_like

__all__ = ["classifier_loss", "noisy_state", "perturbation_draws"]


def noisy_state(sde: SDE, x: Tensor, t: Tensor, *, momentum: Tensor | None = None, noise: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """A draw of ``z_t ~ p_t(. | x_0 = x)``: the initial state ``z_0 = sde.initial_state(x, momentum)`` (``x`` itself
    for scalar SDEs; ``[x, 0]`` with the momentum in the HSM kernel, or ``[x, m_0]`` with ``m_0 ~ N(0, Sigma_0)``, for
    PSLD/CLD: both give the law of ``z_t`` given ``x_0`` with ``m_0`` marginalised), then ``z_t = mean_t(z_0) + L_t
    noise`` (``sde.marginal_prob``, ``sde.apply_std``; Song et al. 2021, eq. 29; Dockhorn et al. 2022, §3.2).

    The draws come from ``generator`` in the losses' order (the DSM momentum, then ``noise``) unless passed.
    """
    z0 = sde.initial_state(x, momentum, generator)
    if noise is None:
        noise = randn_like(z0, generator)
    elif noise.shape != z0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, the state z_0 of the batch has {tuple(z0.shape)}")
    mean, std = sde.marginal_prob(z0, t)
    return mean + sde.apply_std(std, noise)


def perturbation_draws(sde: SDE, shape: Sequence[int], t_range: tuple[float, float],
                       generator: torch.Generator | None = None) -> dict[str, Tensor | None]:
    """The random inputs of one perturbation of a data batch of shape ``shape``, drawn on the CPU (the same numbers
    on every device) in the order of the score losses: ``t ~ U(lo, hi)`` ``(B,)``, the DSM-mode initial momentum
    (``None`` unless ``sde.random_initial_state``), and the noise of the state. ``t_range = (eps, T)`` is the
    training draw (:func:`scoresde.numerics.times.draw_times`'s ``rand * (T - eps) + eps``)."""
    shape = tuple(int(s) for s in shape)
    lo, hi = t_range
    t = torch.rand(shape[0], generator=generator) * (hi - lo) + lo
    momentum = sde.initial_state(torch.zeros(shape), generator=generator)[:, shape[1]:] \
        if sde.random_initial_state else None
    return {"t": t, "momentum": momentum, "noise": torch.randn(sde.state_shape(shape), generator=generator)}


def classifier_loss(classifier: ClassifierModel, x: Tensor, y: Tensor, *, t: Tensor | None = None,
                    momentum: Tensor | None = None, noise: Tensor | None = None, eps: float = 1e-5,
                    generator: torch.Generator | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy ``-log p_t(y | x_t)`` of a noise-conditional classifier at ``t ~ U(eps, T)``, ``x_t`` drawn by
    :func:`noisy_state` from clean data ``x``: the training objective of the time-dependent classifiers of Song et al.
    2021 (App. I.4) and Dhariwal & Nichol 2021 (§4). Minimised over the classifier, it is minimised by the exact
    noisy posterior ``p_t(y | x_t)``.

    Args:
        classifier: the :class:`~scoresde.models.ClassifierModel` (its SDE perturbs the data).
        x: clean data ``(B, C, ...)`` (the data, not the state, for phase-space SDEs).
        y: integer class labels ``(B,)`` in ``[0, num_classes)``.
        t, momentum, noise: draws to replay (``t`` ``(B,)``; the DSM momentum; ``noise`` of the state's shape), else
            drawn from ``generator`` in that order.
        eps: smallest training time (the default is the score losses').
        generator: random generator of the draws (torch's global stream when ``None``).
        reduction: ``"mean"`` (batch mean) or ``"none"`` (per-example values).
    """
    check_reduction(reduction)
    sde = classifier.sde
    check_eps(eps, sde)
    y = classifier.check_labels(y, x.shape[0]).to(x.device)
    t = draw_times(x.shape[0], sde, eps, generator, dtype=x.dtype, device=x.device) if t is None \
        else check_times(t, x.shape[0])
    z_t = noisy_state(sde, x, t, momentum=momentum, noise=noise, generator=generator)
    per_example = F.cross_entropy(classifier(z_t, t), y, reduction="none")
    return per_example.mean() if reduction == "mean" else per_example
