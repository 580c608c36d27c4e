"""Training checkpoints of a run folder: resuming from the newest valid one, and weights to fine-tune from.

The run-folder layout (``checkpoints/checkpoint_<step>/``, ``checkpoints/preempt_<step>/``, written atomically)
is :mod:`scoresde.checkpoint.run`'s. Each checkpoint is a directory in scoresde's own format
(:mod:`scoresde.checkpoint.native`), so ``scoresde sample`` and :func:`scoresde.load_checkpoint` read training
checkpoints directly. A directory that does not load (truncated or torn files, another format) is reported and
skipped when resuming.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ..checkpoint.errors import IncompatibleCheckpointError
from ..checkpoint.native import TrainingState, load_training_state
from ..checkpoint.original import original_state_dicts, read_original_checkpoint
from ..checkpoint.run import checkpoint_dir, list_checkpoints, newest_loadable
from ..checkpoint.state_dict import load_state_dict

__all__ = ["InitWeights", "find_resumable", "read_init_weights"]


def _complete_training_state(path: Path, map_location: str | torch.device) -> TrainingState:
    state = load_training_state(path, map_location)
    if state.ema_state is None or state.optimizer_state is None or state.trainer_state is None:
        raise IncompatibleCheckpointError("it lacks the EMA, optimizer or trainer state")
    return state


def find_resumable(workdir: str | Path, map_location: str | torch.device = "cpu") -> TrainingState | None:
    """The newest checkpoint of ``workdir`` that loads completely (weights, EMA, optimizer and trainer state), or
    ``None``; unusable ones are reported with a warning that names them, and skipped."""
    return newest_loadable(workdir, lambda path: _complete_training_state(path, map_location))


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
    a checkpoint of another architecture raises :class:`~scoresde.checkpoint.IncompatibleCheckpointError`
    naming the mismatched keys. A checkpoint without EMA weights starts the EMA from its online weights.
    """
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
        if checkpoint_dir(path).is_dir():
            if not list_checkpoints(path):
                raise FileNotFoundError(f"--init-from {path}: the run folder has no checkpoints")
            # newest_loadable raises one line naming each checkpoint when none loads
            path, state = newest_loadable(path, lambda p: (p, load_training_state(p, map_location)))
        else:
            state = load_training_state(path, map_location)
        model_sd, ema_sd, step = state.model_state, state.ema_state, state.step
        updates = int((state.trainer_state or {}).get("ema_num_updates", step)) if ema_sd is not None else 0
        what = f"scoresde checkpoint {path} (step {step})"
        # keys and shapes against the run's network, naming any mismatch
        load_state_dict(net, model_sd, layout="native")
        if ema_sd is not None:
            load_state_dict(net, ema_sd, layout="native")
    ema_sd = model_sd if ema_sd is None else ema_sd
    return InitWeights(dict(model_sd), dict(ema_sd), updates, step, what)
