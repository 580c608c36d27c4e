"""From an original-layout config (nested dicts) to a network, an SDE and a :class:`~scoresde.models.ScoreModel`.

This is the one factory that maps config entries to constructor arguments (``run_lib``/``models.utils`` of the
original): ``model.name`` picks the network, ``training.sde`` the SDE (``VESDE(sigma_min, sigma_max,
N=num_scales)``, ``VPSDE``/``SubVPSDE(beta_min, beta_max, N=num_scales)``), ``training.continuous`` the
label convention.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..configs import get_preset, parse_config_file
from ..models import PhaseSpaceScoreModel, ScoreModel
from ..models.phase_space import MODEL_KEYS as PHASE_SPACE_MODEL_KEYS
from ..nets import DDPM, NCSNpp, ncsn_from_config
from ..nets.ncsn import NCSNV2_VARIANTS
from ..nets.toy import ToyMLP
from ..sdes import CLD, PSLD, VESDE, VPSDE, ScalarSDE, SubVPSDE
from ..sdes.phase_space import RecipeSDE

__all__ = ["NETWORKS", "build_network", "build_score_model", "build_sde", "resolve_config"]

ConfigLike = Mapping[str, Any] | str | Path

#: ``model.name`` -> builder ``(model_section, data_section) -> nn.Module``.
NETWORKS: dict[str, Any] = {
    "ncsnpp": NCSNpp.from_config,
    "ddpm": DDPM.from_config,
    "ncsn": ncsn_from_config,
    **dict.fromkeys(NCSNV2_VARIANTS, ncsn_from_config),
    "toy_mlp": ToyMLP.from_config,
}

#: phase-space SDEs and the ``model`` keys that parameterise them (besides beta_min, beta_max, num_scales)
PHASE_SPACE_SDES = {"psld": ("nu", "gamma", "kappa", "decomp_mode", "score_matching"),
                    "cld": ("m_inv", "gamma", "friction", "decomp_mode", "score_matching")}

#: the ``data`` keys a network reads (the NCSN family reads ``channels`` in the original code)
NETWORK_DATA_KEYS = frozenset({"image_size", "num_channels", "centered", "channels"})

_NCSN_NAMES = frozenset({"ncsn", *NCSNV2_VARIANTS})


def resolve_config(config: ConfigLike) -> dict[str, Any]:
    """The config as nested dicts, from a dict, a ``*.json`` file, an original ``configs/**.py`` file (parsed,
    never executed: :func:`scoresde.configs.parse_config_file`) or a preset name (:func:`scoresde.configs.get_preset`).
    """
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config))
    if not isinstance(config, (str, Path)):
        raise TypeError(f"config must be a dict, a path or a preset name, got {type(config).__name__}")
    path = Path(config)
    if path.suffix == ".json" and path.is_file():
        return json.loads(path.read_text())
    if path.suffix == ".py" and path.is_file():
        return parse_config_file(path)
    if path.suffix in (".json", ".py"):
        raise FileNotFoundError(f"config file {path} does not exist")
    return get_preset(str(config))


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if name not in config or not isinstance(config[name], Mapping):
        raise ValueError(f"config has no {name!r} section (sections: {sorted(config)})")
    return config[name]


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """The network named by ``model.name`` (``ncsnpp``, ``ddpm``, ``ncsn``, ``ncsnv2_64/128/256``, ``toy_mlp``),
    randomly initialised from the ``model`` section and the network's part of the ``data`` section.

    Only :data:`NETWORK_DATA_KEYS` of ``data`` reach the network: the rest of that section (dataset name, file
    locations, augmentation) belongs to the data pipeline.
    """
    model = _section(config, "model")
    data = {k: v for k, v in _section(config, "data").items() if k in NETWORK_DATA_KEYS}
    name = model.get("name")
    if name not in NETWORKS:
        raise ValueError(f"unknown model.name {name!r}; supported networks: {', '.join(sorted(NETWORKS))}")
    sde = str(config.get("training", {}).get("sde", "")).lower()
    if sde in PHASE_SPACE_SDES and name == "ncsnpp":
        # phase space: the network sees [x, m] (2C channels) and predicts the noise of both blocks (2C) or of
        # the momentum only (C, ``model.blocks = 'momentum'``); the SDE keys of `model` are not network options
        model = {k: v for k, v in model.items() if k not in PHASE_SPACE_SDES[sde] and k not in PHASE_SPACE_MODEL_KEYS}
        c = int(data.get("num_channels", 3))
        out = c if _section(config, "model").get("blocks", "all") == "momentum" else 2 * c
        return NCSNpp.from_config(model, data, in_channels=2 * c, out_channels=out)
    return NETWORKS[name](model, data)


def _sde_name(config: Mapping[str, Any]) -> str:
    training = _section(config, "training")
    if "sde" in training:
        return str(training["sde"]).lower()
    # configs/ve/ncsn/celeba.py sets training.loss = 'vesde' instead of training.sde (an original typo).
    if _section(config, "model").get("name") in _NCSN_NAMES:
        return "vesde"
    raise ValueError("config has no training.sde ('vesde', 'vpsde' or 'subvpsde')")


def build_sde(config: Mapping[str, Any]) -> ScalarSDE | RecipeSDE:
    """The SDE of ``training.sde`` with the ``model`` section's parameters and ``N = model.num_scales``."""
    model = _section(config, "model")
    name = _sde_name(config)
    n = int(model["num_scales"])
    if name == "vesde":
        return VESDE(sigma_min=float(model["sigma_min"]), sigma_max=float(model["sigma_max"]), N=n)
    if name == "vpsde":
        return VPSDE(beta_min=float(model["beta_min"]), beta_max=float(model["beta_max"]), N=n)
    if name == "subvpsde":
        return SubVPSDE(beta_min=float(model["beta_min"]), beta_max=float(model["beta_max"]), N=n)
    if name in PHASE_SPACE_SDES:
        kwargs = {k: model[k] for k in PHASE_SPACE_SDES[name] if k in model}
        cls = PSLD if name == "psld" else CLD
        return cls(beta_min=float(model["beta_min"]), beta_max=float(model["beta_max"]), N=n, **kwargs)
    raise ValueError(f"unknown training.sde {name!r}; allowed: 'vesde', 'vpsde', 'subvpsde', 'psld', 'cld'")


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype | None) -> Iterator[None]:
    """Temporarily set torch's default dtype (the SDEs build their discrete tables in it)."""
    if dtype is None:
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_score_model(config: Mapping[str, Any], *, dtype: torch.dtype | None = None
                      ) -> ScoreModel | PhaseSpaceScoreModel:
    """A randomly initialised :class:`ScoreModel` for ``config`` with the original conventions (README §4).

    ``dtype`` (e.g. ``torch.float64``) casts the network and builds the SDE's discrete tables in that dtype;
    ``None`` keeps the original dtypes (float32 weights, float64 ``sigmas`` buffers).
    """
    net = build_network(config)
    with default_dtype(dtype):
        sde = build_sde(config)
    # NCSN/NCSNv2 take only integer noise indices: discrete labels whatever training.continuous says (the
    # preset ve/ncsnv2/bedroom leaves continuous=True through an original typo, 'continuouse').
    continuous = bool(_section(config, "training").get("continuous", True))
    continuous = continuous and _section(config, "model").get("name") not in _NCSN_NAMES
    if dtype is not None:
        net = net.to(dtype)
    if isinstance(sde, RecipeSDE):  # phase space: noise prediction of the full state, raw t (PSLD's convention)
        m = _section(config, "model")
        var = m.get("mixed_data_var")
        return PhaseSpaceScoreModel(net, sde, blocks=str(m.get("blocks", "all")),
                                    mixed_score=bool(m.get("mixed_score", False)),
                                    mixed_data_var=None if var is None else float(var)).eval()
    if isinstance(net, ToyMLP):  # scoresde's toy network: fed 999 t like the VP networks, predicts the noise
        return ScoreModel(net, sde, continuous=True, label_type="time", output_type="eps").eval()
    return ScoreModel(net, sde, continuous=continuous).eval()
