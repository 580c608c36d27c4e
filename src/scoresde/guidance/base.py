"""What every guidance method shares: the guided adapter (:class:`GuidedModel`), the checks of labels and scales, the
count of network evaluations, and the conversion of a data prediction back into the prediction a sampler asks for.

The methods themselves are one file each, their paper in the header: :mod:`.classifier` (Dhariwal & Nichol 2021),
:mod:`.classifier_free` (Ho & Salimans 2022), :mod:`.rescale` (Lin et al. 2024), :mod:`.thresholding` (Saharia et al.
2022) and :mod:`.interval` (Kynkäänniemi et al. 2024).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from ..models.adapter import DiffusionModel
from ..numerics.checks import check_class_labels
from ..sdes.base import batch_broadcast

__all__ = ["GuidedFunction", "GuidedModel", "from_x0"]

#: ``combine(kind, x, t, cond) -> (prediction, network evaluations)``: the guided ``score``/``eps``/``x0`` at
#: ``(x, t)`` and how many network evaluations (in units of the sampler's batch) it cost
Combine = Callable[[str, Tensor, Tensor, dict[str, Any]], tuple[Tensor, int]]


def requested_labels(cond: dict[str, Any], batch: int, num_classes: int | None, what: str) -> Tensor:
    """The requested ``class_labels`` of a guided call, checked: present, int64 ``(B,)``, in ``[0, num_classes)``."""
    y = cond.get("class_labels")
    if y is None:
        raise ValueError(f"{what} needs the requested classes: pass cond={{'class_labels': y}} (int64, shape "
                         f"({batch},)); class_labels=None asks for no class")
    return check_class_labels(y, batch, num_classes)


def check_scale(name: str, scale: float) -> float:
    """``scale`` as a float if it is a finite real number, else one ``ValueError`` naming it."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not float(scale) == float(scale) \
            or abs(float(scale)) == float("inf"):
        raise ValueError(f"{name} must be a finite number, got {scale!r}")
    return float(scale)


_UNKNOWN = object()


def declared_classes(score_fn: Any) -> Any:
    """``num_classes`` declared by a score function or adapter, or by the network of an adapter (``model.net``);
    ``_UNKNOWN`` when none declares it. ``0`` (or ``None``) declared means an unconditional model."""
    for owner in (score_fn, getattr(score_fn, "net", None)):
        if owner is not None and hasattr(owner, "num_classes"):
            return owner.num_classes
    return _UNKNOWN


def model_classes(score_fn: Any) -> int | None:
    """The number of classes to check labels against (``None``: unknown)."""
    n = declared_classes(score_fn)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def refuse_unconditional(score_fn: Any, what: str) -> None:
    """One ``ValueError`` if ``score_fn`` declares itself unconditional (``num_classes`` 0 or ``None``)."""
    n = declared_classes(score_fn)
    if n is not _UNKNOWN and not n:
        raise ValueError(f"{what} needs a class-conditional model (num_classes > 0); this model declares "
                         f"num_classes={n!r} (unconditional)")


def require_schedule(score_fn: Any, options: str) -> DiffusionModel:
    """The adapter ``score_fn`` if it has a scalar noise schedule ``x_t = alpha_t x_0 + sigma_t eps`` (VE, VP,
    sub-VP): the options named in ``options`` read ``alpha_t``/``sigma_t``; else one ``ValueError``."""
    if not isinstance(score_fn, DiffusionModel):
        raise ValueError(f"{options} need the noise schedule: pass a model adapter (a loaded model, or "
                         f"scoresde.models.as_model(sde, score_fn)), not a plain {type(score_fn).__name__}")
    if not getattr(score_fn.sde, "scalar_schedule", False):
        raise ValueError(f"{options} need a scalar noise schedule (VE, VP, sub-VP); {type(score_fn.sde).__name__} "
                         "has a matrix kernel")
    return score_fn


def from_x0(model: DiffusionModel, kind: str, x: Tensor, t: Tensor, x0: Tensor) -> Tensor:
    """The prediction ``kind`` (``score``, ``eps`` or ``x0``) that has data prediction ``x0`` at ``(x, t)``, with the
    model's own ``(alpha_t, sigma_t)`` (``model.alpha_sigma``, the coefficients its ``x0`` was converted with):
    ``eps = (x - alpha x0) / sigma`` and ``score = (alpha x0 - x) / sigma^2`` (Tweedie's formula inverted). Use it to
    return a data prediction that guidance changed non-linearly (rescaled, thresholded) to a sampler."""
    if kind == "x0":
        return x0
    alpha, sigma = (batch_broadcast(c, x).to(x.dtype) for c in model.alpha_sigma(t))
    if kind == "eps":
        return (x - alpha * x0) / sigma
    return (alpha * x0 - x) / sigma**2


def data_is_centered(model: Any) -> bool | None:
    """``data.centered`` of the run config a loaded model carries (``model.config``), ``None`` when it carries none."""
    data = getattr(getattr(model, "config", None), "data", None)
    if data is None and isinstance(getattr(model, "config", None), Mapping):
        data = model.config.get("data")
    value = data.get("centered") if isinstance(data, Mapping) else getattr(data, "centered", None)
    return value if isinstance(value, bool) else None


class GuidedModel(DiffusionModel):
    """An adapter whose predictions are the guided combination of another adapter's (what :func:`classifier` and
    :func:`classifier_free` return for an adapter, so that ``model.sde`` travels with the guided model).

    Every prediction is affine in the score at fixed ``(x, t)``, so the plain combination is formed in the inner
    model's own prediction space (a noise-predicting network's ``eps`` is combined as ``eps``, never re-derived from a
    score with another schedule); the options that are not affine (CFG rescale, dynamic thresholding) act on the data
    prediction ``x0`` and convert the result with :func:`from_x0`.

    ``network_evaluations`` counts the inner network's evaluations in units of the batch (a batched call of ``2B``
    rows counts 2, a conditional-only call 1); :class:`~scoresde.models.adapter.CountingModel` reads it, so a
    sampler's NFE is the number of network evaluations (``docs/design/extending.md``).
    """

    def __init__(self, inner: DiffusionModel, combine: Combine, description: str) -> None:
        self.inner, self._combine, self._description = inner, combine, description
        self.sde = inner.sde
        self.prediction = inner.prediction if inner.prediction in ("score", "eps", "x0") else "score"
        self.num_classes = model_classes(inner)
        self.network_evaluations = 0

    def _guided(self, kind: str, x: Tensor, t: Tensor, cond: dict[str, Any]) -> Tensor:
        out, evaluations = self._combine(kind, x, t, cond)
        self.network_evaluations += evaluations
        return out

    def score(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._guided("score", x, t, cond)

    def eps(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._guided("eps", x, t, cond)

    def x0(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._guided("x0", x, t, cond)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.inner.alpha_sigma(t)

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self.score(x, t, **cond)

    def __repr__(self) -> str:
        return f"GuidedModel({self._description}, inner={self.inner!r})"


class GuidedFunction:
    """A guided plain score function ``guided(x, t, **cond)`` (what :func:`classifier` and :func:`classifier_free`
    return for a plain function), with ``num_classes`` (when known) and the running ``network_evaluations`` count of
    :class:`GuidedModel`."""

    def __init__(self, combine: Combine, num_classes: int | None, description: str) -> None:
        self._combine, self._description = combine, description
        if num_classes is not None:
            self.num_classes = num_classes
        self.network_evaluations = 0

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        out, evaluations = self._combine("score", x, t, cond)
        self.network_evaluations += evaluations
        return out

    def __repr__(self) -> str:
        return f"GuidedFunction({self._description})"
