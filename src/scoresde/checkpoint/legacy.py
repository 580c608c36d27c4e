"""Deprecated entry points at their old :mod:`scoresde.nets` paths, kept for code written against them.

``scoresde.nets.ncsn.{load_original_state_dict, load_original_ema}`` and ``scoresde.nets.layers.
{to_original_state_dict, IncompatibleCheckpointError}`` are the functions of :mod:`scoresde.checkpoint.state_dict`
themselves. ``scoresde.nets.layers.{load_original_state_dict, original_ema_state_dict, load_original_checkpoint}``
are too, with that module's old wording of a shape mismatch (``key: checkpoint (shape) vs network (shape)``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from torch import nn

from . import state_dict as _sd
from .errors import IncompatibleCheckpointError

__all__ = ["NETS_LAYERS", "NETS_NCSN"]

_LAYERS_MISMATCH = "{key}: checkpoint {checkpoint} vs network {network}"


def _layers_wording(load: Callable[..., Any]) -> Callable[..., Any]:
    """``load`` with a shape mismatch worded as ``scoresde.nets.layers`` did."""

    @wraps(load)
    def wrapped(net: nn.Module, *args: Any, **kwargs: Any) -> Any:
        try:
            return load(net, *args, **kwargs)
        except IncompatibleCheckpointError as err:
            if err.report is None:
                raise
            raise IncompatibleCheckpointError(
                f"original checkpoint does not match {type(net).__name__}: "
                f"{err.report.summary(_LAYERS_MISMATCH)}", err.report) from None

    return wrapped


#: the deprecated names of ``scoresde.nets.layers``
NETS_LAYERS: dict[str, Any] = {
    "IncompatibleCheckpointError": IncompatibleCheckpointError,
    "to_original_state_dict": _sd.to_original_state_dict,
    **{name: _layers_wording(getattr(_sd, name)) for name in (
        "load_original_checkpoint", "load_original_state_dict", "original_ema_state_dict")},
}

#: the deprecated names of ``scoresde.nets.ncsn``
NETS_NCSN: dict[str, Any] = {name: getattr(_sd, name) for name in (
    "IncompatibleCheckpointError", "load_original_ema", "load_original_state_dict")}
