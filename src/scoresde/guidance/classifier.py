"""Classifier guidance (Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR
2021, §5 and App. I.1; Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis", NeurIPS 2021, eq. 12 with
scale ``s``): the score plus the scaled gradient of a noise-conditional classifier's log-probability of the requested
class. Optionally restricted to an interval of noise levels (:mod:`.interval`) and with the data prediction
dynamically thresholded (:mod:`.thresholding`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel
from ..sdes.base import batch_broadcast, same_sde
from .base import GuidedFunction, GuidedModel, check_scale, from_x0, model_classes, requested_labels, require_schedule
from .classifier_free import refuse_uncentered
from .interval import check_interval, in_interval
from .thresholding import check_percentile, dynamic_threshold

__all__ = ["classifier", "classifier_gradient"]

ClassifierFn = Callable[..., Tensor]


def classifier_gradient(classifier_fn: ClassifierFn, x: Tensor, t: Tensor, cond: dict[str, Any],
                        num_classes: int | None) -> Tensor:
    """``grad_x log softmax(classifier_fn(x, t, **cond))[y]`` per row, ``y = cond["class_labels"]``, by autograd on a
    detached copy of ``x`` (no graph reaches the caller; works inside the samplers' ``torch.no_grad``)."""
    y = requested_labels(cond, x.shape[0], num_classes, "classifier guidance")
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logits = classifier_fn(xg, t, **cond)
        if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"classifier_fn must return logits of shape (B={x.shape[0]}, num_classes), got "
                             f"{tuple(getattr(logits, 'shape', ()))}")
        if num_classes is None and int(y.max()) >= logits.shape[1]:
            raise ValueError(f"class_labels must lie in [0, {logits.shape[1]}) (the classifier's classes); got "
                             f"{int(y.max())}")
        logp = torch.log_softmax(logits, dim=1).gather(1, y.to(logits.device).long()[:, None]).sum()
        (grad,) = torch.autograd.grad(logp, xg)
    return grad.detach().to(x.dtype)


