"""Small argument checks shared across the package (one message for one mistake)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def check_choice(name: str, value: Any, valid: Sequence[str]) -> Any:
    """``value`` if it is one of ``valid``, else a ``ValueError`` listing them: ``unknown <name> ...``."""
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values are: {', '.join(valid)}")
    return value


def check_count(name: str, value: Any) -> int:
    """``value`` if it is a positive integer (not a bool, not a float), else a ``ValueError``."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_class_labels(labels: Any, batch_size: int, num_classes: int | None, *, allow_null: bool = False) -> Any:
    """``labels`` as int64 if it is an integer tensor of shape ``(batch_size,)`` with entries in ``[0, num_classes)``
    (``[-1, num_classes)`` with ``allow_null``: ``-1`` is classifier-free guidance's null label; no upper bound for
    ``num_classes=None``), else one ``ValueError`` naming the bad dtype, shape or label. The one check of class labels
    for classifiers, conditional networks, guidance and the mixture oracle."""
    low = -1 if allow_null else 0
    high = "" if num_classes is None else f", {num_classes})"
    allowed = f"an integer tensor of shape ({batch_size},) with entries in [{low}{high or ', ...)'}"
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"class_labels must be {allowed}, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"class_labels must be {allowed}, got dtype {labels.dtype}")
    if tuple(labels.shape) != (batch_size,):
        raise ValueError(f"class_labels must be {allowed}, got shape {tuple(labels.shape)}")
    if batch_size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < low or (num_classes is not None and hi >= num_classes):
            raise ValueError(f"class_labels must be {allowed}, got label {lo if lo < low else hi}")
    return labels.long()
