"""Score models: a network plus an SDE as ``score_fn(x, t)``, with score / eps / x0 parameterisations."""

from .phase_space import PhaseSpaceScoreModel
from .score_model import (
    LABEL_TYPES,
    OUTPUT_TYPES,
    LabelType,
    OutputType,
    ScoreModel,
    original_conventions,
)

__all__ = ["LABEL_TYPES", "OUTPUT_TYPES", "LabelType", "OutputType", "PhaseSpaceScoreModel", "ScoreModel",
           "original_conventions"]
