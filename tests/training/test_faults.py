"""Faults during training (issue 22): SIGTERM/SIGINT pre-emption checkpoints with bit-exact resumption, the
workdir lock, the non-finite-loss guard (which checkpoint it keeps, ``skip`` with ``training.max_skips``), and a
``metrics.jsonl`` that is strict JSON and identical to an uninterrupted run's after any resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scoresde.checkpoint import list_checkpoints
from scoresde.cli import main
from scoresde.config import ConfigError, load_config
from scoresde.training import NonFiniteLossError, Trainer, TrainingInterrupted, WorkdirLock, WorkdirLockedError
from scoresde.training import lock as lock_module
from scoresde.training import trainer as trainer_module
from scoresde.training.metrics_log import metrics_record, truncate_metrics

SMALL = ["model.hidden=32", "model.depth=1", "training.batch_size=64", "training.n_iters=20",
         "training.snapshot_freq=10", "training.snapshot_freq_for_preemption=5", "training.eval_freq=0",
         "training.snapshot_sampling=false", "training.log_freq=5", "optim.warmup=4"]


def _cfg(*extra: str):
    return load_config("toy/checkerboard", [*SMALL, *extra])


def _reject(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")


def _records(workdir: Path) -> list[dict]:
    """``metrics.jsonl`` parsed strictly (bare NaN/Infinity rejected), without the timing field."""
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=_reject) for line in lines]
    return [{k: v for k, v in r.items() if k != "train/steps_per_s"} for r in records]


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    state = {f"net.{k}": v.detach().clone() for k, v in trainer.model.net.state_dict().items()}
    state.update({f"ema.{k}": v.clone() for k, v in trainer.ema.shadow.items()})
    return state


def _poison_at(monkeypatch, bad) -> dict:
    """Make ``compute_loss`` call ``bad(step)`` first and multiply its loss by the value it returns (1: unchanged)."""
    real, box = trainer_module.compute_loss, {}

    def poisoned(cfg, model, x, **draws):
        return real(cfg, model, x, **draws) * bad(box["trainer"].step)

    monkeypatch.setattr(trainer_module, "compute_loss", poisoned)
    return box


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict[str, torch.Tensor], list[dict]]:
    workdir = tmp_path_factory.mktemp("full")
    tr = Trainer(_cfg(), workdir)
    tr.train()
    return _state(tr), _records(workdir)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sigterm_checkpoints_at_the_step_boundary_and_resumes_bit_exactly(uninterrupted, tmp_path, monkeypatch):
    def bad(step):
        if step == 7:  # delivered in the middle of step 7: the run must finish it, then stop
            os.kill(os.getpid(), signal.SIGTERM)
        return 1.0

    box = _poison_at(monkeypatch, bad)
    box["trainer"] = first = Trainer(_cfg(), tmp_path)
    with pytest.raises(TrainingInterrupted) as info:
        first.train()
    assert (info.value.step, info.value.exit_code, info.value.signum) == (8, 143, signal.SIGTERM)
    assert info.value.checkpoint == tmp_path / "checkpoints" / "preempt_8"
    assert [(s, k) for s, k, _ in list_checkpoints(tmp_path)] == [(8, "preempt")]  # preempt_5 superseded
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    monkeypatch.undo()
    second = Trainer(_cfg(), tmp_path)
    assert second.resume() and second.step == 8
    second.train()
    full_state, full_records = uninterrupted
    _assert_same(_state(second), full_state)
    # the log window of steps 5-7 travelled in the checkpoint: the record of step 10 averages steps 5-9 as before
    assert _records(tmp_path) == full_records


def test_a_second_signal_exits_at_once_without_a_checkpoint(tmp_path, monkeypatch, capsys) -> None:
    def bad(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return 1.0

    box = _poison_at(monkeypatch, bad)
    box["trainer"] = Trainer(_cfg(), tmp_path)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in some test runners' workers
    with pytest.raises(SystemExit) as info:
        box["trainer"].train()
    assert info.value.code == 130
    assert capsys.readouterr().err.strip() == "SIGINT received again: exiting at once without a checkpoint"
    assert list_checkpoints(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is before  # the trainer's handler was removed again
    assert Trainer(_cfg(), tmp_path).resume() is False  # the lock was released


def _start_cli_training(workdir: Path) -> subprocess.Popen:
    over = [*SMALL, "training.n_iters=100000", "training.log_freq=1", "training.snapshot_freq=100000",
            "training.snapshot_freq_for_preemption=100000"]
    argv = [sys.executable, "-m", "scoresde", "train", "--config", "toy/checkerboard", "--workdir", str(workdir),
            "--quiet", *[a for o in over for a in ("--set", o)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not ((workdir / "metrics.jsonl").is_file() and (workdir / "metrics.jsonl").read_text().count("\n") >= 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the training process did not start: {proc.communicate()}")
        time.sleep(0.1)
    return proc


def test_cli_sigterm_is_one_line_and_exit_143_and_a_second_trainer_is_refused(tmp_path, capsys) -> None:
    workdir = tmp_path / "run"
    proc = _start_cli_training(workdir)
    try:
        code = main(["train", "--workdir", str(workdir), "--quiet"])  # a second trainer, while the first trains
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(f"scoresde train: error: {workdir} is being trained by another process (pid {proc.pid}")
        with pytest.raises(WorkdirLockedError, match=f"pid {proc.pid} "):
            Trainer(_cfg(), workdir).resume()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    (step, kind, path), = list_checkpoints(workdir)
    assert kind == "preempt" and step >= 2
    assert err.strip().splitlines() == [f"scoresde train: stopped by SIGTERM at step {step}; resume from {path}: run "
                                        "the same command to continue"]
    # the lock of the exited process is free: resume from its checkpoint, metrics cut back to its step
    tr = Trainer(load_config("toy/checkerboard", [*SMALL, "training.n_iters=100000", "training.log_freq=1",
                                                  "training.snapshot_freq=100000",
                                                  "training.snapshot_freq_for_preemption=100000"]), workdir)
    assert tr.resume() and tr.step == step
    assert [r["step"] for r in _records(workdir)] == list(range(1, step + 1))
    tr.release_lock()


def test_workdir_lock_names_the_holder_and_a_dead_holder_is_stale(tmp_path) -> None:
    with WorkdirLock(tmp_path):
        with pytest.raises(WorkdirLockedError, match=f"another process \\(pid {os.getpid()} on "):
            WorkdirLock(tmp_path).acquire()
    # the holder loads lock.py alone (no torch import: fast)
    code = ("import importlib.util, os, sys; spec = importlib.util.spec_from_file_location('lock', sys.argv[2]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); lock = m.WorkdirLock(sys.argv[1]); "
            "lock.acquire(); print(os.getpid(), flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), lock_module.__file__],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(holder.stdout.readline())
    with pytest.raises(WorkdirLockedError, match=f"pid {pid} "):
        WorkdirLock(tmp_path).acquire()
    holder.kill()  # kill -9: the kernel drops its lock, the file still names it
    holder.wait()
    assert f"pid {pid} " in (tmp_path / "train.lock").read_text()
    with WorkdirLock(tmp_path) as lock:
        assert lock.held and f"pid {os.getpid()} " in (tmp_path / "train.lock").read_text()


def test_divergence_keeps_the_last_checkpoint_with_a_finite_loss(tmp_path) -> None:
    """optim.lr=1e9: the weights after step 0 give an infinite loss at step 1, so checkpoint 1 is set aside."""
    cfg = _cfg("optim.lr=1e9", "optim.warmup=0", "training.snapshot_freq_for_preemption=1")
    with pytest.raises(NonFiniteLossError, match=r"at step 1; stopping: no checkpoint with a finite loss is left.*"
                                                 r"set aside \(weights that diverge\): nonfinite_1"):
        Trainer(cfg, tmp_path).train()
    assert list_checkpoints(tmp_path) == [] and (tmp_path / "checkpoints" / "nonfinite_1").is_dir()


def test_nonfinite_stop_then_skip_on_resume_with_max_skips(tmp_path, monkeypatch) -> None:
    box = _poison_at(monkeypatch, lambda step: math.nan if step >= 10 else 1.0)  # the weights of step 10 diverge
    over = ["training.snapshot_freq=5"]
    box["trainer"] = Trainer(_cfg(*over), tmp_path)
    with pytest.raises(NonFiniteLossError) as info:
        box["trainer"].train()
    kept = tmp_path / "checkpoints" / "checkpoint_5"
    assert str(info.value) == (f"non-finite training loss nan at step 10; stopping: the newest checkpoint with a "
                               f"finite loss is {kept}, where a resume starts; set aside (weights that diverge): "
                               "nonfinite_10; to skip such steps, resume with --set training.nonfinite=skip")
    assert [s for s, _, _ in list_checkpoints(tmp_path)] == [5]
    # training.nonfinite and max_skips may change on resume; log_freq=1 puts a skipped step alone in a record
    box["trainer"] = tr = Trainer(_cfg(*over, "training.nonfinite=skip", "training.max_skips=3",
                                       "training.log_freq=1"), tmp_path)
    assert tr.resume() and tr.step == 5
    with pytest.warns(UserWarning, match="step skipped") as caught, pytest.raises(NonFiniteLossError) as info:
        tr.train()
    assert [str(w.message).split(":")[0] for w in caught] == [f"non-finite training loss nan at step {s}"
                                                              for s in (10, 11, 12)]
    assert str(info.value).startswith("non-finite training loss nan at step 13 after 3 skipped step(s) in a row "
                                      f"(training.max_skips=3); stopping: the newest checkpoint with a finite loss "
                                      f"is {kept}")
    records = {r["step"]: r for r in _records(tmp_path) if "train/loss" in r}  # strict JSON: null, not NaN
    assert records[11]["train/loss"] is None and records[11]["train/skipped"] == 1
    assert math.isfinite(records[10]["train/loss"]) and "train/skipped" not in records[10]
    with pytest.raises(ConfigError, match=r"training\.max_skips must be a positive integer, got 0"):
        _cfg("training.max_skips=0")


def test_a_log_line_after_the_checkpoint_is_not_duplicated_on_resume(uninterrupted, tmp_path) -> None:
    first = Trainer(_cfg(), tmp_path)
    first.train(max_steps=12)  # records of steps 5, 10 and 12 (a partial window); checkpoints 5 and 10
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 13, "train/lo')  # a record cut by a kill
    second = Trainer(_cfg(), tmp_path)
    assert second.resume() and second.step == 10
    assert [r["step"] for r in _records(tmp_path)] == [5, 10]
    second.train()
    assert _records(tmp_path) == uninterrupted[1]


def test_metrics_records_are_strict_json(tmp_path) -> None:
    assert metrics_record(3, {"a": math.nan, "b": -math.inf, "c": 0.5}) == '{"step": 3, "a": null, "b": null, "c": 0.5}'
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "x": 1}\n{"step": 2, "train/loss": 1}\n{"step": 2, "eval": 1}\n{"step": 3}\n')
    assert truncate_metrics(path, 2, drop_train_at_step=True) == 2
    assert path.read_text() == '{"step": 1, "x": 1}\n{"step": 2, "eval": 1}\n'
