"""Deprecated: the original Score SDE presets and the ``configs/**.py`` reader moved to :mod:`scoresde.config`.

This package only re-exports them under their old names: ``get_preset``/``list_presets`` here cover the original
presets only (:func:`scoresde.config.presets.original_preset` / ``list_original_presets``); the one registry of
every preset is :func:`scoresde.config.get_preset` / :func:`scoresde.config.list_presets`.
"""

from ..config.presets.original import list_original_presets as list_presets
from ..config.presets.original import merge_config
from ..config.presets.original import original_preset as get_preset
from ..config.pyfile import parse_config_file, parse_config_source

__all__ = ["get_preset", "list_presets", "merge_config", "parse_config_file", "parse_config_source"]