def classifier(score_fn: Any, classifier_fn: ClassifierFn, scale: float = 1.0, *, pass_labels: bool | None = None,
               threshold: float | None = None, interval: tuple[float, float] | None = None) -> Any:
    """Classifier guidance (Song et al. 2021, §5 and App. I.1; Dhariwal & Nichol 2021, eq. 12 with scale ``s``):

        ``guided(x, t, **cond) = score_fn(x, t, ...) + scale * grad_x log softmax(classifier_fn(x, t, **cond))[y]``

    with ``y = cond["class_labels"]`` and the *same* ``t`` for score and classifier (PSLD's code feeds the classifier
    another time; here both read the sampler's ``t``). With an exact unconditional score, the exact noisy classifier
    ``p_t(y | x_t)`` and ``scale = 1`` this is the exact class-conditional score (Bayes' rule), so every sampler samples
    ``p(x | y)``; ``scale > 1`` sharpens toward ``p(x) p(y | x)^scale``. Use it when the diffusion model is
    unconditional and a noise-conditional classifier exists; with a class-conditional model trained with label
    dropout use :func:`classifier_free` (no classifier, one extra model row per sample instead of a backward pass).

    Args:
        score_fn: an unconditional score function ``score_fn(x, t, **cond)`` or a model adapter (then a
            :class:`GuidedModel` adapter is returned, carrying ``model.sde``; the guidance term is converted into the
            model's own prediction space with the SDE's kernel).
        classifier_fn: ``classifier_fn(x, t, **cond) -> logits (B, num_classes)``, trained on perturbed data of the
            same SDE (on phase-space SDEs: on the state). If it has ``.sde`` and ``score_fn`` is an adapter, the two
            SDEs must be the same diffusion; if it has ``.num_classes`` the labels are checked against it (else
            against the logits' width).
        scale: the guidance scale (``1``: exact conditional sampling with exact components).
        pass_labels: whether ``score_fn`` receives ``class_labels`` too (``True``: guide a class-conditional model
            further, as Dhariwal & Nichol's conditional ADM; ``False``: the score model is called without them).
            ``None`` (default): pass them to an adapter that declares ``num_classes > 0`` (itself or its ``net``), not
            to an unconditional adapter or a plain function (an unconditional network refuses labels).
        threshold: Imagen's dynamic thresholding percentile ``p`` in ``(0, 100]`` of the guided data prediction at
            every evaluation (:func:`~scoresde.guidance.thresholding.dynamic_threshold`; images in ``[-1, 1]``).
        interval: ``(sigma_lo, sigma_hi)``: add the classifier gradient only where EDM's noise level ``sigma_t /
            alpha_t`` lies in ``(sigma_lo, sigma_hi]`` (Kynkäänniemi et al. 2024); elsewhere the score model alone
            (``scale = 0``; no classifier call at a step where no row is inside).

    ``threshold`` and ``interval`` need a model adapter of a scalar SDE (VE, VP, sub-VP). Each guided evaluation is
    one network evaluation in a sampler's NFE (the classifier's forward and backward passes are not counted there).
    The gradient is taken by autograd on a detached copy of ``x`` inside ``torch.enable_grad()``, so it works inside
    the samplers' ``no_grad`` and no graph leaks into the sampler. Missing ``class_labels`` or labels outside ``[0,
    num_classes)`` raise ``ValueError`` at the first call.
    """
    scale = check_scale("scale", scale)
    threshold, interval = check_percentile(threshold), check_interval(interval)
    if not callable(classifier_fn):
        raise TypeError(f"classifier_fn must be callable as classifier_fn(x, t, **cond), got "
                        f"{type(classifier_fn).__name__}")
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a score function or a model adapter, got {type(score_fn).__name__}")
    num_classes = getattr(classifier_fn, "num_classes", None)
    cls_sde = getattr(classifier_fn, "sde", None)
    if isinstance(score_fn, DiffusionModel) and cls_sde is not None and not same_sde(cls_sde, score_fn.sde):
        raise ValueError(f"the classifier was trained for another SDE ({cls_sde.describe()}) than the score model "
                         f"({score_fn.sde.describe()}); guidance needs both on the same diffusion")
    if threshold is not None or interval is not None:
        require_schedule(score_fn, "threshold and interval")
    if threshold is not None:
        refuse_uncentered(score_fn)
    if pass_labels is None:
        pass_labels = isinstance(score_fn, DiffusionModel) and model_classes(score_fn) is not None

    def score_cond(cond: dict[str, Any]) -> dict[str, Any]:
        return cond if pass_labels else {k: v for k, v in cond.items() if k != "class_labels"}

    if not isinstance(score_fn, DiffusionModel):
        def guided(kind: str, x: Tensor, t: Tensor, cond: dict[str, Any]) -> tuple[Tensor, int]:
            grad = classifier_gradient(classifier_fn, x, t, cond, num_classes)
            return score_fn(x, t, **score_cond(cond)) + scale * grad, 1

        return GuidedFunction(guided, num_classes, f"classifier guidance, scale={scale}")
    model = score_fn

    def combine(kind: str, x: Tensor, t: Tensor, cond: dict[str, Any]) -> tuple[Tensor, int]:
        inside = None if interval is None else in_interval(model, t, interval)
        space = "x0" if threshold is not None else kind
        base = getattr(model, space)(x, t, **score_cond(cond))
        if inside is not None and not bool(inside.any()):
            requested_labels(cond, x.shape[0], num_classes, "classifier guidance")
            out = base
        else:
            grad = scale * classifier_gradient(classifier_fn, x, t, cond, num_classes)
            if space == "score":
                out = base + grad
            elif space == "eps":
                out = base + model.sde.score_to_eps(x, t, grad)
            else:
                out = base + model.sde.denoise(x, t, grad) - model.sde.denoise(x, t, torch.zeros_like(grad))
            if inside is not None and not bool(inside.all()):
                out = torch.where(batch_broadcast(inside, out), out, base)
        if threshold is not None:
            out = from_x0(model, kind, x, t, dynamic_threshold(out, threshold))
        return out, 1

    options = "".join(f", {k}={v}" for k, v in (("threshold", threshold), ("interval", interval)) if v is not None)
    return GuidedModel(model, combine, f"classifier guidance, scale={scale}{options}")
