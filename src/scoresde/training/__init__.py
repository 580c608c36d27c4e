"""Training: typed configs and presets, resumable rank-sharded data, the :class:`Trainer`, atomic checkpoints."""

from ..config import Config, ConfigError, apply_overrides, config_from_dict, load_config
from .ema import EMA
from .presets import list_all_presets, resolve_preset  # deprecated names, kept for callers
from .state import find_resumable, list_checkpoints, save_training_checkpoint
from .trainer import CompileError, NonFiniteLossError, Trainer, save_samples_png

__all__ = [
    "EMA",
    "CompileError",
    "Config",
    "ConfigError",
    "NonFiniteLossError",
    "Trainer",
    "apply_overrides",
    "config_from_dict",
    "find_resumable",
    "list_all_presets",
    "list_checkpoints",
    "load_config",
    "resolve_preset",
    "save_samples_png",
    "save_training_checkpoint",
]
