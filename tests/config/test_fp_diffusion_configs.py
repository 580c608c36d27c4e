"""FP-Diffusion's own configs load (issue 26, item 1: a regression of the strict config package). FP-Diffusion (Lai
et al. 2023) sets the regulariser with ``training.scalar_fp``, ``fp_wgt_type``, ``alpha``, ``beta``, ``m`` (its
``configs/default_cifar10_configs.py``: 'both', 'll', 0.15, 0.01, 2); wherever a whole config is read they map onto
``fp_mode``, ``fp_weighting``, ``fp_alpha``, ``fp_beta``, ``fp_m``, while ``--set training.alpha`` stays an error
that names ``fp_alpha``."""

from __future__ import annotations

import json

import pytest
import torch

from scoresde import load_score_sde_checkpoint
from scoresde.config import ConfigError, config_from_dict, load_config
from scoresde.losses import fp_loss
from scoresde.training.build import build_model, compute_loss
from tests.reference import require_reference

#: the FP-Diffusion training keys of its default CIFAR-10 config (values as that file sets them)
FP_DIFFUSION_TRAINING = {"scalar_fp": "both", "fp_wgt_type": "ll", "alpha": 0.15, "beta": 0.01, "m": 2,
                         "likelihood_weighting": True}


def _fp_config(base: dict) -> dict:
    """``base`` with FP-Diffusion's training keys instead of ours (as its own config files have them)."""
    cfg = json.loads(json.dumps(base))
    cfg["training"] = {k: v for k, v in cfg["training"].items() if not k.startswith("fp_")}
    cfg["training"].update(FP_DIFFUSION_TRAINING)
    return cfg


def test_an_fp_diffusion_config_loads_a_score_sde_checkpoint_with_the_regulariser_on() -> None:
    base = json.loads(require_reference("ddpmpp_vp.config.json").read_text())
    model = load_score_sde_checkpoint(require_reference("ddpmpp_vp.ckpt.pt"), _fp_config(base))
    t = model.config.training
    assert (t.fp_alpha, t.fp_beta, t.fp_m, t.fp_mode, t.fp_weighting) == (0.15, 0.01, 2.0, "both", "ll")
    plain = load_score_sde_checkpoint(require_reference("ddpmpp_vp.ckpt.pt"), base)
    x, tt = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([0.3, 0.7])
    with torch.no_grad():
        assert torch.equal(model(x, tt), plain(x, tt))  # the same network; only the objective differs


def test_json_files_and_every_scalar_fp_value_map_onto_ours(tmp_path) -> None:
    base = load_config("toy/checkerboard").to_dict()
    for theirs, ours in (("both", "both"), ("True", "scalar"), ("False", "vector"), (True, "scalar")):
        cfg = _fp_config(base)
        cfg["training"]["scalar_fp"] = theirs
        path = tmp_path / "fp.json"
        path.write_text(json.dumps(cfg))
        assert load_config(path).training.fp_mode == ours
    with pytest.raises(ConfigError, match=r"unknown training\.scalar_fp 'yes'; valid values are: 'both', 'True'"):
        config_from_dict({**base, "training": {**base["training"], "scalar_fp": "yes"}})
    with pytest.raises(ConfigError, match=r"training\.alpha \(FP-Diffusion's name\) = 0\.1 and training\.fp_alpha = "
                                          r"0\.2 disagree"):
        config_from_dict({**base, "training": {**base["training"], "alpha": 0.1, "fp_alpha": 0.2}})
    same = config_from_dict({**base, "training": {**base["training"], "alpha": 0.2, "fp_alpha": 0.2}})
    assert same.training.fp_alpha == 0.2


def test_our_overrides_still_name_our_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key training\.alpha; did you mean fp_alpha"):
        load_config("toy/checkerboard", ["training.alpha=0.15"])


def test_the_fp_diffusion_config_trains_with_the_same_regulariser_as_our_names() -> None:
    small = ["model.hidden=16", "model.depth=1", "training.batch_size=8"]
    ours = load_config("toy/checkerboard", [*small, "training.fp_alpha=0.15", "training.fp_beta=0.01",
                                            "training.fp_mode=both", "training.fp_weighting=ll", "training.fp_m=2",
                                            "training.likelihood_weighting=true"])
    theirs = load_config(_fp_config(load_config("toy/checkerboard", small).to_dict()))
    assert theirs == ours
    model = build_model(theirs)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=g)
    draws = dict(t=torch.rand(8, generator=g) * 0.9 + 0.05, noise=torch.randn(8, 2, generator=g),
                 probes=torch.randn(1, 8, 2, generator=g))
    expected = fp_loss(model, model.sde, x, alpha=0.15, beta=0.01, mode="both", weighting="ll", m=2,
                       reduce_mean=theirs.training.reduce_mean, likelihood_weighting=True, eps=theirs.training.eps,
                       **draws)
    torch.testing.assert_close(compute_loss(theirs, model, x, **draws), expected)


#: a default-config file in FP-Diffusion's style (its ``## Score FPE setups`` block with string flags and a comment)
FP_DEFAULTS_SOURCE = '''import ml_collections


def get_default_configs():
  config = ml_collections.ConfigDict()
  config.training = training = ml_collections.ConfigDict()
  training.batch_size = 8
  training.sde = 'vpsde'
  training.likelihood_weighting = True
  ## Score FPE setups
  training.scalar_fp = 'False' #choices=['True', 'False', 'both']
  training.fp_wgt_type = 'convention'
  training.alpha = 0.3
  training.beta = 0.0
  training.m = 1
  config.model = model = ml_collections.ConfigDict()
  model.name = 'toy_mlp'
  model.beta_min = 0.1
  model.beta_max = 20.
  model.num_scales = 1000
  return config
'''

FP_EXPERIMENT_SOURCE = '''from configs.default_toy_configs import get_default_configs


def get_config():
  config = get_default_configs()
  config.training.batch_size = 16
  return config
'''


def test_an_fp_diffusion_py_config_tree_is_read_with_its_default_file(tmp_path) -> None:
    (tmp_path / "configs" / "vp").mkdir(parents=True)
    (tmp_path / "configs" / "default_toy_configs.py").write_text(FP_DEFAULTS_SOURCE)
    path = tmp_path / "configs" / "vp" / "fp_toy.py"
    path.write_text(FP_EXPERIMENT_SOURCE)
    t = load_config(path).training
    assert (t.fp_mode, t.fp_weighting, t.fp_alpha, t.fp_beta, t.fp_m, t.batch_size) == ("vector", "convention", 0.3,
                                                                                          0.0, 1.0, 16)
