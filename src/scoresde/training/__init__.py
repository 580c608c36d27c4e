"""Training: resumable rank-sharded data, the :class:`Trainer`, its EMA, and resuming from a run's checkpoints.

Configs are :mod:`scoresde.config`'s (:func:`scoresde.config.load_config`); the run folder's checkpoints are
:mod:`scoresde.checkpoint`'s (:func:`scoresde.checkpoint.list_checkpoints`).
"""

from .ema import EMA
from .lock import WorkdirLock, WorkdirLockedError
from .signals import TrainingInterrupted
from .state import find_resumable
from .trainer import CompileError, NonFiniteLossError, Trainer

__all__ = ["EMA", "CompileError", "NonFiniteLossError", "Trainer", "TrainingInterrupted", "WorkdirLock",
           "WorkdirLockedError", "find_resumable"]
