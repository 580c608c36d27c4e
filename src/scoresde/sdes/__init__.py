"""Forward SDEs: the interface (:class:`SDE`), the scalar Score SDE families and their noise schedules."""

from .base import SDE, ReverseSDE, ScoreFn, batch_broadcast, randn_like, same_sde
from .phase_space import CLD, PSLD, RecipeSDE
from .scalar import VESDE, VPSDE, DiscreteVPSDE, ScalarSDE, SubVPSDE

__all__ = [
    "CLD",
    "PSLD",
    "SDE",
    "VESDE",
    "VPSDE",
    "DiscreteVPSDE",
    "RecipeSDE",
    "ReverseSDE",
    "ScalarSDE",
    "ScoreFn",
    "SubVPSDE",
    "batch_broadcast",
    "randn_like",
    "same_sde",
]
