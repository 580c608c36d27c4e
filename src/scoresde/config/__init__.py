"""Configs: the typed schema, every preset behind one registry, the one resolver and the config -> model factory.

* :mod:`.schema`: :class:`Config` and its sections (dataclasses), :func:`config_from_dict`, :func:`apply_overrides`,
  :func:`load_config` (any source -> a validated :class:`Config`).
* :mod:`.presets`: every preset (original Score SDE, ours, phase space, FP) by name: :func:`get_preset`,
  :func:`list_presets`, :func:`describe_preset` (its one line, stored beside its definition).
* :mod:`.resolve`: :func:`resolve_config`, the one resolver (dict | Config | ``.json`` | original ``configs/**.py``
  | preset name -> nested dicts) that every loader, the factory and the CLI use.
* :mod:`.pyfile`: the reader of original ``configs/**.py`` files that never executes them.
* :mod:`.factory`: :func:`build_network`, :func:`build_sde`, :func:`build_score_model`.

This package sits below ``training``, ``checkpoint``, ``evaluation`` and ``cli``, and imports none of them.
"""

from .factory import (
    NETWORKS,
    build_network,
    build_score_model,
    build_sde,
)
from .presets import (
    PRESETS,
    RawConfig,
    describe_preset,
    get_preset,
    list_original_presets,
    list_presets,
    merge_config,
)
from .pyfile import parse_config_file, parse_config_source
from .resolve import ConfigLike, resolve_config
from .schema import (
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

__all__ = [
    "NETWORKS",
    "PRESETS",
    "Config",
    "ConfigError",
    "ConfigLike",
    "DataConfig",
    "EvalConfig",
    "OptimConfig",
    "RawConfig",
    "SamplingConfig",
    "TrainingConfig",
    "apply_overrides",
    "build_network",
    "build_score_model",
    "build_sde",
    "config_from_dict",
    "describe_preset",
    "get_preset",
    "list_original_presets",
    "list_presets",
    "load_config",
    "merge_config",
    "parse_config_file",
    "parse_config_source",
    "resolve_config",
    "validate",
]
