"""Checkpoints: loading original Score SDE checkpoints exactly, and scoresde's own safetensors + JSON format.

* :func:`load_score_sde_checkpoint` ``(path, config)`` -> :class:`LoadedCheckpoint` ``(model, step, config)``
  for a ``.pth`` file of the original code; ``config`` is a dict, a ``.json``/original ``configs/**.py`` path or
  a preset name. Only ``torch.load(weights_only=True)`` is used.
* :func:`save_checkpoint` / :func:`load_checkpoint` / :func:`load_training_state`: scoresde's format (a
  directory of safetensors weights and a JSON config, written atomically).
* :func:`convert_original_checkpoint`: original ``.pth`` -> scoresde directory.
* :func:`load_psld_checkpoint` ``(path, config)``: a PyTorch Lightning ``.ckpt`` of the PSLD code (Pandey & Mandt
  2023) as a :class:`~scoresde.models.PhaseSpaceScoreModel` (``scoresde.checkpoint.psld``).
"""

from ..nets.layers import IncompatibleCheckpointError
from .build import build_network, build_score_model, build_sde, resolve_config
from .native import (
    TrainingState,
    convert_original_checkpoint,
    load_checkpoint,
    load_training_state,
    read_original_training_state,
    remap_optimizer_state,
    save_checkpoint,
)
from .original import LoadedCheckpoint, guess_architecture, load_score_sde_checkpoint, read_original_checkpoint
from .psld import (
    is_lightning_checkpoint,
    load_psld_checkpoint,
    psld_state_dicts,
    read_psld_checkpoint,
    read_psld_training_state,
)

__all__ = [
    "IncompatibleCheckpointError",
    "LoadedCheckpoint",
    "TrainingState",
    "build_network",
    "build_score_model",
    "build_sde",
    "convert_original_checkpoint",
    "guess_architecture",
    "is_lightning_checkpoint",
    "load_checkpoint",
    "load_psld_checkpoint",
    "load_score_sde_checkpoint",
    "load_training_state",
    "psld_state_dicts",
    "read_original_checkpoint",
    "read_original_training_state",
    "read_psld_checkpoint",
    "read_psld_training_state",
    "remap_optimizer_state",
    "resolve_config",
    "save_checkpoint",
]
