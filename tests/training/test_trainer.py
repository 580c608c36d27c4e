"""The training loop: exact resumption, corrupt checkpoints, accumulation, DDP, non-finite losses, crash safety."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from scoresde.checkpoint import list_checkpoints
from scoresde.config import load_config
from scoresde.training import CompileError, NonFiniteLossError, Trainer, find_resumable
from scoresde.training import trainer as trainer_module

SMALL = ["model.hidden=32", "model.depth=1", "training.batch_size=64", "training.n_iters=20",
         "training.snapshot_freq=10", "training.snapshot_freq_for_preemption=5", "training.eval_freq=0",
         "training.snapshot_sampling=false", "training.log_freq=5", "optim.warmup=4"]


def _cfg(*extra: str):
    return load_config("toy/checkerboard", [*SMALL, *extra])


def _params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.net.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    workdir = tmp_path_factory.mktemp("full")
    tr = Trainer(_cfg(), workdir)
    tr.train()
    return workdir, _params(tr), {k: v.clone() for k, v in tr.ema.shadow.items()}


def test_resume_continues_exactly(uninterrupted, tmp_path) -> None:
    _, full_params, full_ema = uninterrupted
    first = Trainer(_cfg(), tmp_path)
    first.train(max_steps=12)  # checkpoints at 5 (pre-emption) and 10 (numbered); step 12 is lost
    assert first.step == 12
    second = Trainer(_cfg(), tmp_path)
    assert second.resume() and second.step == 10
    second.train()
    assert second.step == 20
    _assert_same(_params(second), full_params)
    _assert_same(second.ema.shadow, full_ema)


def test_outputs_of_a_run(uninterrupted) -> None:
    workdir, _, _ = uninterrupted
    assert [(s, k) for s, k, _ in list_checkpoints(workdir)] == [(20, "checkpoint"), (10, "checkpoint")]
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["training"]["n_iters"] == 20 and saved["model"]["hidden"] == 32
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [5, 10, 15, 20]
    assert lines[0]["train/lr"] == pytest.approx(2e-3)  # warm-up of 4 steps is over at step 5
    assert any((workdir / "tb").iterdir())


def test_corrupt_newest_checkpoint_is_reported_and_skipped(uninterrupted, tmp_path) -> None:
    workdir, _, _ = uninterrupted
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    weights = copy / "checkpoints" / "checkpoint_20" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated by a crash of the disk, say
    with pytest.warns(UserWarning, match=r"skipping unusable checkpoint .*checkpoint_20"):
        state = find_resumable(copy)
    assert state.step == 10
    tr = Trainer(_cfg(), copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert tr.resume()
    assert tr.step == 10


def test_gradient_accumulation_equals_one_big_batch(uninterrupted, tmp_path) -> None:
    _, full_params, _ = uninterrupted
    tr = Trainer(_cfg("training.grad_accum=4"), tmp_path)
    tr.train()
    _assert_same(_params(tr), full_params, atol=1e-5)


def test_nonfinite_loss_stops_naming_the_step_or_is_skipped(tmp_path, monkeypatch) -> None:
    real = trainer_module.compute_loss

    def poisoned(cfg, model, x, **draws):
        loss = real(cfg, model, x, **draws)
        return loss * float("nan") if poisoned.trainer.step == 7 else loss

    monkeypatch.setattr(trainer_module, "compute_loss", poisoned)
    tr = Trainer(_cfg(), tmp_path / "stop")
    poisoned.trainer = tr
    with pytest.raises(NonFiniteLossError, match="non-finite training loss nan at step 7"):
        tr.train()
    assert find_resumable(tmp_path / "stop").step == 5  # the last good checkpoint is kept
    tr = Trainer(_cfg("training.nonfinite=skip"), tmp_path / "skip")
    poisoned.trainer = tr
    with pytest.warns(UserWarning, match=r"non-finite training loss nan at step 7: step skipped \(1 in a row"):
        tr.train()
    assert tr.step == 20 and tr.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in tr.model.net.parameters())


def test_compile_failure_is_one_line_and_writes_no_checkpoint(tmp_path, monkeypatch) -> None:
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler found\nsecond line of the backend's message")

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda net, **kw: real_compile(net, backend=broken_backend))
    tr = Trainer(_cfg("training.compile=true"), tmp_path / "run")
    with pytest.raises(CompileError) as info:
        tr.train()
    message = str(info.value)
    assert message.startswith("training.compile=true: torch.compile failed on cpu (backend='broken_backend' raised: "
                              "RuntimeError: no C++ compiler found); set training.compile=false")
    assert "\n" not in message and isinstance(info.value, ValueError)  # the CLI prints ValueErrors as one line
    assert list_checkpoints(tmp_path / "run") == [] and tr.step == 0
    # an error of the model itself is not reported as a compile failure
    monkeypatch.setattr(trainer_module, "compute_loss", lambda *a, **k: (_ for _ in ()).throw(KeyError("model bug")))
    with pytest.raises(KeyError, match="model bug"):
        Trainer(_cfg("training.compile=true"), tmp_path / "other").train()


def test_bf16_autocast_trains(tmp_path) -> None:
    tr = Trainer(_cfg("training.amp=bf16", "training.n_iters=5"), tmp_path)
    last = tr.train()
    assert tr.step == 5 and 0 < last["train/loss"] < 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, workdir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tr = Trainer(_cfg("training.n_iters=6"), workdir, device="cpu")
    tr.train()
    if rank == 0:
        torch.save(_params(tr), out)
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_equal_one_process(tmp_path) -> None:
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), str(out)), nprocs=2, join=True)
    single = Trainer(_cfg("training.n_iters=6"), tmp_path / "single")
    single.train()
    _assert_same(torch.load(out, weights_only=True), _params(single), atol=1e-6)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path) -> None:
    """SIGKILL a training process after its first checkpoints, restart it, and end where an uninterrupted run ends."""
    workdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "scoresde", "train", "--config", "toy/checkerboard", "--workdir", str(workdir),
           "--quiet", *[a for s in SMALL for a in ("--set", s)], "--set", "training.snapshot_freq=100000"]
    proc = subprocess.Popen([*cmd, "--set", "training.n_iters=100000"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list_checkpoints(workdir)) == 0:
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = find_resumable(workdir)
    assert state is not None and state.step % 5 == 0 and 0 < state.step < 100000
    target = state.step + 7  # the restart must redo the steps lost after the last checkpoint, then go on
    done = subprocess.run([*cmd, "--set", f"training.n_iters={target}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming at step {state.step}" in done.stdout
    resumed = Trainer(_cfg(f"training.n_iters={target}", "training.snapshot_freq=100000"), workdir)
    assert resumed.resume() and resumed.step == target
    reference = Trainer(_cfg(f"training.n_iters={target}", "training.snapshot_freq=100000"), tmp_path / "ref")
    reference.train()
    _assert_same(_params(resumed), _params(reference))
