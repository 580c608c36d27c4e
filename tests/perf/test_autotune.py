"""Batch-size autotuning of `scoresde sample` / `eval`: the argument, the memory probe, the choice of batch."""

from __future__ import annotations

import argparse

import pytest
import torch

from scoresde.cli import batch_size
from scoresde.cli.batch_size import autotune_batch_size, batch_size_arg, peak_memory_growth
from scoresde.models.score_model import ScoreModel
from scoresde.nets import NCSNpp
from scoresde.sdes import VPSDE


def test_batch_size_argument() -> None:
    assert batch_size_arg("auto") == "auto" and batch_size_arg(" AUTO ") == "auto"
    assert batch_size_arg("12") == 12
    for bad in ("0", "-3", "1.5", "big"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer or 'auto'"):
            batch_size_arg(bad)


def test_peak_memory_growth_sees_a_large_temporary() -> None:
    def make() -> None:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        x.add_(1)
        del x

    # the CPU figure is the resident-set high-water mark: other activity of the process (the test runner's own
    # allocations and frees) can hide one measurement, so the largest of three is checked
    grown = max(peak_memory_growth(make, "cpu") for _ in range(3))
    assert 48 * 2**20 < grown < 160 * 2**20


def test_autotune_divides_the_free_memory_by_the_measured_per_sample_memory(monkeypatch) -> None:
    torch.manual_seed(0)
    model = ScoreModel(NCSNpp(image_size=8, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,)),
                       VPSDE()).eval()
    calls = []
    monkeypatch.setattr(batch_size, "peak_memory_growth", lambda fn, device: (fn(), calls.append(1), 6_000_000)[2])
    monkeypatch.setattr(batch_size, "free_memory", lambda device: 900_000_000)
    # probe of 2 samples -> 3e6 bytes each; half of 9e8 free -> 150
    assert autotune_batch_size(model, (3, 8, 8), "cpu", upper=1000) == 150
    assert autotune_batch_size(model, (3, 8, 8), "cpu", upper=64) == 64  # never more than asked for
    assert autotune_batch_size(model, (3, 8, 8), "cpu", upper=1000, memory_fraction=0.1) == 30
    assert len(calls) == 3
    monkeypatch.setattr(batch_size, "free_memory", lambda device: 1000)
    assert autotune_batch_size(model, (3, 8, 8), "cpu", upper=1000) == 1  # at least one sample
    with pytest.raises(ValueError, match="memory_fraction"):
        autotune_batch_size(model, (3, 8, 8), "cpu", upper=10, memory_fraction=1.5)
