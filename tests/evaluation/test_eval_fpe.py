"""``scoresde eval --metrics fpe`` (the score Fokker–Planck residual) and ``--metrics bpd`` on a phase-space run
(the entropy-corrected augmented bound), end to end through the CLI on tiny runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from scoresde.cli import main

from .test_eval_cli import TINY

TOY_PSLD = ["--set", "model.hidden=16", "--set", "model.depth=1", "--set", "training.batch_size=8",
            "--set", "training.n_iters=2", "--set", "training.snapshot_freq=2", "--set", "training.eval_freq=100",
            "--set", "training.snapshot_freq_for_preemption=100", "--set", "training.log_freq=1"]


def _train(workdir, config, sets):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--config", config, "--workdir", str(workdir), "--quiet", *sets]) == 0
    finally:
        torch.set_num_threads(threads)


def _metrics(workdir, tag):
    return json.loads((workdir / "eval" / tag / "metrics.json").read_text())["metrics"]


def test_eval_fpe_on_a_digits_run_is_recorded_and_independent_of_the_batch_size(tmp_path, capsys):
    workdir = tmp_path / "run"
    _train(workdir, "digits/vp_ddpmpp", TINY)
    base = ["eval", "--workdir", str(workdir), "--metrics", "fpe", "--bpd-num", "3", "--fpe-times", "3", "--quiet"]
    assert main([*base, "--tag", "a"]) == 0
    assert "FPE residual" in capsys.readouterr().out
    fpe = _metrics(workdir, "a")["fpe"]
    assert fpe["num"] == 3 and fpe["split"] == "test" and fpe["dtype"] == "float64" and fpe["unbiased"] is True
    assert fpe["times"] == pytest.approx([1e-3, 0.5005, 1.0])
    assert len(fpe["per_time"]) == 3 and math.isfinite(fpe["value"]) and fpe["stderr"] > 0
    assert fpe["value"] == pytest.approx(sum(fpe["per_time"]) / 3, rel=1e-9)
    assert main([*base, "--tag", "b", "--fpe-batch-size", "2"]) == 0  # same draws whatever the batch size
    assert _metrics(workdir, "b")["fpe"]["value"] == pytest.approx(fpe["value"], rel=1e-9)
    assert main([*base, "--tag", "c", "--fpe-num", "2"]) == 0
    assert _metrics(workdir, "c")["fpe"]["num"] == 2


def test_eval_on_a_phase_space_run_uses_the_augmented_bound_and_the_phase_space_fpe(tmp_path):
    workdir = tmp_path / "psld"
    _train(workdir, "toy/gaussian_mixture_psld", TOY_PSLD)
    args = ["eval", "--workdir", str(workdir), "--metrics", "bpd,fpe", "--bpd-num", "4", "--bpd-batch-size", "4",
            "--bpd-probes", "2", "--fpe-times", "3", "--fpe-eps", "0.05", "--quiet"]
    assert main(args) == 0
    record = json.loads((workdir / "eval" / "metrics.json").read_text())
    bpd, fpe = record["metrics"]["bpd"], record["metrics"]["fpe"]
    assert bpd["bound"] is True and bpd["n_momentum"] == 2 and "augmented" in bpd["estimator"]
    assert bpd["unit"] == "nats/dim" and bpd["num"] == 4 and math.isfinite(bpd["value"])
    assert bpd["mean_probe_stderr"] is not None  # spread over the 2 momentum draws
    assert fpe["num"] == 4 and fpe["times"] == pytest.approx([0.05, 0.525, 1.0]) and math.isfinite(fpe["value"])


def test_eval_bpd_on_a_phase_space_digits_run_is_the_augmented_bits_per_dim_bound(tmp_path):
    workdir = tmp_path / "psld_digits"
    _train(workdir, "digits/psld_ddpmpp", TINY)
    assert main(["eval", "--workdir", str(workdir), "--metrics", "bpd,fpe", "--bpd-num", "2", "--bpd-batch-size", "2",
                 "--bpd-probes", "2", "--fpe-times", "2", "--fpe-eps", "0.05", "--quiet"]) == 0
    m = json.loads((workdir / "eval" / "metrics.json").read_text())["metrics"]
    assert m["bpd"]["unit"] == "bits/dim" and m["bpd"]["bound"] is True and m["bpd"]["n_momentum"] == 2
    assert math.isfinite(m["bpd"]["value"]) and m["bpd"]["value"] > 0
    assert m["fpe"]["times"] == pytest.approx([0.05, 1.0]) and math.isfinite(m["fpe"]["value"])


def test_fpe_grid_starts_later_on_phase_space_unless_told() -> None:
    from scoresde.evaluation.run import fpe_first_time
    from scoresde.sdes import CLD, PSLD, VPSDE

    assert fpe_first_time(None, VPSDE()) == 1e-3
    assert fpe_first_time(None, PSLD()) == fpe_first_time(None, CLD()) == 1e-2
    assert fpe_first_time(0.05, PSLD()) == 0.05
