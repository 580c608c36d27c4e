"""The DDP stop flag (issue 22 items 1 and 8): a signal that reaches one rank of a two-process gloo run stops every
rank at the same step boundary (the flag is all-reduced each step), rank 0 writes one pre-emption checkpoint there,
and the run resumes from it to the same weights as an uninterrupted two-process run. Both ranks are forked children
of the test process (no interpreter start-up)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch

from scoresde.checkpoint import list_checkpoints, load_training_state
from scoresde.config import load_config
from scoresde.training import Trainer, TrainingInterrupted

SMALL = ["model.hidden=16", "model.depth=1", "training.batch_size=16", "training.n_iters=8",
         "training.snapshot_freq=8", "training.snapshot_freq_for_preemption=100", "training.eval_freq=0",
         "training.snapshot_sampling=false", "training.log_freq=2", "optim.warmup=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, workdir: Path, result: Path, signal_at: int | None) -> None:
    """One rank (in a forked child): train; the rank given ``signal_at`` sends itself SIGTERM at that step."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if signal_at is not None and rank == 1:
        real = Trainer.train_step

        def train_step(self, *args, **kwargs):
            if self.step == signal_at:
                os.kill(os.getpid(), signal.SIGTERM)
            return real(self, *args, **kwargs)

        Trainer.train_step = train_step
    trainer = Trainer(load_config("toy/checkerboard", SMALL), workdir, device="cpu")
    trainer.resume()
    try:
        trainer.train()
        record = {"step": trainer.step, "signal": None, "checkpoint": None}
    except TrainingInterrupted as stop:
        record = {"step": stop.step, "signal": stop.signum, "checkpoint": str(stop.checkpoint)}
    result.write_text(json.dumps(record))


def _run_two_ranks(workdir: Path, tmp: Path, signal_at: int | None, timeout: float = 120.0) -> list[dict]:
    port, pids = _free_port(), []
    for rank in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _rank(rank, port, workdir, tmp / f"rank{rank}.json", signal_at)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    deadline, status = time.time() + timeout, {}
    while len(status) < 2 and time.time() < deadline:
        for pid in pids:
            if pid not in status:
                done, code = os.waitpid(pid, os.WNOHANG)
                if done:
                    status[pid] = code
        time.sleep(0.05)
    for pid in set(pids) - set(status):  # a hung collective: never leave the test hanging
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert len(status) == 2 and all(code == 0 for code in status.values()), status
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow  # 85 s for the three two-rank runs on a loaded 2-core machine (gloo ranks contend for the cores)
def test_a_signal_on_one_rank_stops_every_rank_at_one_boundary_and_resumes_exactly(tmp_path) -> None:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    reference = _run_two_ranks(tmp_path / "reference", tmp_path, None)
    assert [r["step"] for r in reference] == [8, 8]
    run = tmp_path / "run"
    stopped = _run_two_ranks(run, tmp_path, signal_at=3)
    sigterm = int(signal.SIGTERM)
    # rank 1 got the signal during step 4; rank 0 learnt it from the all-reduced flag: both stop after step 4
    assert [(r["step"], r["signal"]) for r in stopped] == [(4, sigterm), (4, sigterm)]
    assert stopped[0]["checkpoint"] == str(run / "checkpoints" / "preempt_4") and stopped[1]["checkpoint"] == "None"
    assert [(s, k) for s, k, _ in list_checkpoints(run)] == [(4, "preempt")]
    resumed = _run_two_ranks(run, tmp_path, None)
    assert [r["step"] for r in resumed] == [8, 8]
    a = load_training_state(run / "checkpoints" / "checkpoint_8")
    b = load_training_state(tmp_path / "reference" / "checkpoints" / "checkpoint_8")
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k]), k
