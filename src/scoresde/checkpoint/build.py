"""Deprecated: the config -> model factory moved to :mod:`scoresde.config.factory` (import from
:mod:`scoresde.config`); re-exported here."""

from ..config.factory import (
    NETWORK_DATA_KEYS,
    NETWORKS,
    PHASE_SPACE_SDES,
    build_network,
    build_score_model,
    build_sde,
    default_dtype,
)
from ..config.resolve import ConfigLike, resolve_config

__all__ = ["NETWORKS", "NETWORK_DATA_KEYS", "PHASE_SPACE_SDES", "ConfigLike", "build_network", "build_score_model",
           "build_sde", "default_dtype", "resolve_config"]
