"""Presets of the original configs, and the ast-based reader of original ``configs/**.py`` files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scoresde.config import build_network, build_sde, get_preset, parse_config_file, parse_config_source
from scoresde.config import list_original_presets as list_presets
from scoresde.sdes import VESDE, SubVPSDE
from tests.reference import require_reference

# fixture -> (preset, keys the reference README §1 says were changed)
_UNET = {"data.image_size", "model.num_res_blocks", "model.attn_resolutions", "model.dropout", "model.ch_mult",
         "model.nf"}
_NCSN = {"data.image_size", "model.nf", "model.num_scales", "data.channels"}
FIXTURE_PRESETS = {
    "ncsnpp_ve": ("ve/cifar10_ncsnpp_continuous", _UNET),
    "ncsnpp_deep_skip": ("ve/cifar10_ncsnpp_deep_continuous",
                         _UNET | {"model.progressive", "model.progressive_input", "model.progressive_combine"}),
    "ddpmpp_vp": ("vp/cifar10_ddpmpp_continuous", _UNET),
    "ddpm_vp": ("vp/ddpm/cifar10", _UNET),
    "ncsnv2": ("ve/ncsnv2/cifar10", _NCSN),
    "ncsn": ("ve/ncsn/cifar10", _NCSN),
}


def _flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("fixture", list(FIXTURE_PRESETS))
def test_fixture_configs_agree_with_presets(fixture: str) -> None:
    preset, changed = FIXTURE_PRESETS[fixture]
    reference = _flatten(json.loads(require_reference(f"{fixture}.config.json").read_text()))
    ours = _flatten(get_preset(preset))
    skipped = changed | {"device"}  # device is not part of a preset
    assert set(reference) - skipped == set(ours) - skipped
    diffs = {k: (ours[k], reference[k]) for k in set(ours) - skipped
             if ours[k] != reference[k] or (type(ours[k]) is bool and type(reference[k]) is not bool)}
    assert not diffs, f"{preset} differs from {fixture}.config.json: {diffs}"


def test_every_original_config_is_a_preset() -> None:
    names = list_presets()
    assert len(names) == 39 and names == sorted(names)
    for family, count in {"ve/ncsn/": 8, "ve/ncsnv2/": 3, "vp/ddpm/": 6, "subvp/": 5}.items():
        assert sum(n.startswith(family) for n in names) == count, family
    for name in ("ve/cifar10_ncsnpp_deep_continuous", "ve/celebahq_256_ncsnpp_continuous", "ve/ffhq_ncsnpp_continuous",
                 "ve/bedroom_ncsnpp_continuous", "ve/church_ncsnpp_continuous", "vp/cifar10_ddpmpp_deep_continuous",
                 "subvp/cifar10_ncsnpp_deep_continuous", "vp/ddpm/church"):
        assert name in names


def test_preset_values_and_copies() -> None:
    deep = get_preset("ve/cifar10_ncsnpp_deep_continuous")
    assert deep["model"]["num_res_blocks"] == 8 and deep["training"]["n_iters"] == 950001
    assert deep["model"]["embedding_type"] == "fourier" and deep["model"]["sigma_max"] == 50
    ffhq = get_preset("configs/ve/ffhq_ncsnpp_continuous.py")  # the file's path also works
    assert ffhq["model"]["sigma_max"] == 1348 and ffhq["data"]["image_size"] == 1024
    assert ffhq["training"]["reduce_mean"] is True
    assert get_preset("ve/celebahq_ncsnpp_continuous")["training"]["reduce_mean"] is False
    bedroom = get_preset("ve/ncsnv2/bedroom")
    assert bedroom["model"]["name"] == "ncsnv2_128" and bedroom["data"]["image_size"] == 128
    assert bedroom["model"]["sigma_max"] == 190 and bedroom["model"]["num_scales"] == 1086
    assert get_preset("vp/ddpm/bedroom")["optim"]["lr"] == 2e-5
    deep["model"]["nf"] = 1
    assert get_preset("ve/cifar10_ncsnpp_deep_continuous")["model"]["nf"] == 128


def test_unknown_preset_suggests_close_names() -> None:
    with pytest.raises(ValueError, match=r"closest presets: ve/cifar10_ncsnpp_deep_continuous"):
        get_preset("ve/cifar10_ncsnpp_deep_continous")


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_builds(name: str) -> None:
    """Every preset's model section is accepted by its network (shrunk to stay fast) and gives an SDE."""
    config = get_preset(name)
    model = config["model"]
    unet = model["name"] in ("ncsnpp", "ddpm")
    model["nf"] = 32 if model["name"] == "ddpm" else 8
    if unet:
        model.update(ch_mult=model["ch_mult"][:2], num_res_blocks=1)
    config["data"]["image_size"] = 16
    net = build_network(config)
    assert sum(p.numel() for p in net.parameters()) > 0
    sde = build_sde(config)
    assert sde.N == model["num_scales"]
    assert isinstance(sde, SubVPSDE) == name.startswith("subvp/")
    if name.startswith("ve/"):
        assert isinstance(sde, VESDE) and sde.sigma_max == float(model["sigma_max"])


