"""``fp/<preset>``: FP-Diffusion fine-tuning presets, and fine-tuning a digits run with the regulariser."""

from __future__ import annotations

import numpy as np
import pytest

from scoresde.cli import main
from scoresde.configs import get_preset
from scoresde.training import load_config
from scoresde.training.presets import FP_BASES, list_all_presets


@pytest.mark.parametrize("base", FP_BASES)
def test_fp_presets_keep_the_base_network_and_use_the_papers_objective(base: str) -> None:
    cfg = load_config(f"fp/{base}")
    original = get_preset(base)
    assert cfg.model == original["model"]  # so that --init-from the base checkpoint loads
    assert cfg.training.sde == original["training"]["sde"] and cfg.data.dataset == "CIFAR10"
    t = cfg.training
    assert (t.fp_alpha, t.fp_beta, t.fp_mode, t.fp_weighting, t.fp_m) == (0.15, 0.01, "both", "ll", 2.0)
    assert t.likelihood_weighting and t.continuous and t.batch_size == 48
    assert (cfg.optim.lr, cfg.optim.warmup, cfg.seed) == (2e-4, 5000, 42)


def test_every_fp_preset_is_listed() -> None:
    listed = [p for p in list_all_presets() if p.startswith("fp/")]
    assert sorted(listed) == sorted([f"fp/{b}" for b in FP_BASES] + ["fp/digits/vp_ddpmpp"])


def test_fine_tuning_a_digits_run_with_the_regulariser(tmp_path, capsys) -> None:
    small = ["--set", "model.nf=16", "--set", "model.ch_mult=[1, 2]", "--set", "model.attn_resolutions=[]",
             "--set", "training.batch_size=8", "--set", "training.eval_freq=0",
             "--set", "training.snapshot_sampling=false", "--set", "training.log_freq=1",
             "--set", "training.snapshot_freq=2", "--set", "training.snapshot_freq_for_preemption=2"]
    pre = tmp_path / "pre"
    assert main(["train", "--config", "digits/vp_ddpmpp", "--workdir", str(pre), "--quiet", *small,
                 "--set", "training.n_iters=2"]) == 0
    ft = tmp_path / "ft"
    assert main(["train", "--config", "fp/digits/vp_ddpmpp", "--workdir", str(ft), "--quiet", *small,
                 "--set", "training.n_iters=2", "--init-from", str(pre)]) == 0
    assert "initialised from" in capsys.readouterr().out
    import json

    lines = [json.loads(line) for line in (ft / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2] and all(np.isfinite(r["train/loss"]) for r in lines)
    cfg = load_config(str(ft / "config.json"))
    assert cfg.training.fp_alpha == 0.15 and cfg.training.fp_beta == 0.01
    assert (ft / "init_from.json").exists() and (ft / "checkpoints" / "checkpoint_2").is_dir()
