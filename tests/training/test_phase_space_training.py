"""PSLD and CLD train through the same Trainer and CLI as the scalar SDEs and reproduce the 2-D mixture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scoresde.cli import main
from scoresde.config import load_config
from scoresde.models import PhaseSpaceScoreModel
from scoresde.toy import GaussianMixture, energy_distance
from scoresde.training import Trainer


@pytest.mark.parametrize("preset", ["toy/gaussian_mixture_psld",
                                    pytest.param("toy/gaussian_mixture_cld", marks=pytest.mark.slow)])
def test_phase_space_training_reproduces_the_mixture(preset: str, tmp_path) -> None:
    cfg = load_config(preset, ["training.n_iters=2000", "training.snapshot_sampling=false", "training.eval_freq=0",
                               "training.snapshot_freq=2000"])
    trainer = Trainer(cfg, tmp_path)
    assert isinstance(trainer.model, PhaseSpaceScoreModel)
    trainer.train()
    x = trainer.snapshot_samples(1500).cpu().double()
    assert x.shape == (1500, 2)  # the data half of the [x, m] state
    gm = GaussianMixture.example_2d()
    g = torch.Generator().manual_seed(1)
    reference = gm.sample(1500, g)
    baseline = sum(energy_distance(gm.sample(1500, g), reference) for _ in range(4)) / 4
    assert energy_distance(x, reference) / baseline < 5
    weights = torch.bincount(gm.responsibilities(x).argmax(1), minlength=3) / x.shape[0]
    torch.testing.assert_close(weights.double(), gm.weights, atol=0.05, rtol=0)


def test_phase_space_run_through_the_cli(tmp_path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--config", "toy/gaussian_mixture_psld", "--workdir", str(run), "--quiet",
                 "--set", "training.n_iters=20", "--set", "training.snapshot_freq=20",
                 "--set", "training.num_snapshot_samples=50", "--set", "model.num_scales=30"]) == 0
    assert main(["sample", "--workdir", str(run), "--num", "40", "--out", str(tmp_path / "s.npz"), "--quiet"]) == 0
    assert np.load(tmp_path / "s.npz")["samples"].shape == (40, 2)
    assert main(["likelihood", "--workdir", str(run), "--num", "16", "--n-probes", "2", "--quiet"]) == 0
    result = json.loads((run / "eval" / "likelihood_test_step_20.json").read_text())
    assert result["unit"] == "nats/dim" and result["num"] == 16 and np.isfinite(result["value"])
    assert np.isfinite(result["mean_probe_stderr"])  # two momentum draws give a standard error
    assert main(["train", "--config", "toy/gaussian_mixture_psld", "--workdir", str(tmp_path / "bad"),
                 "--set", "training.continuous=false"]) == 2


def test_digits_psld_builds_a_two_block_unet_and_trains(tmp_path) -> None:
    cfg = load_config("digits/psld_ddpmpp", ["model.nf=16", "model.ch_mult=[1, 2]", "model.attn_resolutions=[]",
                                             "training.n_iters=2", "training.batch_size=8", "training.eval_freq=0",
                                             "training.snapshot_sampling=false", "training.log_freq=1"])
    trainer = Trainer(cfg, tmp_path)
    assert isinstance(trainer.model, PhaseSpaceScoreModel)
    assert (trainer.model.net.in_channels, trainer.model.net.out_channels) == (2, 2)  # [x, m] in, both noises out
    last = trainer.train()
    assert trainer.step == 2 and np.isfinite(last["train/loss"])
    from scoresde.training.build import build_model

    momentum_only = load_config("digits/psld_ddpmpp", ["model.nf=16", "model.ch_mult=[1, 2]",
                                                       "model.attn_resolutions=[]", "model.blocks=momentum"])
    assert build_model(momentum_only).net.out_channels == 1


def _dsm_params(tmp_path, name: str, *extra: str) -> dict[str, torch.Tensor]:
    cfg = load_config("toy/gaussian_mixture_psld", ["model.score_matching=dsm", "model.hidden=32", "model.depth=1",
                                                    "training.batch_size=64", "training.n_iters=6",
                                                    "training.eval_freq=0", "training.snapshot_sampling=false",
                                                    "training.snapshot_freq=6", *extra])
    trainer = Trainer(cfg, tmp_path / name)
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.model.net.state_dict().items()}


def test_dsm_momentum_is_a_global_step_seeded_draw(tmp_path) -> None:
    cfg = load_config("toy/gaussian_mixture_psld", ["model.score_matching=dsm"])
    trainer = Trainer(cfg, tmp_path / "draws")
    draws = trainer._global_draws((4096, 2))
    assert set(draws) == {"t", "momentum", "noise"} and draws["momentum"].shape == (4096, 2)
    kappa_m = trainer.model.sde.initial_cov[1, 1].item()  # Sigma_0 = diag(0, kappa M)
    assert draws["momentum"].var().item() == pytest.approx(kappa_m, rel=0.05)
    torch.testing.assert_close(trainer._global_draws((4096, 2))["momentum"], draws["momentum"], rtol=0, atol=0)
    # replayable: two runs agree bit for bit, and 2 accumulated micro-batches (slices of the global draws) equal one
    a, b = _dsm_params(tmp_path, "a"), _dsm_params(tmp_path, "b")
    accum = _dsm_params(tmp_path, "accum", "training.grad_accum=2")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
        torch.testing.assert_close(a[k], accum[k], rtol=0, atol=1e-5)


def test_a_run_folder_from_before_a_new_option_still_resumes(tmp_path) -> None:
    from scoresde.config import ConfigError
    from scoresde.training.workdir import check_workdir_config

    over = ["training.n_iters=2", "training.snapshot_sampling=false", "training.eval_freq=0",
            "training.snapshot_freq=2", "model.hidden=16", "model.depth=1"]
    cfg = load_config("toy/gaussian_mixture_psld", over)
    Trainer(cfg, tmp_path).train()
    path = tmp_path / "config.json"
    old = json.loads(path.read_text())
    del old["training"]["fp_min_time"], old["model"]["mixed_score"], old["model"]["mixed_data_var"]
    path.write_text(json.dumps(old))  # as written before these options existed: they take their defaults
    check_workdir_config(tmp_path, cfg)
    trainer = Trainer(load_config("toy/gaussian_mixture_psld", [*over, "training.n_iters=3"]), tmp_path)
    assert trainer.resume() and trainer.step == 2
    with pytest.raises(ConfigError, match=r"model.mixed_score: False -> True"):
        check_workdir_config(tmp_path, load_config("toy/gaussian_mixture_psld", [*over, "model.mixed_score=true"]))
