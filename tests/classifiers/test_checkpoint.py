"""Classifier checkpoints: round trip (EMA and online weights, the SDE and the conventions), exact resumption, and the
refusals (a score checkpoint, no EMA, a torn save)."""

from __future__ import annotations

import json

import pytest
import torch

import scoresde
from scoresde.checkpoint import save_checkpoint
from scoresde.sdes import PSLD, VPSDE, same_sde
from scoresde.toy import GaussianMixture
from scoresde.training.classifier import (
    ClassifierConfig,
    ClassifierTrainer,
    build_classifier,
    load_classifier,
    save_classifier,
    sde_config,
)

PSLD_RUN = {"training": {"sde": "psld", "continuous": True},
            "model": {"beta_min": 8.0, "beta_max": 8.0, "nu": 4.01, "gamma": 0.01, "kappa": 0.04,
                      "decomp_mode": "lower", "score_matching": "hsm", "num_scales": 100, "nf": 32}}
CFG = ClassifierConfig(hidden=16, depth=1, steps=6, batch_size=32, lr=1e-2, warmup=2, ema_rate=0.9)


def _data():
    x, y = GaussianMixture.example_2d().sample(256, torch.Generator().manual_seed(0), return_labels=True)
    return x.float(), y


def _trainer(sde):
    torch.manual_seed(0)
    x, y = _data()
    return ClassifierTrainer(build_classifier(sde, (2,), 3, CFG), CFG, x, y)


def test_sde_config_keeps_only_what_builds_the_sde():
    cfg = sde_config(PSLD_RUN)
    assert cfg["training"] == {"sde": "psld", "continuous": True} and "nf" not in cfg["model"]


def test_round_trip_ema_and_online(tmp_path):
    sde = PSLD(beta_min=8.0, beta_max=8.0, nu=4.01, gamma=0.01, kappa=0.04, N=100)
    trainer = _trainer(sde)
    trainer.train(3)
    path = save_classifier(tmp_path / "ckpt", trainer.classifier, CFG, sde_config(PSLD_RUN), (2,), step=trainer.step,
                           ema=trainer.ema, optimizer=trainer.optimizer)
    z, t = torch.randn(8, 4), torch.rand(8) * 0.9 + 0.05
    for use_ema, expected in ((True, trainer.eval_classifier()), (False, trainer.classifier.eval())):
        loaded = load_classifier(path, use_ema=use_ema)
        assert same_sde(loaded.sde, sde) and loaded.label_type == "t" and loaded.num_classes == 3
        assert loaded.step == 3 and not loaded.training
        with torch.no_grad():
            torch.testing.assert_close(loaded(z, t), expected(z, t), rtol=0, atol=0)
    meta = json.loads((path / "checkpoint.json").read_text())
    assert meta["config"]["kind"] == "noise-conditional-classifier"
    with pytest.raises(ValueError, match=r"holds a 'noise-conditional-classifier' checkpoint, not a score model: "
                                         r"load a classifier with scoresde\.training\.classifier\.load_classifier"):
        scoresde.load_checkpoint(path)  # one clear line, not a missing-section error
    assert meta["config"]["classifier"]["network"] == "mlp" and meta["config"]["sde"]["training"]["sde"] == "psld"


def test_resume_continues_exactly(tmp_path):
    """3 steps, save, load into a fresh trainer, 3 more: the same weights as 6 steps straight (every draw is seeded by
    the step)."""
    sde = VPSDE(N=100)
    run = {"training": {"sde": "vpsde"}, "model": {"beta_min": 0.1, "beta_max": 20.0, "num_scales": 100}}
    straight = _trainer(sde)
    straight.train()
    first = _trainer(sde)
    first.train(3)
    save_classifier(tmp_path, first.classifier, CFG, sde_config(run), (2,), step=3, ema=first.ema,
                    optimizer=first.optimizer)
    second = _trainer(sde)
    second.load(tmp_path)
    assert second.step == 3 and second.ema.num_updates == 3
    second.train()
    for a, b in zip(straight.classifier.net.state_dict().values(), second.classifier.net.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for name, value in straight.ema.shadow.items():
        torch.testing.assert_close(value, second.ema.shadow[name], rtol=0, atol=0)


def test_refusals(tmp_path):
    sde = VPSDE(N=100)
    run = {"training": {"sde": "vpsde"}, "model": {"beta_min": 0.1, "beta_max": 20.0, "num_scales": 100}}
    clf = build_classifier(sde, (2,), 3, CFG)
    with pytest.raises(ValueError, match="does not build the classifier's SDE"):
        save_classifier(tmp_path / "a", clf, CFG, sde_config(PSLD_RUN), (2,))
    save_classifier(tmp_path / "no_ema", clf, CFG, sde_config(run), (2,))
    with pytest.raises(ValueError, match="without EMA weights"):
        load_classifier(tmp_path / "no_ema")
    assert load_classifier(tmp_path / "no_ema", use_ema=False).num_classes == 3
    save_checkpoint(tmp_path / "score", torch.nn.Linear(2, 2), {"training": {"sde": "vpsde"}, "model": {}})
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        load_classifier(tmp_path / "score", use_ema=False)
    # a save torn between the weights and the metadata: refused, not silently mixed
    trainer = _trainer(sde)
    save_classifier(tmp_path / "torn", trainer.classifier, CFG, sde_config(run), (2,), step=0, ema=trainer.ema)
    trainer.train(1)
    save_classifier(tmp_path / "other", trainer.classifier, CFG, sde_config(run), (2,), step=1, ema=trainer.ema)
    (tmp_path / "torn" / "ema.safetensors").write_bytes((tmp_path / "other" / "ema.safetensors").read_bytes())
    with pytest.raises(ValueError, match="torn"):
        load_classifier(tmp_path / "torn")
