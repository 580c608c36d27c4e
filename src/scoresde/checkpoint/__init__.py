"""Checkpoint I/O: every kind of checkpoint as a ready score model, scoresde's own format, run folders.

* :func:`load_checkpoint` ``(path, config=None)``: a run folder (its newest checkpoint that loads), a scoresde
  checkpoint directory, an original Score SDE ``.pth`` or a PSLD Lightning ``.ckpt`` (both with ``config``) ->
  the model (:class:`~scoresde.models.ScoreModel` / :class:`~scoresde.models.PhaseSpaceScoreModel`) with
  ``model.step`` and the typed ``model.config``. Also ``scoresde.load_checkpoint``.
* :func:`load_score_sde_checkpoint` ``(path, config)`` / :func:`load_psld_checkpoint` ``(path, config)``: the
  same for one file of the original Score SDE code / of the PSLD code (Pandey & Mandt 2023).
* :func:`save_checkpoint` / :func:`load_training_state`: scoresde's format (a directory of safetensors weights and a
  ``checkpoint.json`` with the sha256 of every file, written atomically: :mod:`.native`); :mod:`.run`: the
  checkpoints of a run folder, read by every loader through one fallback to the newest valid one.
* :func:`convert_original_checkpoint`: original ``.pth`` -> scoresde directory.
* :mod:`.state_dict`: the one strict state-dict loader and its key report (original ``all_modules`` keys or ours);
  :mod:`.files`: reading ``torch.save`` files with ``weights_only=True`` and one clear error per failure
  (:mod:`.errors`).

Configs are resolved and built by :mod:`scoresde.config` (``resolve_config``, ``build_score_model``).
"""

from .errors import (
    CorruptCheckpointError,
    IncompatibleCheckpointError,
    NotACheckpointError,
    SkippedCheckpointWarning,
    UnsafeCheckpointError,
)
from .files import load_weights_only
from .load import load_checkpoint
from .native import (
    TrainingState,
    convert_original_checkpoint,
    load_checkpoint_directory,
    load_training_state,
    read_original_training_state,
    remap_optimizer_state,
    save_checkpoint,
)
from .original import guess_architecture, load_score_sde_checkpoint, read_original_checkpoint
from .psld import (
    is_lightning_checkpoint,
    load_psld_checkpoint,
    psld_state_dicts,
    read_psld_checkpoint,
    read_psld_training_state,
)
from .run import list_checkpoints, save_training_checkpoint
from .state_dict import KeyReport, key_report, load_state_dict

__all__ = [
    "CorruptCheckpointError",
    "IncompatibleCheckpointError",
    "KeyReport",
    "NotACheckpointError",
    "SkippedCheckpointWarning",
    "TrainingState",
    "UnsafeCheckpointError",
    "convert_original_checkpoint",
    "guess_architecture",
    "is_lightning_checkpoint",
    "key_report",
    "list_checkpoints",
    "load_checkpoint",
    "load_checkpoint_directory",
    "load_psld_checkpoint",
    "load_score_sde_checkpoint",
    "load_state_dict",
    "load_training_state",
    "load_weights_only",
    "psld_state_dicts",
    "read_original_checkpoint",
    "read_original_training_state",
    "read_psld_checkpoint",
    "read_psld_training_state",
    "remap_optimizer_state",
    "save_checkpoint",
    "save_training_checkpoint",
]
