"""The one config package: one preset registry behind one resolver, the factory, choices from their owners, the
old import paths gone (the layering is tests/test_layering.py's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scoresde.config import (
    PRESETS,
    Config,
    build_network,
    build_score_model,
    build_sde,
    config_from_dict,
    get_preset,
    list_presets,
    load_config,
    resolve_config,
)
from scoresde.config import schema as schema_module
from scoresde.losses import fp_core as fp_module
from scoresde.models import PhaseSpaceScoreModel, ScoreModel
from scoresde.sdes import CONFIG_SDES, PSLD, VPSDE

SRC = Path(__file__).resolve().parents[2] / "src" / "scoresde"


def test_every_preset_resolves_through_the_one_resolver() -> None:
    names = list_presets()
    assert set(names) == set(PRESETS) and len(names) == len(set(names))
    families = {name.split("/")[0] for name in names}
    assert {"ve", "vp", "subvp", "toy", "digits", "psld", "cld", "fp"} <= families
    for name in names:
        values = resolve_config(name)
        assert values == get_preset(name) == PRESETS[name](), name
        cfg = load_config(name)  # every preset validates as a typed Config
        assert isinstance(cfg, Config) and cfg.training.sde in CONFIG_SDES, name
        assert resolve_config(cfg) == cfg.to_dict() and load_config(cfg) == cfg, name
    # an original preset may be named by its file; a fresh copy every time
    assert resolve_config("configs/vp/ddpm/cifar10.py") == get_preset("vp/ddpm/cifar10")
    first = resolve_config("digits/vp_ddpmpp")
    first["model"]["nf"] = 1
    assert resolve_config("digits/vp_ddpmpp")["model"]["nf"] == 32


def test_resolver_sources_agree(tmp_path: Path) -> None:
    values = get_preset("toy/two_moons")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(values))
    assert resolve_config(path) == resolve_config(str(path)) == resolve_config(values) == values
    assert resolve_config(config_from_dict(values)) == config_from_dict(values).to_dict()
    with pytest.raises(ValueError, match=r"unknown preset 'toy/two_moon'; closest presets: toy/two_moons"):
        resolve_config("toy/two_moon")
    with pytest.raises(FileNotFoundError):
        resolve_config(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError):
        resolve_config(tmp_path / "configs" / "missing.py")
    with pytest.raises(TypeError, match="a config must be"):
        resolve_config(3)


def test_factory_takes_every_kind_of_source(tmp_path: Path) -> None:
    """Fix 8(e): a preset name was iterated as a string."""
    model = build_score_model("toy/gaussian_mixture")
    assert isinstance(model, ScoreModel) and isinstance(model.sde, VPSDE) and model.sde.N == 500
    x, t = torch.randn(5, 2), torch.rand(5) * 0.9 + 0.05
    with torch.no_grad():
        assert model(x, t).shape == (5, 2)
    psld = build_score_model(load_config("toy/gaussian_mixture_psld"))
    assert isinstance(psld, PhaseSpaceScoreModel) and isinstance(psld.sde, PSLD)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(get_preset("toy/checkerboard")))
    torch.manual_seed(0)
    a = build_network(path)
    torch.manual_seed(0)
    b = build_network("toy/checkerboard")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert build_sde(str(path)).N == 500
    with pytest.raises(ValueError, match="unknown preset"):
        build_score_model("toy/gausian_mixtur")


def test_choices_come_from_their_owners() -> None:
    assert schema_module.SDES == tuple(CONFIG_SDES) == ("vesde", "vpsde", "subvpsde", "psld", "cld",
                                                            "discrete_vpsde", "edm", "cosine", "rectified_flow")
    assert schema_module.FP_MODES is fp_module.MODES and schema_module.FP_WEIGHTINGS is fp_module.WEIGHTINGS
    values = get_preset("toy/two_moons")
    values["training"]["sde"] = "karras"
    with pytest.raises(ValueError, match=r"unknown training\.sde 'karras'; valid values are: vesde, vpsde"):
        config_from_dict(values)


def test_the_old_import_paths_are_gone() -> None:
    """The compatibility layer was removed in 0.2.0 (CHANGELOG.md lists old -> new paths)."""
    import importlib

    for old in ("scoresde.configs", "scoresde.training.config", "scoresde.training.presets",
                "scoresde.training.presets_phase_space", "scoresde.checkpoint.build", "scoresde.checkpoint.legacy",
                "scoresde.sampling.grids", "scoresde.sampling.odeint", "scoresde.cli.plots", "scoresde.objectives"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
