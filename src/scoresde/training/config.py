"""Deprecated: the typed config schema moved to :mod:`scoresde.config.schema` (import from :mod:`scoresde.config`);
re-exported here."""

from ..config.schema import (
    AMP_MODES,
    FP_MODES,
    FP_WEIGHTINGS,
    IGNORED_KEYS,
    NONFINITE_POLICIES,
    SAMPLING_METHODS,
    SDES,
    SECTIONS,
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    OptimConfig,
    SamplingConfig,
    TrainingConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    validate,
)

__all__ = ["AMP_MODES", "FP_MODES", "FP_WEIGHTINGS", "IGNORED_KEYS", "NONFINITE_POLICIES", "SAMPLING_METHODS",
           "SDES", "SECTIONS", "Config", "ConfigError", "DataConfig", "EvalConfig", "OptimConfig", "SamplingConfig",
           "TrainingConfig", "apply_overrides", "config_from_dict", "load_config", "validate"]
