"""The digits demo end to end on a tiny network (the real one trains for minutes: see benchmarks/RESULTS.md)."""

from __future__ import annotations

import json

import torch

from scoresde.cli.digits_demo import digit_classifier, digit_quality, run_digits_demo
from scoresde.data import load_digits16, preprocess

TINY = ("model.nf=16", "model.ch_mult=[1, 2]", "model.attn_resolutions=[]", "model.num_scales=30",
        "training.n_iters=4", "training.snapshot_freq=4", "training.eval_freq=2", "training.batch_size=16",
        "training.log_freq=2", "training.snapshot_freq_for_preemption=2")


def test_digit_quality_separates_digits_from_noise() -> None:
    clf, accuracy = digit_classifier()
    assert accuracy > 0.93
    real = digit_quality(preprocess(load_digits16("test").images[:200]), clf)
    noise = digit_quality(torch.rand(200, 1, 16, 16, generator=torch.Generator().manual_seed(0)), clf)
    assert real["class_entropy_bits"] > 3.1 and real["confident_fraction"] > 0.7
    assert noise["confident_fraction"] < real["confident_fraction"] - 0.3


def test_digits_demo_runs_and_resumes(tmp_path) -> None:
    metrics = run_digits_demo(tmp_path, overrides=TINY, num_samples=8, num_bpd=4, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["steps"] == 4 and (tmp_path / "digits.png").exists()
    assert 0 < saved["test_bits_per_dim"] < 20 and saved["bpd_nfe"] > 0
    assert saved["overrides"] == list(TINY)  # every phase is timed
    assert 0 < saved["seconds"]["train"] < saved["seconds"]["total"] and saved["seconds"]["bits_per_dim"] > 0
    assert metrics["samples"]["class_entropy_bits"] >= 0
    longer = (*(o for o in TINY if not o.startswith("training.n_iters")), "training.n_iters=6")
    again = run_digits_demo(tmp_path, overrides=longer, num_samples=8, num_bpd=4, progress=False)
    assert again["steps"] == 6  # the run folder was resumed, not restarted
