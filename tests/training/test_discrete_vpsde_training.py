"""Discrete-time (DDPM) training on the table's own schedule: a run whose SDE is ``DiscreteVPSDE`` (e.g. an imported
diffusers DDPM model fine-tuned with ``training.continuous=false``) trains with the DDPM loss, as ``vpsde`` does."""

from __future__ import annotations

import torch

from scoresde.config import load_config
from scoresde.losses import ddpm_loss
from scoresde.sdes import DiscreteVPSDE
from scoresde.training import Trainer
from scoresde.training.build import compute_loss


def test_discrete_vpsde_run_trains_with_the_ddpm_loss(tmp_path) -> None:
    cfg = load_config("toy/gaussian_mixture", ["training.sde=discrete_vpsde", "training.continuous=false",
                                               "training.n_iters=2", "training.snapshot_sampling=false"])
    trainer = Trainer(cfg, tmp_path / "run")
    model = trainer.model
    assert isinstance(model.sde, DiscreteVPSDE)
    x = torch.randn(16, 2)
    got = compute_loss(cfg, model, x, generator=torch.Generator().manual_seed(3))
    want = ddpm_loss(model, model.sde, x, reduce_mean=cfg.training.reduce_mean,
                     generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, want)
    trainer.train()
    assert trainer.step == 2
