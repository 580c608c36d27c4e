"""What the checkpoint loaders return: the model itself, with the checkpoint's ``step`` and typed ``config`` on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from ..config import config_from_dict

__all__ = ["loaded_model"]

M = TypeVar("M")


def loaded_model(model: M, step: int, config: Mapping[str, Any]) -> M:
    """``model`` with ``model.step = step`` and ``model.config`` the validated :class:`~scoresde.config.Config` of
    ``config`` (the nested dicts the model was built from); returns ``model``."""
    model.step = int(step)  # type: ignore[attr-defined]
    model.config = config_from_dict(config)  # type: ignore[attr-defined]
    return model
