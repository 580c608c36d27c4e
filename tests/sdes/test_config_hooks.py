"""The run-config hooks of the SDE classes: ``config_name`` / ``CONFIG_SDES``, ``model_config`` and its inverse
``from_model_config``, ``phase_space`` and ``original_conventions``."""

from __future__ import annotations

import pytest
import torch

from scoresde.sdes import (
    CLD,
    CONFIG_SDES,
    EDM,
    PSLD,
    SDE,
    VESDE,
    VPSDE,
    CosineVP,
    DiscreteVPSDE,
    RecipeSDE,
    RectifiedFlow,
    SubVPSDE,
)

NON_DEFAULT = {
    VESDE: {"sigma_min": 0.05, "sigma_max": 90.0, "N": 37},
    VPSDE: {"beta_min": 0.2, "beta_max": 15.0, "N": 40},
    SubVPSDE: {"beta_min": 0.3, "beta_max": 12.0, "N": 41},
    DiscreteVPSDE: {"beta_min": 0.1, "beta_max": 20.0, "N": 500},
    PSLD: {"beta_min": 2.0, "beta_max": 6.0, "nu": 3.0, "gamma": 0.1, "kappa": 0.2, "decomp_mode": "upper",
           "score_matching": "dsm", "N": 30},
    CLD: {"beta_min": 1.0, "beta_max": 5.0, "m_inv": 2.0, "kappa": 0.1, "friction": 1.5, "decomp_mode": "lower",
          "score_matching": "dsm", "N": 30},
    EDM: {"sigma_min": 0.01, "sigma_max": 40.0, "N": 18},
    CosineVP: {"s": 0.02, "N": 30},
    RectifiedFlow: {"N": 25},
}


def test_the_table_is_built_from_the_class_names() -> None:
    assert tuple(CONFIG_SDES) == ("vesde", "vpsde", "subvpsde", "psld", "cld", "discrete_vpsde", "edm", "cosine",
                                  "rectified_flow")
    assert all(cls.config_name == name for name, cls in CONFIG_SDES.items())
    assert SDE.config_name is None and RecipeSDE.config_name is None


@pytest.mark.parametrize("cls", list(NON_DEFAULT), ids=lambda c: c.__name__)
@pytest.mark.parametrize("default", [True, False])
def test_model_config_round_trips(cls: type[SDE], default: bool) -> None:
    sde = cls() if default else cls(**NON_DEFAULT[cls])
    model = sde.model_config()
    assert model["num_scales"] == sde.N
    assert set(model) <= {*cls.config_keys, *cls.config_options, "num_scales"}
    again = cls.from_model_config(model)
    assert type(again) is cls and again.describe() == sde.describe()


def test_phase_space_is_the_class_level_has_auxiliary() -> None:
    for cls in CONFIG_SDES.values():
        assert cls.phase_space == cls().has_auxiliary, cls


def test_cld_writes_and_reads_kappa() -> None:
    assert "gamma" not in CLD().model_config()
    sde = CLD.from_model_config({"beta_min": 4.0, "beta_max": 4.0, "num_scales": 10, "kappa": 0.3})
    assert sde.kappa == 0.3 and CLD.from_model_config(CLD(kappa=0.3).model_config()).kappa == 0.3
    with pytest.raises(ValueError, match=r"model\.gamma = 0\.3 has no meaning for CLD"):  # never silently ignored
        CLD.from_model_config({"beta_min": 4.0, "beta_max": 4.0, "num_scales": 10, "gamma": 0.3})


def test_from_model_config_reads_floats_and_names_a_missing_key() -> None:
    sde = CONFIG_SDES["vesde"].from_model_config({"sigma_min": 1, "sigma_max": "50", "num_scales": 10.0})
    assert (sde.sigma_min, sde.sigma_max, sde.N) == (1.0, 50.0, 10)
    with pytest.raises(KeyError, match="sigma_min"):
        VESDE.from_model_config({"sigma_max": 50.0, "num_scales": 10})
    with pytest.raises(KeyError, match="num_scales"):
        VPSDE.from_model_config({"beta_min": 0.1, "beta_max": 20.0})
    with pytest.raises(ValueError, match=r"RecipeSDE has no training\.sde name"):
        RecipeSDE.from_model_config({"num_scales": 10})


@pytest.mark.parametrize(("sde", "match"), [
    (VESDE(T=2.0), "VESDE has T=2.0"),
    (PSLD(T=0.5), "PSLD has T=0.5"),
    (VPSDE(prior_mean=1.0), "VPSDE has prior_mean=1.0"),
    (SubVPSDE(prior_mean=torch.zeros(3)), "SubVPSDE has prior_mean=a tensor"),
    (DiscreteVPSDE(N=100).with_steps(10), "N=10 steps on a table of num_train_timesteps=100"),
    (RecipeSDE([[0.5]], [[0.0]], [[1.0]], beta_min=0.1, beta_max=20.0), r"RecipeSDE has no training\.sde name"),
])
def test_model_config_refuses_what_a_config_cannot_hold(sde: SDE, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sde.model_config()


def test_original_conventions() -> None:
    for cls in (VPSDE, DiscreteVPSDE):
        assert cls().original_conventions(True) == ("time", "eps")
        assert cls().original_conventions(False) == ("timestep", "eps")
    assert VESDE().original_conventions(True) == ("sigma", "score")
    assert VESDE().original_conventions(False) == ("sigma_index", "score")
    assert SubVPSDE().original_conventions(True) == SubVPSDE().original_conventions(False) == ("time", "eps")
    with pytest.raises(ValueError, match="no original Score SDE convention for PSLD; pass label_type and output_type"):
        PSLD().original_conventions(True)
