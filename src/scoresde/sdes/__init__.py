"""Forward SDEs: the interface (:class:`SDE`), the scalar Score SDE families and their noise schedules."""

from .base import SDE, ReverseSDE, ScoreFn, batch_broadcast, randn_like
from .scalar import VESDE, VPSDE, ScalarSDE, SubVPSDE

__all__ = [
    "SDE",
    "VESDE",
    "VPSDE",
    "ReverseSDE",
    "ScalarSDE",
    "ScoreFn",
    "SubVPSDE",
    "batch_broadcast",
    "randn_like",
]
