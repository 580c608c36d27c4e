"""``kill -9`` at random points of a training run (between steps, and inside checkpoint writes: after a temporary
file holds its content, before it is moved into place), then the same command again until it finishes: the final
weights, EMA, optimizer state and ``metrics.jsonl`` are bit-identical to an uninterrupted run's, and no temporary
file or folder is left (issue 22 item 8). The kill points are drawn from a fixed seed, so a failure reproduces."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest
import torch

from scoresde.checkpoint import list_checkpoints, load_training_state
from scoresde.config import load_config
from scoresde.training import Trainer

from .driver import run_forked

#: 12 steps, a checkpoint every 3 (pre-emption) / 6 (numbered) steps: 4 checkpoints of 5 files = 20 file writes
SMALL = ["model.hidden=16", "model.depth=1", "training.batch_size=32", "training.n_iters=12",
         "training.snapshot_freq=6", "training.snapshot_freq_for_preemption=3", "training.eval_freq=0",
         "training.snapshot_sampling=false", "training.log_freq=2", "optim.warmup=4"]
FILES_PER_CHECKPOINT = 5  # model, ema, optimizer, trainer, checkpoint.json


def run_cli(fault: str, workdir: Path) -> tuple[int, str]:
    """``scoresde train`` of the toy config with ``fault`` injected, in a forked child (tests/faults/driver.py)."""
    argv = ["train", "--config", "toy/checkerboard", "--workdir", str(workdir), "--quiet",
            *[a for s in SMALL for a in ("--set", s)]]
    return run_forked(fault, argv, workdir.parent / f"{workdir.name}.log")


def _records(workdir: Path) -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "train/steps_per_s"} for line in lines]


def _final_state(workdir: Path) -> dict[str, torch.Tensor]:
    _, _, path = max(list_checkpoints(workdir))
    state = load_training_state(path)
    out = {f"model.{k}": v for k, v in state.model_state.items()}
    out.update({f"ema.{k}": v for k, v in (state.ema_state or {}).items()})
    for i, entry in state.optimizer_state["state"].items():
        out.update({f"optim.{i}.{k}": torch.as_tensor(v) for k, v in entry.items()})
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("uninterrupted")
    Trainer(load_config("toy/checkerboard", SMALL), workdir).train()
    return workdir


def test_random_kills_between_steps_and_inside_checkpoint_writes_resume_bit_exactly(uninterrupted, tmp_path):
    rng = random.Random(22)
    faults = [f"write:{rng.randint(1, FILES_PER_CHECKPOINT * 2)}", f"step:{rng.randint(1, 11)}",
              f"write:{rng.randint(1, FILES_PER_CHECKPOINT * 2)}", f"step:{rng.randint(1, 11)}"]
    workdir = tmp_path / "run"
    killed = 0
    for fault in faults:
        code, err = run_cli(fault, workdir)
        if code == 0:  # the kill point lies beyond what this run had left to do
            break
        assert code == -signal.SIGKILL, (fault, err)
        assert "Traceback" not in err, err
        killed += 1
    assert killed >= 3, faults
    code, err = run_cli("none", workdir)
    assert code == 0 and "Traceback" not in err, err
    reference, resumed = _final_state(uninterrupted), _final_state(workdir)
    assert reference.keys() == resumed.keys()
    for k in reference:
        assert torch.equal(reference[k], resumed[k]), k
    assert _records(workdir) == _records(uninterrupted)
    # nothing of the interrupted writes is left: no hidden temporary file or folder anywhere in the run folder
    leftovers = [p for p in workdir.rglob(".*") if p.name != ".gitignore"]
    assert leftovers == [], leftovers


@pytest.mark.parametrize("n", range(1, FILES_PER_CHECKPOINT + 1))
def test_a_kill_inside_any_file_write_leaves_no_torn_checkpoint(tmp_path, n) -> None:
    """Kill the process inside the ``n``-th file write of its first checkpoint (step 3): no checkpoint is in place,
    only the dead writer's hidden folder, which the next start removes before it trains from step 0 again."""
    workdir = tmp_path / "run"
    code, err = run_cli(f"write:{n}", workdir)
    assert code == -signal.SIGKILL, err
    assert list_checkpoints(workdir) == []  # the checkpoint is not in place before its last file is
    hidden = list((workdir / "checkpoints").glob(".*"))
    assert len(hidden) == 1 and hidden[0].is_dir(), hidden
    code, err = run_cli("step:4", workdir)
    assert code == -signal.SIGKILL and "resuming" not in err, err
    assert [p.name for p in (workdir / "checkpoints").iterdir()] == ["preempt_3"]
