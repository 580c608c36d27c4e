"""Deprecated: moved to :mod:`scoresde.config.presets.original` (``get_preset`` is now ``original_preset``,
``list_presets`` ``list_original_presets``); re-exported here under the old names."""

from ..config.presets.original import DEFAULTS, merge_config
from ..config.presets.original import list_original_presets as list_presets
from ..config.presets.original import original_preset as get_preset

__all__ = ["DEFAULTS", "get_preset", "list_presets", "merge_config"]
