"""Run folders: the training checkpoints of a workdir, and finding the newest one that loads.

A run folder (``scoresde train``/``import --workdir``) holds the run's ``config.json`` and a ``checkpoints/`` folder
of checkpoint directories in scoresde's own format (:mod:`scoresde.checkpoint.native`):

* ``checkpoints/checkpoint_<step>/`` every ``snapshot_freq`` steps (kept);
* ``checkpoints/preempt_<step>/`` every ``snapshot_freq_for_preemption`` steps (removed once a newer checkpoint
  of either kind is written).

A checkpoint is written into a fresh hidden directory and renamed into place only when complete (every file
fsynced, ``checkpoint.json`` last), so a crash never leaves a half-written checkpoint under a valid name. A directory
that does not load (truncated or torn files, another format) is reported with a warning and skipped
(:func:`newest_loadable`).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..models import DiffusionModel
from .errors import IncompatibleCheckpointError
from .native import load_checkpoint_directory, save_checkpoint

__all__ = ["checkpoint_dir", "is_run_folder", "list_checkpoints", "load_directory", "newest_loadable",
           "save_training_checkpoint"]

_NAME = re.compile(r"(checkpoint|preempt)_(\d+)")
T = TypeVar("T")


def checkpoint_dir(workdir: str | Path) -> Path:
    """``workdir/checkpoints``."""
    return Path(workdir) / "checkpoints"


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a run folder (a directory with a ``checkpoints/`` folder)."""
    return checkpoint_dir(path).is_dir()


def list_checkpoints(workdir: str | Path) -> list[tuple[int, str, Path]]:
    """Checkpoint directories as ``(step, kind, path)`` with ``kind`` ``'checkpoint'`` or ``'preempt'``, newest
    first (a numbered checkpoint before a pre-emption one of the same step)."""
    found = []
    root = checkpoint_dir(workdir)
    if root.is_dir():
        for p in root.iterdir():
            m = _NAME.fullmatch(p.name)
            if m and p.is_dir():
                found.append((int(m.group(2)), m.group(1), p))
    return sorted(found, key=lambda e: (e[0], e[1] == "checkpoint"), reverse=True)


def newest_loadable(workdir: str | Path, load: Callable[[Path], T]) -> T | None:
    """``load(path)`` of the newest checkpoint of ``workdir`` for which it succeeds, or ``None``; every checkpoint
    that fails (truncated or torn files, a foreign or partial directory) is reported with a warning naming it and
    the error, and skipped."""
    for _, _, path in list_checkpoints(workdir):
        try:
            return load(path)
        except Exception as err:  # truncated safetensors, torn step metadata, foreign or partial directory
            warnings.warn(f"skipping unusable checkpoint {path}: {type(err).__name__}: {err}", stacklevel=3)
    return None


def load_directory(
    path: str | Path,
    *,
    use_ema: bool = True,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> DiffusionModel:
    """A run folder (its newest checkpoint that loads) or one scoresde checkpoint directory as a ready model.

    The directory part of :func:`scoresde.load_checkpoint`, which also reads diffusers folders and checkpoint files;
    arguments and the returned model as there.

    Raises:
        FileNotFoundError: a run folder without checkpoints.
        IncompatibleCheckpointError: a run folder none of whose checkpoints loads, or a directory that does not load.
    """
    path = Path(path)

    def load(directory: Path) -> DiffusionModel:
        return load_checkpoint_directory(directory, use_ema=use_ema, map_location=map_location, dtype=dtype)

    if not is_run_folder(path):
        return load(path)
    if not list_checkpoints(path):
        raise FileNotFoundError(f"run folder {path} has no checkpoints yet (checkpoints/checkpoint_<step>/ or "
                                "preempt_<step>/)")
    model = newest_loadable(path, load)
    if model is None:
        raise IncompatibleCheckpointError(f"none of the checkpoints of run folder {path} loads (see the "
                                          "warnings above)")
    return model


def save_training_checkpoint(
    workdir: str | Path,
    step: int,
    *,
    kind: str,
    net: nn.Module,
    ema_state: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: Mapping[str, Any],
    trainer_state: Mapping[str, Any],
) -> Path:
    """Write ``checkpoints/<kind>_<step>`` atomically (fresh directory, then rename); return its path.

    Pre-emption checkpoints older than ``step`` are removed once the new one is in place.
    """
    if kind not in ("checkpoint", "preempt"):
        raise ValueError(f"kind must be 'checkpoint' or 'preempt', got {kind!r}")
    root = checkpoint_dir(workdir)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{kind}_{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        save_checkpoint(tmp, net, config, step=step, ema=ema_state, optimizer=optimizer, trainer_state=trainer_state)
        if target.exists():  # the same step saved again (e.g. after a resume): identical content
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for s, k, path in list_checkpoints(workdir):  # older pre-emption checkpoints are superseded
        if k == "preempt" and s < step:
            shutil.rmtree(path, ignore_errors=True)
    return target
