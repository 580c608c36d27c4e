"""Deprecated: every preset is in the one registry of :mod:`scoresde.config.presets`, resolved by
:func:`scoresde.config.resolve_config`; the old names are re-exported here.

``OUR_PRESETS`` are the presets that are not original Score SDE configs; ``list_all_presets`` is
:func:`scoresde.config.list_presets` and ``resolve_preset`` is :func:`scoresde.config.resolve_config`.
"""

from types import MappingProxyType

from ..config.presets import FP_BASES, FP_FINETUNE_ITERS, PRESETS, list_original_presets
from ..config.presets import list_presets as list_all_presets
from ..config.resolve import resolve_config as resolve_preset

#: the presets that are not original Score SDE configs (toys, digits, phase space, FP), by name
OUR_PRESETS = MappingProxyType({name: fn for name, fn in PRESETS.items() if name not in set(list_original_presets())})

__all__ = ["FP_BASES", "FP_FINETUNE_ITERS", "OUR_PRESETS", "list_all_presets", "resolve_preset"]
