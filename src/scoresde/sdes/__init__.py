"""Forward SDEs: the interface (:class:`SDE`, ``base.py``), the scalar Score SDE families and their noise schedules
(``scalar.py``), the linear complete-recipe SDE (``recipe.py``, its solver steps in ``recipe_solvers.py``, its matrix
helpers in ``linalg.py``) and its instances PSLD (``psld.py``) and CLD (``cld.py``); any scalar schedule given by
``alpha(t)``, ``sigma(t)`` (``schedule.py``) and the named ones on it: EDM (``edm.py``), the cosine VP (``cosine.py``)
and rectified flow (``rectified_flow.py``)."""

from .base import SDE, ReverseSDE, ScoreFn, batch_broadcast, randn_like, same_sde
from .cld import CLD
from .cosine import CosineVP
from .edm import EDM
from .psld import PSLD
from .recipe import RecipeSDE
from .rectified_flow import RectifiedFlow
from .scalar import VESDE, VPSDE, DiscreteVPSDE, ScalarSDE, SubVPSDE
from .schedule import ScheduleSDE

#: ``training.sde`` name -> SDE class (each class's :attr:`~SDE.config_name`): the one table of SDE names; the config
#: factory builds them with :meth:`SDE.from_model_config`, the config schema takes its choices from it
CONFIG_SDES: dict[str, type[SDE]] = {cls.config_name: cls for cls in (VESDE, VPSDE, SubVPSDE, PSLD, CLD, DiscreteVPSDE,
                                                                     EDM, CosineVP, RectifiedFlow)
                                     if cls.config_name is not None}

__all__ = [
    "CLD",
    "CONFIG_SDES",
    "EDM",
    "PSLD",
    "SDE",
    "VESDE",
    "VPSDE",
    "CosineVP",
    "DiscreteVPSDE",
    "RecipeSDE",
    "RectifiedFlow",
    "ReverseSDE",
    "ScalarSDE",
    "ScheduleSDE",
    "ScoreFn",
    "SubVPSDE",
    "batch_broadcast",
    "randn_like",
    "same_sde",
]
