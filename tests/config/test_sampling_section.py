"""The config's ``sampling`` section is derived from the sampler registry: every option of every sampler is a field
with the sampler's default (under Score SDE's name where it has one), and the section calls any sampler."""

from __future__ import annotations

import dataclasses

import pytest

from scoresde.config import ConfigError, SamplingConfig, apply_overrides, config_from_dict, get_preset
from scoresde.sampling import SAMPLERS

BASE_DEFAULTS = {"noise_removal": True, "ode_method": "dopri5", "grid": None, "eps": None, "steps": None}


def test_every_sampler_option_is_a_field() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(SamplingConfig)}
    for spec in SAMPLERS.values():
        for option, default in spec.options().items():
            if option in ("progress", "times"):
                continue
            name = spec.config_names.get(option, option)
            assert name in fields, (spec.name, option)
            expected = BASE_DEFAULTS.get(name, default)
            assert fields[name] == expected or name in ("noise_removal", "method"), (spec.name, option)


@pytest.mark.parametrize("method", list(SAMPLERS))
def test_the_section_calls_every_sampler_with_valid_options(method: str) -> None:
    name, options = SamplingConfig(method=method).sampler_call()
    assert name == method
    SAMPLERS[method].check_options(options)  # nothing it does not take
    # everything it takes, except the grid: None in the config means the sampler's own default grid
    assert set(options) == set(SAMPLERS[method].options()) - {"progress", "times", "grid"}
    name, options = SamplingConfig(method=method, grid="uniform").sampler_call()
    assert options.get("grid", "uniform") == "uniform"


def test_the_section_is_strict_json_for_every_sampler() -> None:
    """No ``Infinity``/``NaN`` in config.json (heun's ``s_tmax`` default is ``None``: no upper bound)."""
    import json

    for method in SAMPLERS:
        values = apply_overrides(get_preset("digits/vp_ddpmpp"), [f"sampling.method={method}"])
        json.dumps(config_from_dict(values).to_dict(), allow_nan=False)
    assert SamplingConfig().s_tmax is None


def test_ddim_options_through_a_config_and_overrides() -> None:
    values = apply_overrides(get_preset("digits/vp_ddpmpp"), ["sampling.method=ddim", "sampling.eta=0.3",
                                                              "sampling.steps=20", "sampling.grid=logSNR"])
    cfg = config_from_dict(values)
    assert cfg.sampling.sampler_call() == ("ddim", {"steps": 20, "nfe": None, "eta": 0.3, "grid": "logSNR", "rho": 7.0,
                                                    "eps": None, "denoise": True, "flow": "kernel"})
    with pytest.raises(ConfigError, match=r"unknown sampling\.method 'nope'; valid values are: pc, ode, sscs"):
        config_from_dict(apply_overrides(values, ["sampling.method=nope"]))
    with pytest.raises(ConfigError, match=r"unknown sampling\.grid 'cosine'"):
        config_from_dict(apply_overrides(values, ["sampling.grid=cosine"]))


def test_an_option_the_chosen_sampler_does_not_take_is_an_error_not_ignored() -> None:
    values = get_preset("digits/vp_ddpmpp")
    with pytest.raises(ConfigError, match=r"sampling\.steps = 50 is not an option of sampler 'ode'.*pc, sscs, ddim"):
        config_from_dict(apply_overrides(values, ["sampling.method=ode", "sampling.steps=50"]))
    with pytest.raises(ConfigError, match=r"sampling\.eta = 0\.5 is not an option of sampler 'pc'.*ddim"):
        config_from_dict(apply_overrides(values, ["sampling.eta=0.5"]))
    config_from_dict(apply_overrides(values, ["sampling.method=ode", "sampling.snr=0.2"]))  # Score SDE's own fields
