"""Graceful stops of a training run on ``SIGTERM`` (a cluster's pre-emption notice) and ``SIGINT`` (Ctrl-C).

While :class:`StopSignals` is active, the first such signal only records itself; the trainer notices it at the
next step boundary (never in the middle of a step), writes a pre-emption checkpoint at the current step and raises
:class:`TrainingInterrupted`, which ``scoresde train`` reports in one line with exit code ``128 + signal number``
(the shell's convention: 143 for ``SIGTERM``, 130 for ``SIGINT``). A second signal before that exits at once
(:class:`SystemExit` with the same code, one line on stderr, no checkpoint): the escape hatch when a step or the
checkpoint write hangs. Resuming from the pre-emption checkpoint continues bit-exactly, as from any checkpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType

__all__ = ["STOP_SIGNALS", "StopSignals", "TrainingInterrupted", "exit_code"]

#: the signals that stop training gracefully
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_code(signum: int) -> int:
    """The conventional exit status of a process stopped by signal ``signum``: ``128 + signum``."""
    return 128 + int(signum)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint at ``step`` (``checkpoint``: its directory, or
    ``None`` on ranks other than 0). ``exit_code`` is ``128 + signum``."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = int(signum), int(step), checkpoint
        self.exit_code = exit_code(signum)
        where = f"; resume from {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}{where}")


class StopSignals:
    """Record ``SIGTERM``/``SIGINT`` instead of dying (a context manager; the previous handlers are restored on exit).

    ``received`` is the first signal's number (``None`` before one). A second signal writes one line to stderr and
    raises ``SystemExit(128 + signum)`` at once. Outside the main thread (where Python cannot install handlers) it
    does nothing.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:  # quiet: the trainer's stop is the one line the user sees
            self.received = signum
            return
        print(f"{signal.Signals(signum).name} received again: exiting at once without a checkpoint",
              file=sys.stderr, flush=True)
        raise SystemExit(exit_code(signum))

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()
