"""Typed configs: every preset loads; bad keys, types and values give one clear error naming them."""

from __future__ import annotations

import json

import pytest

from scoresde.config import ConfigError, apply_overrides, config_from_dict, load_config
from scoresde.config import list_presets as list_all_presets


def test_every_preset_loads_as_a_typed_config() -> None:
    names = list_all_presets()
    assert "ve/cifar10_ncsnpp_deep_continuous" in names and "digits/vp_ddpmpp" in names
    assert len([n for n in names if not n.startswith(("toy/", "digits/"))]) >= 39
    for name in names:
        cfg = load_config(name)
        assert cfg.training.sde in ("vesde", "vpsde", "subvpsde", "psld", "cld", "edm", "rectified_flow"), name
        assert "name" in cfg.model


def test_original_values_are_kept() -> None:
    cfg = load_config("ve/cifar10_ncsnpp_deep_continuous")
    assert (cfg.training.batch_size, cfg.training.n_iters, cfg.optim.lr, cfg.optim.warmup) == (128, 950001, 2e-4, 5000)
    assert cfg.model["num_res_blocks"] == 8 and cfg.model["fir"] is True and cfg.sampling.snr == 0.16
    assert load_config("vp/ddpm/cifar10").training.continuous is False


def test_overrides_parse_json_values() -> None:
    cfg = load_config("digits/vp_ddpmpp", ["training.batch_size=32", "model.ch_mult=[1, 2]", "data.random_flip=true",
                                           "sampling.method=ode", "seed=7", "optim.lr=1e-3"])
    assert cfg.training.batch_size == 32 and cfg.model["ch_mult"] == [1, 2] and cfg.data.random_flip is True
    assert cfg.sampling.method == "ode" and cfg.seed == 7 and cfg.optim.lr == 1e-3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["training.batchsize=3"], r"unknown config key training.batchsize; did you mean batch_size\?"),
        (["trainin.n_iters=3"], r"unknown config section trainin; did you mean training\?"),
        (["model.nff=3"], r"unknown config key model.nff; did you mean nf\?"),
        (["training.batch_size=abc"], r"training.batch_size must be of type int, got 'abc' \(str\)"),
        (["training.batch_size=2.5"], r"training.batch_size must be of type int, got 2.5"),
        (["data.random_flip=3"], r"data.random_flip must be of type bool, got 3"),
        (["training.sde=edn"], r"unknown training.sde 'edn'; valid values are: vesde, vpsde, .*, edm, "),
        (["training.amp=fp8"], r"unknown training.amp 'fp8'; valid values are: none, bf16, fp16"),
        (["training.batch_size=0"], r"training.batch_size must be an integer in \[1, 2147483647\], got 0"),
        (["training.batch_size"], r"must look like section.key=value"),
    ],
)
def test_bad_overrides_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("digits/vp_ddpmpp", overrides)


def test_unknown_preset_lists_close_names(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'digitz/vp_ddpmpp'; closest presets: digits/vp_ddpmpp"):
        load_config("digitz/vp_ddpmpp")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(load_config("toy/checkerboard").to_dict()))
    assert load_config(str(path)).data.dataset == "checkerboard"
    with pytest.raises(FileNotFoundError):
        load_config(str(tmp_path / "missing.json"))


def test_ignored_original_keys_and_round_trip() -> None:
    values = load_config("toy/two_moons").to_dict()
    values["device"] = "cuda:0"  # the originals carry a device; where to run is the launcher's choice
    values["training"]["continuouse"] = False  # an original typo the original code never reads
    cfg = config_from_dict(values)
    assert cfg.training.continuous is True
    assert config_from_dict(cfg.to_dict()) == cfg
    assert apply_overrides(cfg.to_dict(), [])["training"] == cfg.to_dict()["training"]
