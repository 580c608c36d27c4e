"""Configs: the original Score SDE training configs as presets (:mod:`scoresde.configs.original`) and a
parser of the original ``configs/**.py`` files that never executes them (:mod:`scoresde.configs.pyfile`)."""

from .original import get_preset, list_presets, merge_config
from .pyfile import parse_config_file, parse_config_source

__all__ = ["get_preset", "list_presets", "merge_config", "parse_config_file", "parse_config_source"]
