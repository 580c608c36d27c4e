"""Classifier-free guidance (Ho & Salimans, "Classifier-Free Diffusion Guidance", NeurIPS 2021 workshop / 2022,
eq. 6), with the field's answers to its failure at large weights as options: the rescale of Lin et al. 2024
(:mod:`.rescale`), Imagen's dynamic thresholding (:mod:`.thresholding`) and guidance in a limited interval of noise
levels (:mod:`.interval`). The conditional and unconditional evaluations are one network call of ``2B`` rows
(DPM-Solver's ``model_wrapper`` does the same), which counts as 2 network evaluations in a sampler's NFE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel
from ..nets import NULL_LABEL
from ..numerics.checks import check_flag
from ..sdes.base import batch_broadcast
from .base import (
    GuidedFunction,
    GuidedModel,
    check_scale,
    data_is_centered,
    from_x0,
    model_classes,
    refuse_unconditional,
    requested_labels,
    require_schedule,
)
from .interval import check_interval, in_interval
from .rescale import check_rescale, rescale_guided
from .thresholding import check_percentile, dynamic_threshold

__all__ = ["classifier_free", "doubled_cond"]


def doubled_cond(cond: dict[str, Any], batch: int) -> dict[str, Any]:
    """The conditioning of one ``2B``-row call: every tensor repeated (``cat([v, v])``), and ``class_labels`` the
    requested labels for the first ``B`` rows and the null label (:data:`scoresde.nets.NULL_LABEL`, ``-1``: "no class",
    what ``class_labels=None`` means row by row) for the last ``B``."""
    out = {key: None if value is None else torch.cat([value, value]) for key, value in cond.items()}
    y = cond["class_labels"]
    out["class_labels"] = torch.cat([y, torch.full((batch,), NULL_LABEL, dtype=y.dtype, device=y.device)])
    return out


def refuse_uncentered(model: Any) -> None:
    """Dynamic thresholding assumes data in ``[-1, 1]``: refuse a model whose run config says otherwise."""
    if data_is_centered(model) is False:
        raise ValueError("threshold (dynamic thresholding) assumes data in [-1, 1]; this model was trained on data in "
                         "[0, 1] (data.centered = false)")


def classifier_free(score_fn: Any, scale: float, *, rescale: float = 0.0, threshold: float | None = None,
                    interval: tuple[float, float] | None = None, batched: bool = True) -> Any:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6):

        ``guided(x, t, class_labels=y) = (1 + w) score_fn(x, t, class_labels=y) - w score_fn(x, t, class_labels=None)``

    with ``w = scale``; the unconditional call is the null label of a conditional model trained with label dropout.
    ``w = 0`` is the plain conditional model; ``w > 0`` samples approximately ``p(x | y) p(y | x)^w`` (the implicit
    classifier raised to ``w``). Other libraries (diffusers, EDM's ``guidance``, Kynkäänniemi et al.) call ``1 + w``
    the "guidance scale" or weight: their ``g`` is ``scale = g - 1`` here. Use it with a class-conditional model; with
    an unconditional model and a noise-conditional classifier use :func:`classifier`.

    Args:
        score_fn: a class-conditional score function ``score_fn(x, t, class_labels=...)`` or model adapter (then a
            :class:`GuidedModel` adapter is returned, combining the model's own predictions, e.g. ``eps``, with the
            same weights: every prediction is affine in the score). A model declaring ``num_classes = 0`` (itself or
            its network ``model.net``) is refused, and labels are checked against ``num_classes``. An unconditional
            plain function that ignores ``class_labels`` silently returns its unconditional score (guidance then
            does nothing); one that does not accept the keyword raises ``TypeError`` at the first call.
        scale: Ho & Salimans' ``w`` (finite; ``w = -1`` is the unconditional model).
        rescale: Lin et al.'s ``phi`` in ``[0, 1]`` (:func:`~scoresde.guidance.rescale.rescale_guided`), applied to
            the **data prediction** ``x0`` per sample (std over every non-batch dimension), then converted to the
            prediction the sampler asks for. ``0`` (default): plain CFG. Lin et al. recommend 0.7.
        threshold: Imagen's dynamic thresholding percentile ``p`` in ``(0, 100]`` (Saharia et al. use 99.5), applied to
            the data prediction at every evaluation, after the rescale and inside or outside the interval (Imagen
            thresholds every step). Images ``(B, C, H, W)`` in ``[-1, 1]`` only
            (:func:`~scoresde.guidance.thresholding.dynamic_threshold`). ``None`` (default): none.
        interval: ``(sigma_lo, sigma_hi)``: guide only where EDM's noise level ``sigma = sigma_t / alpha_t`` of the
            SDE lies in ``(sigma_lo, sigma_hi]`` (Kynkäänniemi et al. 2024; :mod:`scoresde.guidance.interval`),
            return the conditional prediction (``w = 0``, one network evaluation) elsewhere. ``None``: guide
            everywhere.
        batched: evaluate the conditional and unconditional halves as one call of ``2B`` rows, the unconditional rows
            labelled ``NULL_LABEL`` (``-1``) (default); ``False``: two calls of ``B`` rows, the second with
            ``class_labels=None`` (less peak memory, or a plain function that does not take ``-1`` rows). Either
            way each guided evaluation counts 2 network evaluations (1 where no guidance is applied).

    ``rescale``, ``threshold`` and ``interval`` need the noise schedule: a model adapter of a scalar SDE (VE, VP,
    sub-VP); a plain function is refused with them (wrap it: ``scoresde.models.as_model(sde, score_fn)``). With the
    defaults the result is the plain formula above, bit for bit the unbatched two-call computation wherever the
    network's rows do not interact.
    """
    scale = check_scale("scale", scale)
    rescale, threshold = check_rescale(rescale), check_percentile(threshold)
    interval, batched = check_interval(interval), check_flag("batched", batched)
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a score function or a model adapter, got {type(score_fn).__name__}")
    refuse_unconditional(score_fn, "classifier-free guidance")
    num_classes = model_classes(score_fn)
    nonlinear = rescale > 0.0 or threshold is not None
    model = score_fn if isinstance(score_fn, DiffusionModel) else None
    if nonlinear or interval is not None:
        model = require_schedule(score_fn, "rescale, threshold and interval")
    if threshold is not None:
        refuse_uncentered(model)

    def evaluate(call: Callable[..., Tensor], x: Tensor, t: Tensor, cond: dict[str, Any],
                 guide: bool) -> tuple[Tensor, Tensor | None, int]:
        """The conditional prediction, the unconditional one (``None`` without guidance) and the evaluations."""
        if not guide:
            return call(x, t, **cond), None, 1
        if not batched:
            return call(x, t, **cond), call(x, t, **{**cond, "class_labels": None}), 2
        b = x.shape[0]
        tt = t.reshape(-1).expand(b)
        both = call(torch.cat([x, x]), torch.cat([tt, tt]), **doubled_cond(cond, b))
        return both[:b], both[b:], 2

    def combine(kind: str, x: Tensor, t: Tensor, cond: dict[str, Any]) -> tuple[Tensor, int]:
        requested_labels(cond, x.shape[0], num_classes, "classifier-free guidance")
        inside = None if interval is None or scale == 0.0 else in_interval(model, t, interval)
        guide = scale != 0.0 and (inside is None or bool(inside.any()))
        space = "x0" if nonlinear else kind
        call = getattr(model, space) if model is not None else score_fn
        conditional, unconditional, evaluations = evaluate(call, x, t, cond, guide)
        out = conditional
        if unconditional is not None:
            out = (1.0 + scale) * conditional - scale * unconditional
            if rescale > 0.0:
                out = rescale_guided(out, conditional, rescale)
            if inside is not None and not bool(inside.all()):
                out = torch.where(batch_broadcast(inside, out), out, conditional)
        if threshold is not None:
            out = dynamic_threshold(out, threshold)
        return (from_x0(model, kind, x, t, out) if nonlinear else out), evaluations

    options = "".join(f", {k}={v}" for k, v in (("rescale", rescale), ("threshold", threshold),
                                                 ("interval", interval)) if v not in (0.0, None))
    description = f"classifier-free guidance, w={scale}{options}"
    if model is not None:
        return GuidedModel(model, combine, description)
    return GuidedFunction(combine, num_classes, description)
