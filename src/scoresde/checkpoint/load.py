"""``scoresde.load_checkpoint``: one loader for every kind of checkpoint path."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import ConfigLike
from ..models import DiffusionModel
from .diffusers.folder import is_diffusers_folder
from .diffusers.load import load_diffusers
from .edm import load_edm_checkpoint
from .edm_pickle import is_edm_pickle
from .errors import IncompatibleCheckpointError
from .files import load_weights_only
from .original import is_original_checkpoint, score_sde_model
from .psld import is_lightning_checkpoint, psld_model
from .run import load_directory

__all__ = ["load_checkpoint"]


def load_checkpoint(
    path: str | Path,
    config: ConfigLike | None = None,
    *,
    use_ema: bool = True,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> DiffusionModel:
    """Load any checkpoint as a ready score model (EMA weights by default).

    ``path`` is one of:

    * a run folder (``scoresde train``/``import --workdir``): its newest checkpoint that loads, among
      ``checkpoints/checkpoint_<step>/`` and ``checkpoints/preempt_<step>/``; a truncated, bit-flipped or torn one
      (every file is checked against the sha256 its checkpoint recorded) is skipped with one
      :class:`~scoresde.checkpoint.errors.SkippedCheckpointWarning` naming it and why
      (:func:`~scoresde.checkpoint.run.load_run`, which every ``scoresde`` command that reads a run uses too);
    * one scoresde checkpoint directory (the config is stored in it);
    * an original Score SDE ``.pth`` file (:func:`~scoresde.checkpoint.load_score_sde_checkpoint`), which needs
      ``config``;
    * a PSLD PyTorch Lightning ``.ckpt`` file (:func:`~scoresde.checkpoint.load_psld_checkpoint`), which needs
      ``config``;
    * a local diffusers pipeline or model folder (:func:`scoresde.load_diffusers` with its defaults; call that
      function for its ``sde``/``continuous`` options);
    * an NVlabs/edm network pickle (``network-snapshot-*.pkl``, ``edm-*``/``baseline-*``: EDMPrecond, VPPrecond or
      VEPrecond around SongUNet), read without executing anything from it, as a model on
      :class:`scoresde.sdes.EDM` (:func:`~scoresde.checkpoint.edm.load_edm_checkpoint`); it carries its own config.

    Files are read with ``torch.load(weights_only=True)``: nothing in them is executed. ``config`` is anything
    :func:`scoresde.config.resolve_config` takes (a preset name, a ``.json``/original ``.py`` file, a dict, a
    :class:`~scoresde.config.Config`). ``dtype`` as in :func:`~scoresde.checkpoint.load_score_sde_checkpoint`.

    Returns:
        the model adapter (a :class:`~scoresde.models.ScoreModel` or
        :class:`~scoresde.models.PhaseSpaceScoreModel`) in eval mode, with ``model.step`` (the training step) and
        ``model.config`` (the typed :class:`~scoresde.config.Config`).

    Raises:
        ValueError: a checkpoint file without ``config``, or a ``config`` for a directory (which carries its own).
        IncompatibleCheckpointError (a ``ValueError``): weights that do not match the config's network (the keys
            are named); a file that is truncated or corrupt, not a checkpoint, or refused for code-executing
            globals; a run folder none of whose checkpoints loads.
        FileNotFoundError: ``path`` does not exist, or a run folder without checkpoints.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist (expected a run folder, a checkpoint directory, "
                                "a Score SDE .pth or a PSLD .ckpt file)")
    if path.is_dir():
        if config is not None:
            raise ValueError(f"{path} is a directory, which carries its own config: pass config= only for a Score "
                             "SDE .pth or PSLD .ckpt file")
        if is_diffusers_folder(path):  # a local Hugging Face diffusers pipeline or model folder
            return load_diffusers(path, map_location=map_location, dtype=dtype)
        return load_directory(path, use_ema=use_ema, map_location=map_location, dtype=dtype)
    if is_edm_pickle(path):
        if config is not None or not use_ema:
            raise ValueError(f"{path} is an EDM network pickle, which holds only its EMA network and its own "
                             "architecture: pass neither config= nor use_ema=False")
        return load_edm_checkpoint(path, map_location=map_location, dtype=dtype)
    ckpt = load_weights_only(path, map_location)
    if is_lightning_checkpoint(ckpt):
        kind, build = "PSLD Lightning", psld_model
    elif is_original_checkpoint(ckpt):
        kind, build = "Score SDE", score_sde_model
    else:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise IncompatibleCheckpointError(f"{path} is neither a Score SDE checkpoint (a dict with a 'model' state "
                                          f"dict) nor a PSLD Lightning one (a 'state_dict' and 'global_step'): {keys}")
    if config is None:
        raise ValueError(f"{path} is a {kind} checkpoint, which stores no config: pass config= (a preset name, a "
                         ".json or original configs/**.py file, or a dict)")
    return build(ckpt, config, use_ema=use_ema, dtype=dtype)
