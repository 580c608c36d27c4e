"""Forward SDEs: the interface (:class:`SDE`, ``base.py``), the scalar Score SDE families and their noise schedules
(``scalar.py``), the linear complete-recipe SDE (``recipe.py``, its solver steps in ``recipe_solvers.py``, its matrix
helpers in ``linalg.py``) and its instances PSLD (``psld.py``) and CLD (``cld.py``)."""

from .base import SDE, ReverseSDE, ScoreFn, batch_broadcast, randn_like, same_sde
from .cld import CLD
from .psld import PSLD
from .recipe import RecipeSDE
from .scalar import VESDE, VPSDE, DiscreteVPSDE, ScalarSDE, SubVPSDE

#: ``training.sde`` name -> SDE class (each class's :attr:`~SDE.config_name`): the one table of SDE names; the config
#: factory builds them with :meth:`SDE.from_model_config`, the config schema takes its choices from it
CONFIG_SDES: dict[str, type[SDE]] = {cls.config_name: cls for cls in (VESDE, VPSDE, SubVPSDE, PSLD, CLD, DiscreteVPSDE)
                                     if cls.config_name is not None}

__all__ = [
    "CLD",
    "CONFIG_SDES",
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
