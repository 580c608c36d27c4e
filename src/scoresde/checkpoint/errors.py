"""The errors of checkpoint loading: all are ``ValueError``\\ s, so the CLI reports each on one line."""

from __future__ import annotations

from typing import Any

__all__ = ["CorruptCheckpointError", "IncompatibleCheckpointError", "NotACheckpointError", "SkippedCheckpointWarning",
           "UnsafeCheckpointError"]


class IncompatibleCheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the network the config builds (or at all); the message says why.

    ``report`` is the :class:`~scoresde.checkpoint.state_dict.KeyReport` (missing, unexpected and shape-mismatched
    keys) when the keys or shapes are the problem, else ``None``.
    """

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class CorruptCheckpointError(IncompatibleCheckpointError):
    """The file has a checkpoint's format but is truncated or corrupt (an interrupted copy or save), or its sha256
    differs from the one its checkpoint recorded (a torn or damaged checkpoint)."""


class NotACheckpointError(IncompatibleCheckpointError):
    """The file is not a checkpoint at all: not a ``torch.save`` zip archive nor a pickle."""


class UnsafeCheckpointError(IncompatibleCheckpointError):
    """``torch.load(weights_only=True)`` refused the file: it holds code-executing globals (never executed)."""


class SkippedCheckpointWarning(UserWarning):
    """A checkpoint of a run folder that does not load was skipped for an older one (the message names it and why);
    see :func:`scoresde.checkpoint.run.newest_loadable`."""
