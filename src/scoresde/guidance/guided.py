"""Classifier and classifier-free guidance as score-function wrappers (Dhariwal & Nichol 2021; Ho & Salimans 2022).

Each wrapper takes a score function (or a model adapter) and returns one of the same kind whose call
``guided(x, t, class_labels=y)`` is the guided score, so that any sampler of :data:`scoresde.sampling.SAMPLERS` runs
it unchanged: ``scoresde.sample(sde, guided, shape, cond={"class_labels": y}, ...)``. On phase-space SDEs (CLD,
PSLD) ``x`` is the whole state and the classifier reads the state, as PSLD's does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel
from ..numerics.checks import check_class_labels
from ..sdes.base import same_sde

__all__ = ["GuidedModel", "classifier", "classifier_free"]

ClassifierFn = Callable[..., Tensor]


def _labels(cond: dict[str, Any], batch: int, num_classes: int | None, what: str) -> Tensor:
    """The requested ``class_labels`` of a guided call, checked: present, int64 ``(B,)``, in ``[0, num_classes)``."""
    y = cond.get("class_labels")
    if y is None:
        raise ValueError(f"{what} needs the requested classes: pass cond={{'class_labels': y}} (int64, shape "
                         f"({batch},)); class_labels=None asks for no class")
    return check_class_labels(y, batch, num_classes)


def _check_scale(name: str, scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not float(scale) == float(scale) \
            or abs(float(scale)) == float("inf"):
        raise ValueError(f"{name} must be a finite number, got {scale!r}")
    return float(scale)


_UNKNOWN = object()


def _declared_classes(score_fn: Any) -> Any:
    """``num_classes`` declared by a score function or adapter, or by the network of an adapter (``model.net``);
    ``_UNKNOWN`` when none declares it. ``0`` (or ``None``) declared means an unconditional model."""
    for owner in (score_fn, getattr(score_fn, "net", None)):
        if owner is not None and hasattr(owner, "num_classes"):
            return owner.num_classes
    return _UNKNOWN


def _model_classes(score_fn: Any) -> int | None:
    """The number of classes to check labels against (``None``: unknown)."""
    n = _declared_classes(score_fn)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _refuse_unconditional(score_fn: Any, what: str) -> None:
    n = _declared_classes(score_fn)
    if n is not _UNKNOWN and not n:
        raise ValueError(f"{what} needs a class-conditional model (num_classes > 0); this model declares "
                         f"num_classes={n!r} (unconditional)")


class GuidedModel(DiffusionModel):
    """An adapter whose predictions are the guided combination of another adapter's (what :func:`classifier` and
    :func:`classifier_free` return for an adapter, so that ``model.sde`` travels with the guided model).

    Every prediction is affine in the score at fixed ``(x, t)``, so the combination is formed in the inner model's own
    prediction space (a noise-predicting network's ``eps`` is combined as ``eps``, never re-derived from a score with
    another schedule): ``combine(kind, x, t, cond)`` returns the guided ``score``/``eps``/``x0``.
    """

    def __init__(self, inner: DiffusionModel, combine: Callable[[str, Tensor, Tensor, dict[str, Any]], Tensor],
                 description: str) -> None:
        self.inner, self._combine, self._description = inner, combine, description
        self.sde = inner.sde
        self.prediction = inner.prediction if inner.prediction in ("score", "eps", "x0") else "score"
        self.num_classes = _model_classes(inner)

    def score(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._combine("score", x, t, cond)

    def eps(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._combine("eps", x, t, cond)

    def x0(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._combine("x0", x, t, cond)

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self.score(x, t, **cond)

    def __repr__(self) -> str:
        return f"GuidedModel({self._description}, inner={self.inner!r})"


def classifier_gradient(classifier_fn: ClassifierFn, x: Tensor, t: Tensor, cond: dict[str, Any],
                        num_classes: int | None) -> Tensor:
    """``grad_x log softmax(classifier_fn(x, t, **cond))[y]`` per row, ``y = cond["class_labels"]``, by autograd on a
    detached copy of ``x`` (no graph reaches the caller; works inside the samplers' ``torch.no_grad``)."""
    y = _labels(cond, x.shape[0], num_classes, "classifier guidance")
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


def classifier(score_fn: Any, classifier_fn: ClassifierFn, scale: float = 1.0, *,
               pass_labels: bool | None = None) -> Any:
    """Classifier guidance (Song et al. 2021, §5 and App. I.1; Dhariwal & Nichol 2021, eq. 12 with scale ``s``):

        ``guided(x, t, **cond) = score_fn(x, t, ...) + scale * grad_x log softmax(classifier_fn(x, t, **cond))[y]``

    with ``y = cond["class_labels"]`` and the *same* ``t`` for score and classifier (PSLD's code feeds the classifier
    another time; here both read the sampler's ``t``). With an exact unconditional score, the exact noisy classifier
    ``p_t(y | x_t)`` and ``scale = 1`` this is the exact class-conditional score (Bayes' rule), so every sampler samples
    ``p(x | y)``; ``scale > 1`` sharpens toward ``p(x) p(y | x)^scale``. Use it when the diffusion model is
    unconditional and a noise-conditional classifier exists; with a class-conditional model trained with label
    dropout use :func:`classifier_free` (no classifier, one extra model call instead of a backward pass).

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

    The gradient is taken by autograd on a detached copy of ``x`` inside ``torch.enable_grad()``, so it works inside the
    samplers' ``no_grad`` and no graph leaks into the sampler. Missing ``class_labels`` or labels outside ``[0,
    num_classes)`` raise ``ValueError`` at the first call.
    """
    scale = _check_scale("scale", scale)
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

    if pass_labels is None:
        pass_labels = isinstance(score_fn, DiffusionModel) and _model_classes(score_fn) is not None

    def score_cond(cond: dict[str, Any]) -> dict[str, Any]:
        return cond if pass_labels else {k: v for k, v in cond.items() if k != "class_labels"}

    if isinstance(score_fn, DiffusionModel):
        model = score_fn

        def combine(kind: str, x: Tensor, t: Tensor, cond: dict[str, Any]) -> Tensor:
            grad = scale * classifier_gradient(classifier_fn, x, t, cond, num_classes)
            base = getattr(model, kind)(x, t, **score_cond(cond))
            if kind == "score":
                return base + grad
            if kind == "eps":
                return base + model.sde.score_to_eps(x, t, grad)
            return base + model.sde.denoise(x, t, grad) - model.sde.denoise(x, t, torch.zeros_like(grad))

        return GuidedModel(model, combine, f"classifier guidance, scale={scale}")

    def guided(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return score_fn(x, t, **score_cond(cond)) + scale * classifier_gradient(classifier_fn, x, t, cond, num_classes)

    if num_classes is not None:
        guided.num_classes = num_classes  # type: ignore[attr-defined]
    return guided


def classifier_free(score_fn: Any, scale: float) -> Any:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6):

        ``guided(x, t, class_labels=y) = (1 + w) score_fn(x, t, class_labels=y) - w score_fn(x, t, class_labels=None)``

    with ``w = scale``; ``class_labels=None`` is the unconditional (null-label) call of a conditional model trained
    with label dropout. ``w = 0`` is the plain conditional model; ``w > 0`` samples approximately ``p(x | y)^(1 + w) /
    p(x)^w ∝ p(x | y) p(y | x)^w`` (the implicit classifier raised to ``w``). Other libraries (diffusers, EDM's
    ``guidance``) call ``1 + w`` the "guidance scale": their ``guidance_scale = g`` is ``scale = g - 1`` here. Use it
    with a class-conditional model; with an unconditional model and a noise-conditional classifier use
    :func:`classifier`.

    Args:
        score_fn: a class-conditional score function ``score_fn(x, t, class_labels=...)`` or model adapter (then a
            :class:`GuidedModel` adapter is returned, combining the model's own predictions, e.g. ``eps``, with the
            same weights: every prediction is affine in the score). A model declaring ``num_classes = 0`` (itself or
            its network ``model.net``: an unconditional model) is refused, and labels are checked against
            ``num_classes``. A plain function cannot
            be checked before it is called: an unconditional plain function that ignores ``class_labels`` silently
            returns its unconditional score (guidance then does nothing); one that does not accept the keyword
            raises ``TypeError`` at the first call.
        scale: Ho & Salimans' ``w`` (finite; ``w = -1`` is the unconditional model).

    Costs two model calls per evaluation (the conditional and the unconditional one, batched separately).
    """
    scale = _check_scale("scale", scale)
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a score function or a model adapter, got {type(score_fn).__name__}")
    _refuse_unconditional(score_fn, "classifier-free guidance")
    num_classes = _model_classes(score_fn)

    def mix(call: Callable[..., Tensor], x: Tensor, t: Tensor, cond: dict[str, Any]) -> Tensor:
        _labels(cond, x.shape[0], num_classes, "classifier-free guidance")
        conditional = call(x, t, **cond)
        if scale == 0.0:
            return conditional
        unconditional = call(x, t, **{**cond, "class_labels": None})
        return (1.0 + scale) * conditional - scale * unconditional

    if isinstance(score_fn, DiffusionModel):
        model = score_fn
        return GuidedModel(model, lambda kind, x, t, cond: mix(getattr(model, kind), x, t, cond),
                           f"classifier-free guidance, w={scale}")

    def guided(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return mix(score_fn, x, t, cond)

    if num_classes is not None:
        guided.num_classes = num_classes  # type: ignore[attr-defined]
    return guided
