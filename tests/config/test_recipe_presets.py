"""Issue 23 item 4: the EDM presets build EDM's networks exactly, and the digits recipes differ from the demo's preset
only in the recipe (so that ``benchmarks/recipes_digits.py`` compares recipes at equal cost)."""

from __future__ import annotations

import pytest
import torch

from scoresde.config import load_config, resolve_config
from scoresde.config.factory import build_score_model
from scoresde.sdes import EDM

#: trainable parameters of NVlabs/edm's ``EDMPrecond(img_resolution=32, img_channels=3, augment_dim=9, dropout=0.13,
#: model_channels=128, channel_mult=[2, 2, 2], ...)`` with train.py's ``--arch=ddpmpp`` / ``--arch=ncsnpp`` options,
#: label_dim 0 / 10: counted by running EDM's code (commit 008a4e5) on 2026-12-07, ``sum(p.numel() for p in
#: net.parameters())``
EDM_PARAMETERS = {"edm/cifar10_ddpmpp_uncond": 55_733_891, "edm/cifar10_ddpmpp_cond": 55_735_299,
                  "edm/cifar10_ncsnpp_uncond": 56_397_827, "edm/cifar10_ncsnpp_cond": 56_400_643}


@pytest.mark.parametrize("name", sorted(EDM_PARAMETERS))
def test_edm_cifar10_presets_build_edms_networks(name):
    cfg = load_config(name)
    model = build_score_model(cfg)
    trainable = sum(p.numel() for p in model.net.parameters() if p.requires_grad)
    assert trainable == EDM_PARAMETERS[name]
    assert isinstance(model.sde, EDM) and (model.sde.sigma_min, model.sde.sigma_max) == (0.002, 80.0)
    assert cfg.training.objective == "edm" and cfg.training.augment_p == 0.12 and cfg.model["augment_dim"] == 9
    assert cfg.training.ema_halflife_kimg == 500.0 and cfg.training.batch_size == 512
    assert cfg.sampling.method == "heun" and cfg.sampling.steps == 18  # 35 NFE
    c = model.precond.coefficients(torch.tensor([0.5]))  # Karras et al. Table 1 at s = sigma_data = 0.5
    assert (float(c.c_skip), float(c.c_in)) == pytest.approx((0.5, 2**0.5), rel=1e-6)


@pytest.mark.parametrize("name", ["edm/digits", "fm/digits"])
def test_digits_recipes_keep_the_demo_network_and_budget(name):
    demo, recipe = resolve_config("digits/vp_ddpmpp"), resolve_config(name)
    for section in ("data", "optim", "eval"):
        assert recipe[section] == demo[section], section
    network = {k: v for k, v in recipe["model"].items()
               if k not in ("sigma_min", "sigma_max", "preconditioning", "sigma_data", "ema_rate")}
    assert network == {k: v for k, v in demo["model"].items()
                       if k not in ("sigma_min", "sigma_max", "ema_rate")}
    for key in ("batch_size", "n_iters", "continuous", "reduce_mean"):
        assert recipe["training"][key] == demo["training"][key]
    assert recipe["seed"] == demo["seed"]
