"""Model adapters: a network plus its SDE, answering score / eps / x0 / v predictions with conditioning
(:class:`DiffusionModel`; :class:`ScoreModel` for Score SDE's networks, :class:`PhaseSpaceScoreModel` for PSLD/CLD,
:func:`as_model` for a plain ``score_fn(x, t)``)."""

from .adapter import (
    PREDICTIONS,
    CountingModel,
    DiffusionModel,
    ScoreFunctionModel,
    as_model,
    check_cond,
    slice_cond,
)
from .classifier import ClassifierModel
from .phase_space_model import PhaseSpaceScoreModel
from .score_model import (
    LABEL_TYPES,
    OUTPUT_TYPES,
    LabelType,
    OutputType,
    ScoreModel,
)

__all__ = ["LABEL_TYPES", "OUTPUT_TYPES", "PREDICTIONS", "ClassifierModel", "CountingModel", "DiffusionModel",
           "LabelType", "OutputType", "PhaseSpaceScoreModel", "ScoreFunctionModel", "ScoreModel", "as_model",
           "check_cond", "slice_cond"]
