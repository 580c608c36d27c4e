"""Training checkpoints: atomic writes, weights-only loading, and finding the newest valid one to resume from.

A workdir holds ``checkpoints/checkpoint_<step>.pt`` (kept every ``snapshot_freq`` steps) and
``checkpoints/latest.pt`` (overwritten every ``snapshot_freq_for_preemption`` steps). Each file is written to a
temporary file in the same folder, flushed and fsynced, then renamed over the target, so a crash leaves either
the old or the new file, never a torn one. Files are read with ``torch.load(weights_only=True)``: loading never
executes code. A file that does not load (truncated, corrupt, or of another format) is reported and skipped.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

FORMAT = "scoresde-train-v1"
REQUIRED_KEYS = ("format", "step", "model", "ema", "optimizer")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or lacks the training-state keys."""


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``, fsync folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint with ``weights_only=True``; raise :class:`CorruptCheckpointError` if unusable."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CorruptCheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS) or state["format"] != FORMAT:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CorruptCheckpointError(f"checkpoint {path} is not a scoresde training checkpoint (keys: {keys})")
    return state


def checkpoint_dir(workdir: str | Path) -> Path:
    """``workdir/checkpoints``."""
    return Path(workdir) / "checkpoints"


def numbered_path(workdir: str | Path, step: int) -> Path:
    """``workdir/checkpoints/checkpoint_<step>.pt``."""
    return checkpoint_dir(workdir) / f"checkpoint_{step}.pt"


def latest_path(workdir: str | Path) -> Path:
    """``workdir/checkpoints/latest.pt`` (the pre-emption checkpoint)."""
    return checkpoint_dir(workdir) / "latest.pt"


def list_checkpoints(workdir: str | Path) -> list[tuple[int, Path]]:
    """Numbered checkpoints as ``(step, path)``, ascending."""
    found = []
    for p in checkpoint_dir(workdir).glob("checkpoint_*.pt"):
        m = re.fullmatch(r"checkpoint_(\d+)\.pt", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_resumable(workdir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The newest checkpoint of ``workdir`` that loads, or ``None`` if there is none.

    Candidates are ``latest.pt`` and the numbered ones, newest step first; unreadable files are reported with a
    warning naming them and skipped.
    """
    candidates = [p for _, p in reversed(list_checkpoints(workdir))]
    latest = latest_path(workdir)
    states = []
    for path in ([latest] if latest.exists() else []) + candidates:
        try:
            state = load_training_state(path, map_location)
        except CorruptCheckpointError as err:
            warnings.warn(f"skipping unusable checkpoint: {err}", stacklevel=2)
            continue
        states.append(state)
        if path != latest:
            break  # numbered checkpoints are visited newest first: the first good one is the newest good one
    if not states:
        return None
    return max(states, key=lambda s: int(s["step"]))
