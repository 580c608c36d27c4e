"""The snapshot grids (issue 26 item 7(j)): sampled by ``training.snapshot_sampler`` (default DPM-Solver++(2M) with
``training.snapshot_steps = 20``, where the run's own PC sampler made 1000 steps: 105 s at 32x32 on a CPU), or by the
run's ``sampling`` section on request; and ``train/steps_per_s`` counts training time only (a 1-step run logged 0.033
because the final snapshot was in its window)."""

from __future__ import annotations

import json
import time

import pytest
import torch

import scoresde.training.trainer as trainer_module
from scoresde.config import ConfigError, load_config
from scoresde.training import Trainer

ONE_STEP = ["training.n_iters=1", "training.snapshot_freq=1", "training.eval_freq=0", "training.log_freq=50",
            "training.batch_size=8", "training.num_snapshot_samples=6", "model.num_scales=30"]


def _calls(monkeypatch) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []
    real = trainer_module.sample

    def recording(sde, score, shape, name, **kwargs):
        calls.append((name, {k: v for k, v in kwargs.items() if k not in ("generator", "device", "cond")}))
        return real(sde, score, shape, name, **kwargs)

    monkeypatch.setattr(trainer_module, "sample", recording)
    return calls


def test_snapshots_use_the_fast_snapshot_sampler_by_default(tmp_path, monkeypatch) -> None:
    calls = _calls(monkeypatch)
    cfg = load_config("toy/gaussian_mixture", ONE_STEP)
    assert (cfg.training.snapshot_sampler, cfg.training.snapshot_steps) == ("dpm_solver", 20)
    tr = Trainer(cfg, tmp_path, progress=False)
    tr.train()
    assert calls == [("dpm_solver", {"steps": 20})]
    assert tr.last_snapshot[0] == 1 and tr.last_snapshot[1].shape == (6, 2)
    assert (tmp_path / "samples" / "step_1.png").is_file()


def test_snapshot_sampler_options(tmp_path, monkeypatch) -> None:
    calls = _calls(monkeypatch)
    for extra in (["training.snapshot_sampler=sampling"], ["training.snapshot_sampler=ddim",
                                                           "training.snapshot_steps=5"]):
        Trainer(load_config("toy/gaussian_mixture", [*ONE_STEP, *extra]), tmp_path / extra[-1],
                progress=False).snapshot_samples(4)
    assert calls[0][0] == "pc" and calls[0][1]["corrector"] == "langevin"  # the run's sampling section
    assert calls[1] == ("ddim", {"steps": 5})
    with pytest.raises(ConfigError, match=r"unknown training\.snapshot_sampler 'fast'; valid values are: pc, ode"):
        load_config("toy/gaussian_mixture", ["training.snapshot_sampler=fast"])
    with pytest.raises(ConfigError, match=r"training\.snapshot_steps must be a positive integer, got 0"):
        load_config("toy/gaussian_mixture", ["training.snapshot_steps=0"])


def test_steps_per_second_excludes_the_snapshot(tmp_path, monkeypatch) -> None:
    """A snapshot made 2 s slower does not lower the logged steps/s of a 1-step run (it was 1 / (step + snapshot))."""
    real = Trainer.save_snapshot

    def slow_snapshot(self):
        time.sleep(2.0)
        return real(self)

    monkeypatch.setattr(Trainer, "save_snapshot", slow_snapshot)
    torch.manual_seed(0)
    tr = Trainer(load_config("toy/gaussian_mixture", ONE_STEP), tmp_path, progress=False)
    last = tr.train()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rate = [r["train/steps_per_s"] for r in logged if "train/steps_per_s" in r]
    assert rate == [last["train/steps_per_s"]] and rate[0] > 1.0, rate  # one toy step takes well under 1 s