# ---- original .py config files ---------------------------------------------------------------------------


def _write_config_tree(root: Path, default_body: str, config_body: str) -> Path:
    (root / "configs" / "ve").mkdir(parents=True)
    (root / "configs" / "default_cifar10_configs.py").write_text(default_body)
    path = root / "configs" / "ve" / "tiny.py"
    path.write_text(config_body)
    return path


DEFAULTS_SOURCE = '''import ml_collections
import torch


def get_default_configs():
  config = ml_collections.ConfigDict()
  config.training = training = ml_collections.ConfigDict()
  config.training.batch_size = 128
  training.continuous = True
  config.model = model = ml_collections.ConfigDict()
  model.sigma_max = 50
  model.beta_max = 20.
  config.data = data = ml_collections.ConfigDict()
  data.image_size = 32
  config.seed = 42
  config.device = torch.device('cuda:0') if torch.cuda.is_available() else torch.device('cpu')
  return config
'''

CONFIG_SOURCE = '''"""A config in the original style."""
from configs.default_cifar10_configs import get_default_configs


def get_config():
  config = get_default_configs()
  training = config.training
  training.sde = 'vesde'
  training.continuous = False
  step_size = 0.0000062
  model = config.model
  model.ch_mult = (1, 2, 2, 2)
  model.fir_kernel = [1, 3, 3, 1]
  model.grad_clip = -1.
  config.data.image_size = 16
  return config
'''


def test_parse_config_file_follows_the_default_import(tmp_path: Path) -> None:
    config = parse_config_file(_write_config_tree(tmp_path, DEFAULTS_SOURCE, CONFIG_SOURCE))
    assert config == {
        "training": {"batch_size": 128, "continuous": False, "sde": "vesde"},
        "model": {"sigma_max": 50, "beta_max": 20.0, "ch_mult": [1, 2, 2, 2], "fir_kernel": [1, 3, 3, 1],
                  "grad_clip": -1.0},
        "data": {"image_size": 16},
        "seed": 42,
    }


def test_parse_config_file_falls_back_to_the_builtin_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cifar10_tiny.py"
    path.write_text(CONFIG_SOURCE)
    config = parse_config_file(path)
    expected = get_preset("ve/ncsn/cifar10")  # any CIFAR-10 preset carries the defaults
    assert config["optim"] == {"weight_decay": 0, "optimizer": "Adam", "lr": 2e-4, "beta1": 0.9, "eps": 1e-8,
                               "warmup": 5000, "grad_clip": 1.0}
    assert config["eval"] == expected["eval"] and config["data"]["image_size"] == 16


@pytest.mark.parametrize("body, message", [
    ("import os\nos.system('touch pwned')\n", "unsupported top-level statement"),
    ("def get_config():\n  config = open('x')\n  return config\n", r"call of open\(\)"),
    ("def get_config():\n  config = {}\n  config['a'] = __import__('os')\n  return config\n", "Subscript|call"),
    ("def get_config():\n  for i in range(3):\n    pass\n", "For"),
    ("def get_config():\n  config = {}\n  return config.training\n", "unknown config entry"),
])
def test_parse_config_refuses_code(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_config_source(body, "evil.py")
    assert not (tmp_path / "pwned").exists()


def test_config_files_importing_each_other_are_one_line(tmp_path: Path) -> None:
    """A configs/*.py file that imports itself, or two that import each other, was a RecursionError of 3007 lines:
    now one ValueError naming the cycle; a file that is not Python is one line naming file and line."""
    root = tmp_path / "configs"
    (root / "ve").mkdir(parents=True)
    loop = "from configs.default_{0}_configs import get_default_configs\n" \
           "def get_default_configs():\n  config = get_default_configs()\n  return config\n"
    (root / "default_a_configs.py").write_text(loop.format("b"))
    (root / "default_b_configs.py").write_text(loop.format("a"))
    path = root / "ve" / "uses_a.py"
    path.write_text("from configs.default_a_configs import get_default_configs\n"
                    "def get_config():\n  config = get_default_configs()\n  return config\n")
    with pytest.raises(ValueError, match=r"import each other in a cycle: default_a_configs.py -> "
                                         r"default_b_configs.py -> default_a_configs.py") as info:
        parse_config_file(path)
    assert "\n" not in str(info.value)
    (root / "ve" / "broken.py").write_text("def get_config(:\n  pass\n")
    with pytest.raises(ValueError, match=r"broken.py:1: not a Python file that can be parsed"):
        parse_config_file(root / "ve" / "broken.py")
