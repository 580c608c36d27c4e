"""What the checkpoint loaders return: the model itself, with the checkpoint's ``step`` and typed ``config`` on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, TypeVar

from ..config import config_from_dict

__all__ = ["LoadedCheckpoint", "loaded_model"]

M = TypeVar("M")


class LoadedCheckpoint(NamedTuple):
    """Deprecated: the ``(model, step, config)`` record the loaders used to return. They now return the model
    itself, which still unpacks as ``model, step, config = loaded`` and has ``loaded.model`` (the model adapter's
    compatibility), with ``config`` the typed :class:`~scoresde.config.Config`."""

    model: Any
    step: int
    config: dict[str, Any]


def loaded_model(model: M, step: int, config: Mapping[str, Any]) -> M:
    """``model`` with ``model.step = step`` and ``model.config`` the validated :class:`~scoresde.config.Config` of
    ``config`` (the nested dicts the model was built from); returns ``model``."""
    model.step = int(step)  # type: ignore[attr-defined]
    model.config = config_from_dict(config)  # type: ignore[attr-defined]
    return model
