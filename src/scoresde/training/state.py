"""Training checkpoints in a workdir, and finding the newest valid one to resume from.

Each checkpoint is a directory in scoresde's own format (:mod:`scoresde.checkpoint.native`: safetensors weights,
JSON config, ``optimizer.pt`` and ``trainer.pt`` read with ``weights_only=True``), so ``scoresde sample`` and
:func:`scoresde.load_checkpoint` read training checkpoints directly:

* ``checkpoints/checkpoint_<step>/`` every ``snapshot_freq`` steps (kept);
* ``checkpoints/preempt_<step>/`` every ``snapshot_freq_for_preemption`` steps (removed once a newer checkpoint
  of either kind is written).

A checkpoint is written into a fresh hidden directory and renamed into place only when complete (every file
fsynced, ``config.json`` last), so a crash never leaves a half-written checkpoint under a valid name. A directory
that does not load (truncated or torn files, another format) is reported and skipped when resuming.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..checkpoint.native import TrainingState, load_training_state, save_checkpoint

_NAME = re.compile(r"(checkpoint|preempt)_(\d+)")


def checkpoint_dir(workdir: str | Path) -> Path:
    """``workdir/checkpoints``."""
    return Path(workdir) / "checkpoints"


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


def find_resumable(workdir: str | Path, map_location: str | torch.device = "cpu") -> TrainingState | None:
    """The newest checkpoint of ``workdir`` that loads completely, or ``None``; unusable ones are reported with a
    warning that names them, and skipped."""
    for _, _, path in list_checkpoints(workdir):
        try:
            state = load_training_state(path, map_location)
        except Exception as err:  # truncated safetensors, torn step metadata, foreign or partial directory
            warnings.warn(f"skipping unusable checkpoint {path}: {type(err).__name__}: {err}", stacklevel=2)
            continue
        if state.ema_state is None or state.optimizer_state is None or state.trainer_state is None:
            warnings.warn(f"skipping checkpoint {path}: it lacks the EMA, optimizer or trainer state", stacklevel=2)
            continue
        return state
    return None


class InitWeights(NamedTuple):
    """Weights to start a fine-tuning run from (:func:`read_init_weights`)."""

    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor]
    ema_num_updates: int
    step: int
    description: str


def read_init_weights(source: str | Path, net: nn.Module, map_location: str | torch.device = "cpu") -> InitWeights:
    """Online and EMA weights of another run for fine-tuning ``net`` (``scoresde train --init-from``).

    ``source`` is a scoresde run folder (its newest loadable checkpoint), one scoresde checkpoint directory, or an
    original Score SDE checkpoint file (``checkpoint_<n>.pth``, read with ``torch.load(weights_only=True)``; keys
    mapped as :func:`scoresde.checkpoint.original_state_dicts`). Keys and shapes are checked against ``net``:
    a checkpoint of another architecture raises :class:`~scoresde.nets.layers.IncompatibleCheckpointError`
    naming the mismatched keys. A checkpoint without EMA weights starts the EMA from its online weights.
    """
    from ..checkpoint.original import original_state_dicts, read_original_checkpoint
    from ..nets.ncsn import load_original_state_dict

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"--init-from {path}: no such run folder, checkpoint directory or file")
    if path.is_file():
        ckpt = read_original_checkpoint(path, map_location)
        model_sd, ema_sd = original_state_dicts(net, ckpt)  # validated against net there
        step = int(ckpt.get("step", 0))
        ema = ckpt.get("ema")
        updates = int(ema.get("num_updates", step)) if isinstance(ema, Mapping) else 0
        what = f"Score SDE checkpoint {path} (step {step})"
    else:
        if (path / "checkpoints").is_dir():
            found = list_checkpoints(path)
            if not found:
                raise FileNotFoundError(f"--init-from {path}: the run folder has no checkpoints")
            path = found[0][2]
        state = load_training_state(path, map_location)
        model_sd, ema_sd, step = state.model_state, state.ema_state, state.step
        updates = int((state.trainer_state or {}).get("ema_num_updates", step)) if ema_sd is not None else 0
        what = f"scoresde checkpoint {path} (step {step})"
        load_original_state_dict(net, model_sd)  # keys and shapes against the run's network, naming any mismatch
        if ema_sd is not None:
            load_original_state_dict(net, ema_sd)
    ema_sd = model_sd if ema_sd is None else ema_sd
    return InitWeights(dict(model_sd), dict(ema_sd), updates, step, what)
