"""A time-conditional classifier network plus its SDE as the noise-conditional classifier ``p_t(y | x_t)`` of
classifier guidance (Song et al. 2021, §5 and App. I.4, eq. 48: ``grad_x log p_t(x | y) = grad_x log p_t(x) + grad_x
log p_t(y | x)``; Dhariwal & Nichol 2021).

:class:`ClassifierModel` does for a classifier what :class:`~scoresde.models.ScoreModel` does for a score network: it
maps forward times ``t`` to what the network is fed (:func:`~scoresde.models.score_model.noise_labels`: ``sigma(t)``
for VE, ``999 t`` for VP / sub-VP; the raw ``t`` for PSLD/CLD, as :class:`~scoresde.models.PhaseSpaceScoreModel`), and
carries the SDE, so that guidance can refuse a classifier trained under another diffusion. On phase-space SDEs it
classifies the whole state ``[x, m]`` (as PSLD's classifier does), the variable the sampler moves.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..numerics.checks import check_choice, check_class_labels
from ..sdes.base import SDE
from ..sdes.scalar import ScalarSDE
from .score_model import LABEL_TYPES, noise_labels

__all__ = ["CLASSIFIER_LABEL_TYPES", "ClassifierModel"]

#: what a classifier may be fed: the score networks' label types, or ``'t'`` (the raw time, phase-space SDEs)
CLASSIFIER_LABEL_TYPES: tuple[str, ...] = (*LABEL_TYPES, "t")


class ClassifierModel(nn.Module):
    """``logits = model(x, t, **cond)``: a noise-conditional classifier ``p_t(y | x_t)`` from a network
    ``net(x, noise_labels) -> (B, num_classes)`` and the SDE whose marginals ``p_t`` it was trained on.

    Use it as the ``classifier_fn`` of classifier guidance (``scoresde.guidance``): it is called as
    ``classifier_fn(x, t, class_labels=y)``. ``class_labels`` there is the *target* class, not an input: it is checked
    (shape ``(B,)``, integers in ``[0, num_classes)``) and not fed to the network; any other conditioning key is an
    error (the classifier has no other inputs).

    Args:
        net: the network (:class:`~scoresde.nets.classifier.NCSNppClassifier`, :class:`~scoresde.nets.classifier.
            MLPClassifier` or any ``net(x, noise_labels)`` returning logits), kept as ``self.net``.
        sde: the forward SDE of the perturbed data it classifies.
        num_classes: number of classes; default ``net.num_classes``.
        label_type: the network's time input (:data:`CLASSIFIER_LABEL_TYPES`); default: Score SDE's convention for
            scalar SDEs (``'sigma'`` for VE, ``'time'`` = ``999 t`` for VP / sub-VP; with ``continuous=False`` the
            discrete ``'sigma_index'`` / ``'timestep'``), ``'t'`` for any other SDE (PSLD, CLD).
        continuous: selects the default ``label_type`` of scalar SDEs, as in :class:`~scoresde.models.ScoreModel`.
    """

    def __init__(self, net: nn.Module, sde: SDE, *, num_classes: int | None = None, label_type: str | None = None,
                 continuous: bool = True) -> None:
        super().__init__()
        if num_classes is None:
            num_classes = getattr(net, "num_classes", None)
            if num_classes is None:
                raise ValueError(f"{type(net).__name__} has no num_classes attribute: pass num_classes=...")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        scalar = isinstance(sde, ScalarSDE)
        if label_type is None:
            label_type = sde.original_conventions(continuous)[0] if scalar else "t"
        check_choice("label_type", label_type, CLASSIFIER_LABEL_TYPES)
        if label_type != "t" and not scalar:
            raise ValueError(f"label_type {label_type!r} needs a scalar SDE (VE, VP, sub-VP); {type(sde).__name__} "
                             "classifiers are fed the raw time (label_type 't')")
        self.net, self.sde = net, sde
        self.num_classes, self.label_type, self.continuous = num_classes, label_type, bool(continuous)

    def with_net(self, net: nn.Module) -> ClassifierModel:
        """The same SDE and conventions around another network (e.g. an EMA copy)."""
        return ClassifierModel(net, self.sde, num_classes=self.num_classes, label_type=self.label_type,
                               continuous=self.continuous)

    def extra_repr(self) -> str:
        return (f"sde={type(self.sde).__name__}, num_classes={self.num_classes}, label_type={self.label_type!r}")

    def labels(self, t: Tensor) -> Tensor:
        """The network's time input for forward times ``t`` (``(B,)``): ``t`` itself for ``label_type='t'``, else
        :func:`~scoresde.models.score_model.noise_labels` (the score networks' mapping)."""
        return t if self.label_type == "t" else noise_labels(self.sde, self.label_type, t)

    def check_labels(self, class_labels: Tensor, batch_size: int) -> Tensor:
        """``class_labels`` as int64 if it is an integer tensor of shape ``(batch_size,)`` with entries in
        ``[0, num_classes)``, else a ``ValueError`` naming the bad value
        (:func:`scoresde.numerics.checks.check_class_labels`)."""
        return check_class_labels(class_labels, batch_size, self.num_classes)

    def _times(self, t: Tensor | float, x: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
        return t

    def logits(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        """Logits ``(B, num_classes)`` of states ``x`` at forward times ``t``, in ``x``'s dtype (the network runs in
        its own dtype; the cast is differentiable, so ``grad_x`` works for guidance). See the class docstring for
        ``cond``."""
        extra = sorted(k for k in cond if k != "class_labels")
        if extra:
            raise ValueError(f"a noise-conditional classifier takes no conditioning inputs besides class_labels (the "
                             f"target class); got {extra}")
        if cond.get("class_labels") is not None:
            self.check_labels(cond["class_labels"], x.shape[0])
        labels = self.labels(self._times(t, x))
        dtype = next(self.net.parameters()).dtype
        if labels.is_floating_point():
            labels = labels.to(dtype)
        return self.net(x.to(dtype), labels).to(x.dtype)

    def forward(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        """:meth:`logits`: the ``classifier_fn(x, t, **cond)`` of classifier guidance."""
        return self.logits(x, t, **cond)

    def log_probs(self, x: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        """``log p_t(y | x)`` for every class, ``(B, num_classes)`` (``log_softmax`` of the logits)."""
        return torch.log_softmax(self.logits(x, t, **cond), dim=-1)

    def class_log_prob(self, x: Tensor, t: Tensor | float, class_labels: Tensor) -> Tensor:
        """``log p_t(y_i | x_i)`` of each example's own class ``y_i``, shape ``(B,)``: the term whose gradient in
        ``x`` classifier guidance adds to the score (Song et al. 2021, eq. 48)."""
        y = self.check_labels(class_labels, x.shape[0])
        return self.log_probs(x, t, class_labels=y).gather(1, y.to(x.device)[:, None])[:, 0]
