"""``scoresde optimize-grid`` and ``scoresde sample --grid fitted`` on a tiny run folder: the grid file, the samples
it gives (equal to ``scoresde.sample(..., times=...)`` from Python), ``sampling.times`` from the config, and the
one-line refusals."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from scoresde import load_checkpoint, sample
from scoresde.cli import main

SMALL = ["--set", "model.hidden=16", "--set", "model.depth=1", "--set", "training.batch_size=16",
         "--set", "training.n_iters=2", "--set", "training.snapshot_freq=2", "--set", "training.eval_freq=100",
         "--set", "training.snapshot_freq_for_preemption=100", "--set", "training.log_freq=1",
         "--set", "training.num_snapshot_samples=8", "--set", "model.num_scales=30"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("grid") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--config", "toy/two_moons", "--workdir", str(workdir), "--quiet", *SMALL]) == 0
    finally:
        torch.set_num_threads(threads)
    return workdir


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_optimize_grid_then_sample_with_it(run, tmp_path, capsys) -> None:
    assert main(["optimize-grid", "--workdir", str(run), "--sampler", "ddim", "--nfe", "4", "--probes", "16",
                 "--max-evals", "6", "--quiet"]) == 0
    record = json.loads((run / "grids" / "ddim_nfe4.json").read_text())
    times = record["sampling"]["times"]
    assert record["sampler"] == "ddim" and record["sampling"]["method"] == "ddim" and record["calls"] <= 4
    assert len(times) == 4 and times[0] == 1.0 and all(b < a for a, b in itertools.pairwise(times))
    assert record["options"]["denoise"] is True  # the run's noise_removal: 3 intervals + the denoising call
    assert record["value"] <= record["start_value"] and record["evaluations"] <= 6
    assert "ddim_nfe4.json" in capsys.readouterr().out

    out = tmp_path / "s.npz"
    assert main(["sample", "--workdir", str(run), "--sampler", "ddim", "--nfe", "4", "--grid", "fitted", "--num", "6",
                 "--out", str(out), "--quiet"]) == 0
    with np.load(out) as f:
        assert int(f["nfe"]) == 4 and json.loads(str(f["options"]))["times"] == times
        ours = f["samples"]
    model = load_checkpoint(run)
    expected = sample(model, (6, 2), "ddim", generator=torch.Generator().manual_seed(0), times=times, denoise=True)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_sampling_times_from_the_config(run, tmp_path) -> None:
    out = tmp_path / "t.npz"
    assert main(["sample", "--workdir", str(run), "--sampler", "ddim", "--set", "sampling.times=[1.0,0.3,0.001]",
                 "--set", "sampling.noise_removal=false", "--num", "4", "--out", str(out), "--quiet"]) == 0
    with np.load(out) as f:
        assert int(f["nfe"]) == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--sampler", "ddim", "--nfe", "7", "--grid", "fitted"], "no fitted grid for sampler ddim at --nfe 7"),
    (["--sampler", "ddim", "--grid", "fitted"], "--grid fitted needs --nfe N"),
    (["--sampler", "ode", "--grid", "fitted"], "--grid needs a fixed-step sampler"),
    (["--sampler", "ddim", "--set", "sampling.times=[1.0,0.5,0.6]"], "sampling.times must be"),
])
def test_refusals_are_one_line(run, tmp_path, capsys, argv, message) -> None:
    assert main(["sample", "--workdir", str(run), "--num", "2", "--out", str(tmp_path / "x.npz"), "--quiet",
                 *argv]) != 0
    assert message in _err(capsys)
