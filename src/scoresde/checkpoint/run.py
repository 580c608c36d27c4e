"""Run folders: the training checkpoints of a workdir, and finding the newest one that loads.

A run folder (``scoresde train``/``import --workdir``) holds the run's ``config.json`` and a ``checkpoints/`` folder
of checkpoint directories in scoresde's own format (:mod:`scoresde.checkpoint.native`):

* ``checkpoints/checkpoint_<step>/`` every ``snapshot_freq`` steps (kept);
* ``checkpoints/preempt_<step>/`` every ``snapshot_freq_for_preemption`` steps (removed once a newer checkpoint
  of either kind is written).

A checkpoint is written into a fresh hidden directory (``.<kind>_<step>.pid<PID>@<host>@<random>``) and renamed
into place only when complete (every file fsynced, ``checkpoint.json`` last, with the sha256 of every file), so a
crash never leaves a half-written checkpoint under a valid name. Such a hidden directory left by an interrupted write
never matches a checkpoint name; it is removed by the next reader or writer of the run
(:func:`remove_interrupted_writes`) once its writer is gone.

Every reader of a run folder (resuming training, :func:`scoresde.load_checkpoint`, every ``scoresde`` command)
goes through :func:`newest_loadable`: the newest checkpoint that loads and whose files match their checksums is
used, and each newer one that does not (truncated, bit-flipped or torn files, another format) is named in one
:class:`~scoresde.checkpoint.errors.SkippedCheckpointWarning` with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..models import DiffusionModel
from .atomic import StorageError
from .errors import IncompatibleCheckpointError, SkippedCheckpointWarning
from .native import load_checkpoint_directory, save_checkpoint

__all__ = ["checkpoint_dir", "is_run_folder", "list_checkpoints", "load_directory", "load_run", "newest_loadable",
           "remove_interrupted_writes", "save_training_checkpoint"]

_NAME = re.compile(r"(checkpoint|preempt)_(\d+)")
#: the hidden directory a checkpoint is written into (``pid<PID>@<host>@`` absent in those of older versions)
_TEMP = re.compile(r"\.(?:checkpoint|preempt)_\d+\.(?:pid(\d+)@(.*)@)?[^/]*")
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


def _process_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 probes without sending anything); ``True`` where
    that cannot be asked (not POSIX: Windows' ``os.kill`` would end the process), leaving the age rule."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    except OSError:  # e.g. a pid out of range: no such process
        return False
    return True


def _last_modified(directory: Path) -> float:
    """The newest modification time of ``directory`` and its entries (a file being written updates its own)."""
    times = [directory.stat().st_mtime]
    for entry in directory.iterdir():
        try:
            times.append(entry.stat().st_mtime)
        except FileNotFoundError:  # renamed or removed meanwhile
            pass
    return max(times)


def remove_interrupted_writes(workdir: str | Path, *, stale_after_s: float = 3600.0) -> list[Path]:
    """Remove the hidden directories that interrupted checkpoint writes (a kill, a power cut) left in
    ``workdir/checkpoints``; return the removed paths.

    Use it before reading or writing a run's checkpoints (:func:`newest_loadable`, :func:`load_run` and
    :func:`save_training_checkpoint` call it). A directory is removed when the process that wrote it (the
    ``pid<PID>@<host>`` in its name) no longer runs on this host, or, for a writer on another host or an unnamed
    one, when nothing in it changed for ``stale_after_s`` seconds (default one hour, far longer than any checkpoint
    write): a write still in progress is never touched. A directory that cannot be removed (a read-only run
    folder) is left as it is; it never matches a checkpoint name, so it is never loaded.
    """
    root = checkpoint_dir(workdir)
    removed = []
    if not root.is_dir():
        return removed
    host, now = socket.gethostname(), time.time()
    for path in root.iterdir():
        m = _TEMP.fullmatch(path.name)
        if not m or not path.is_dir():
            continue
        try:
            dead = m.group(1) is not None and m.group(2) == host and not _process_running(int(m.group(1)))
            if dead or now - _last_modified(path) > stale_after_s:
                shutil.rmtree(path)
                removed.append(path)
        except OSError:  # removed by another reader meanwhile, or a read-only run folder
            pass
    return removed


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else '(no message)'}"


def newest_loadable(workdir: str | Path, load: Callable[[Path], T]) -> T | None:
    """``load(path)`` of the newest checkpoint of ``workdir`` for which it succeeds, or ``None`` for a run without
    checkpoints: the one fallback every reader of a run folder uses.

    Leftovers of interrupted writes are removed first (:func:`remove_interrupted_writes`). Every newer checkpoint
    that fails (truncated, bit-flipped or torn files, a foreign or partial directory) is reported with one
    :class:`~scoresde.checkpoint.errors.SkippedCheckpointWarning` line naming it and the first line of the error,
    and skipped.

    Raises:
        IncompatibleCheckpointError: the run has checkpoints but none loads (one line naming each and why).
    """
    remove_interrupted_writes(workdir)
    failures = []
    for _, _, path in list_checkpoints(workdir):
        try:
            result = load(path)
        except Exception as err:  # truncated/corrupt files, torn step metadata, foreign or partial directory
            failures.append((path, _first_line(err)))
            continue
        for skipped, why in failures:
            warnings.warn(f"skipping unusable checkpoint {skipped}: {why}", SkippedCheckpointWarning, stacklevel=3)
        return result
    if not failures:
        return None
    raise IncompatibleCheckpointError(f"none of the checkpoints of run folder {workdir} loads: " + "; ".join(
        f"{path.name}: {why}" for path, why in failures))


def load_run(
    workdir: str | Path,
    step: int | None = None,
    *,
    use_ema: bool = True,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> tuple[DiffusionModel, Path]:
    """``(model, checkpoint directory)`` of a run folder: its newest valid checkpoint (:func:`newest_loadable`, with
    its warnings), or with ``step`` the numbered ``checkpoint_<step>`` exactly (no fallback: its errors are
    raised).

    What every command that reads a run (``sample``, ``likelihood``, ``eval``, ``export``, ``inpaint``, ...) and
    :func:`scoresde.load_checkpoint` use; the arguments and the model as in
    :func:`~scoresde.checkpoint.native.load_checkpoint_directory`.

    Raises:
        FileNotFoundError: no checkpoints, or none of ``step`` (the available steps are listed).
        IncompatibleCheckpointError: none of the checkpoints loads, or the one of ``step`` does not.
    """
    workdir = Path(workdir)

    def load(directory: Path) -> tuple[DiffusionModel, Path]:
        model = load_checkpoint_directory(directory, use_ema=use_ema, map_location=map_location, dtype=dtype)
        return model, directory

    remove_interrupted_writes(workdir)
    found = list_checkpoints(workdir)
    if not found:
        raise FileNotFoundError(f"run folder {workdir} has no checkpoints yet (checkpoints/checkpoint_<step>/ or "
                                "preempt_<step>/)")
    if step is None:
        return newest_loadable(workdir, load)  # type: ignore[return-value]  # not None: there are checkpoints
    for s, kind, path in found:
        if s == step and kind == "checkpoint":
            return load(path)
    raise FileNotFoundError(f"no checkpoint of step {step} in {workdir}; available steps: "
                            f"{sorted({s for s, _, _ in found})}")


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
    if not is_run_folder(path):
        return load_checkpoint_directory(path, use_ema=use_ema, map_location=map_location, dtype=dtype)
    return load_run(path, use_ema=use_ema, map_location=map_location, dtype=dtype)[0]


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
    """Write ``checkpoints/<kind>_<step>`` atomically (a fresh hidden directory named after this process, then
    rename); return its path.

    Leftovers of interrupted writes are removed first (:func:`remove_interrupted_writes`); pre-emption checkpoints
    older than ``step`` are removed once the new one is in place.
    """
    if kind not in ("checkpoint", "preempt"):
        raise ValueError(f"kind must be 'checkpoint' or 'preempt', got {kind!r}")
    root = checkpoint_dir(workdir)
    root.mkdir(parents=True, exist_ok=True)
    remove_interrupted_writes(workdir)
    target = root / f"{kind}_{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.pid{os.getpid()}@{socket.gethostname()}@", dir=root))
    try:
        save_checkpoint(tmp, net, config, step=step, ema=ema_state, optimizer=optimizer, trainer_state=trainer_state)
        if target.exists():  # the same step saved again (e.g. after a resume): identical content
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, StorageError):  # name the checkpoint, not the hidden folder it was written in
            raise StorageError(err.errno, err.strerror, str(target)) from err
        raise
    for s, k, path in list_checkpoints(workdir):  # older pre-emption checkpoints are superseded
        if k == "preempt" and s < step:
            shutil.rmtree(path, ignore_errors=True)
    return target
