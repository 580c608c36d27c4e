"""``fp/<preset>``: FP-Diffusion fine-tuning presets, and fine-tuning a digits run with the regulariser."""

from __future__ import annotations

import numpy as np
import pytest

from scoresde.cli import main
from scoresde.config import load_config
from scoresde.config.presets import FP_BASES, list_presets
from scoresde.config.presets.original import original_preset


@pytest.mark.parametrize("base", FP_BASES)
def test_fp_presets_keep_the_base_network_and_use_the_papers_objective(base: str) -> None:
    cfg = load_config(f"fp/{base}")
    original = original_preset(base)
    assert cfg.model == original["model"]  # so that --init-from the base checkpoint loads
    assert cfg.training.sde == original["training"]["sde"] and cfg.data.dataset == "CIFAR10"
    t = cfg.training
    assert (t.fp_alpha, t.fp_beta, t.fp_mode, t.fp_weighting, t.fp_m) == (0.15, 0.01, "both", "ll", 2.0)
    assert t.likelihood_weighting and t.continuous and t.batch_size == 48
    assert (cfg.optim.lr, cfg.optim.warmup, cfg.seed) == (2e-4, 5000, 42)


def test_every_fp_preset_is_listed() -> None:
    listed = [p for p in list_presets() if p.startswith("fp/")]
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


def _fp_run(tmp_path, name: str, preset: str, *extra: str) -> dict:
    import torch

    from scoresde.training import Trainer

    cfg = load_config(preset, ["model.hidden=32", "model.depth=1", "training.batch_size=64", "training.n_iters=4",
                               "training.eval_freq=0", "training.snapshot_sampling=false", "training.snapshot_freq=4",
                               "training.fp_alpha=0.15", "training.fp_beta=0.01", *extra])
    trainer = Trainer(cfg, tmp_path / name)
    draws = trainer._global_draws((64, 2))
    assert draws["probes"].shape == draws["noise"].shape  # the probes are global, step-seeded draws too
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.model.net.state_dict().items()}, torch


@pytest.mark.parametrize(("preset", "extra"), [("toy/gaussian_mixture", ["training.likelihood_weighting=true"]),
                                               ("toy/gaussian_mixture_psld", ["training.fp_min_time=0.01"])])
def test_fp_training_is_replayable_and_rank_consistent(tmp_path, preset: str, extra: list[str]) -> None:
    a, torch = _fp_run(tmp_path, "a", preset, *extra)
    b, _ = _fp_run(tmp_path, "b", preset, *extra)
    accum, _ = _fp_run(tmp_path, "accum", preset, *extra, "training.grad_accum=2")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
        torch.testing.assert_close(a[k], accum[k], rtol=0, atol=1e-5)


def test_fp_min_time_is_refused_where_it_would_do_nothing(tmp_path) -> None:
    from scoresde.training import Trainer

    cfg = load_config("toy/gaussian_mixture", ["training.fp_alpha=0.15", "training.fp_min_time=0.01"])
    with pytest.raises(ValueError, match=r"fp_min_time=0\.01 applies to phase-space SDEs"):
        Trainer(cfg, tmp_path / "x")
