"""The one config -> model factory: a network, an SDE and a score model from a config.

This is the one place that maps config entries to constructor arguments (``run_lib``/``models.utils`` of the
original): ``model.name`` picks the network (:data:`NETWORKS`), ``training.sde`` the SDE
(:data:`scoresde.sdes.CONFIG_SDES` and the class's :meth:`~scoresde.sdes.SDE.from_model_config`, e.g.
``VESDE(sigma_min, sigma_max, N=num_scales)``),
``training.continuous`` the label convention. Every builder takes anything :func:`~scoresde.config.resolve_config`
does: a dict, a typed :class:`~scoresde.config.Config`, a ``.json``/original ``.py`` file or a preset name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..models import PhaseSpaceScoreModel, ScoreModel
from ..models.phase_space_model import MODEL_KEYS as PHASE_SPACE_MODEL_KEYS
from ..models.preconditioning import PRECONDITIONINGS
from ..nets import CONDITIONAL_NETWORKS, SCORE_NETWORKS, NCSNpp
from ..nets.ncsn import NCSNV2_VARIANTS
from ..numerics.checks import check_choice, check_flag
from ..sdes import CONFIG_SDES
from ..sdes.base import SDE
from .resolve import ConfigLike, resolve_config

__all__ = ["CLASS_MODEL_KEYS", "CONDITIONAL_NETWORK_NAMES", "NETWORKS", "NETWORK_DATA_KEYS",
           "PRECONDITIONING_MODEL_KEYS", "RUNTIME_MODEL_KEYS", "build_network", "build_score_model", "build_sde",
           "default_dtype"]

#: ``model.name`` -> builder ``(model_section, data_section) -> nn.Module``.
#: read from each class of :data:`scoresde.nets.catalog.SCORE_NETWORKS` (its ``config_names`` and ``from_config``)
NETWORKS: dict[str, Any] = {name: net.from_config for net in SCORE_NETWORKS for name in net.config_names}


#: the ``model.name`` values whose networks take ``model.num_classes`` / ``model.null_label`` (class conditioning)
CONDITIONAL_NETWORK_NAMES = tuple(name for net in CONDITIONAL_NETWORKS for name in net.config_names)
#: the ``model`` keys of class conditioning (:class:`scoresde.nets.embeddings.ClassEmbedding`)
CLASS_MODEL_KEYS = ("num_classes", "null_label")
#: model keys that change how a network runs, not what it computes (settable on any preset of the U-Nets that take
#: them: ``model.checkpointing`` = activation checkpointing per block, on NCSNpp and DDPM; ``model.channels_last`` =
#: the network's 4-D weights, hence its convolutions, in NHWC memory order, on every image network)
RUNTIME_MODEL_KEYS = ("checkpointing", "channels_last")
#: model keys of the adapter, not the network: ``model.preconditioning`` (a row of Karras et al. Table 1,
#: :data:`scoresde.models.preconditioning.PRECONDITIONINGS`) and ``model.sigma_data`` (its data std; also read by the
#: ``edm`` / ``soft_min_snr`` loss weightings)
PRECONDITIONING_MODEL_KEYS = ("preconditioning", "sigma_data")

#: the SDE ``model`` keys that Score SDE's networks read too (their noise-level table): every other key of the
#: ``training.sde`` class's ``config_keys`` is removed before the network is built
NETWORK_SDE_KEYS = frozenset({"sigma_min", "sigma_max", "num_scales"})

#: the ``data`` keys a network reads (the NCSN family reads ``channels`` in the original code)
NETWORK_DATA_KEYS = frozenset({"image_size", "num_channels", "centered", "channels"})

_NCSN_NAMES = frozenset({"ncsn", *NCSNV2_VARIANTS})


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if name not in config or not isinstance(config[name], Mapping):
        raise ValueError(f"config has no {name!r} section (sections: {sorted(config)})")
    return config[name]


def build_network(config: ConfigLike) -> nn.Module:
    """The network named by ``model.name`` (``ncsnpp``, ``ddpm``, ``ncsn``, ``ncsnv2_64/128/256``, ``toy_mlp``),
    randomly initialised from the ``model`` section and the network's part of the ``data`` section.

    Only :data:`NETWORK_DATA_KEYS` of ``data`` reach the network: the rest of that section (dataset name, file
    locations, augmentation) belongs to the data pipeline. ``model.channels_last`` is not a constructor option: it
    lays the built network out in NHWC order (:func:`_memory_format`).
    """
    config = resolve_config(config)
    return _memory_format(_network(config), _section(config, "model"))


def _network(config: Mapping[str, Any]) -> nn.Module:
    model = {k: v for k, v in _section(config, "model").items()  # a layout and the adapter's keys: not options
             if k != "channels_last" and k not in PRECONDITIONING_MODEL_KEYS}
    data = {k: v for k, v in _section(config, "data").items() if k in NETWORK_DATA_KEYS}
    name = model.get("name")
    if name not in NETWORKS:
        raise ValueError(f"unknown model.name {name!r}; supported networks: {', '.join(sorted(NETWORKS))}")
    if name not in CONDITIONAL_NETWORK_NAMES and any(key in model for key in CLASS_MODEL_KEYS):
        raise ValueError(f"model.name {name!r} has no class conditioning (model.num_classes / model.null_label); the "
                         f"class-conditional networks are {', '.join(CONDITIONAL_NETWORK_NAMES)}")
    sde_cls = CONFIG_SDES.get(str(config.get("training", {}).get("sde", "")).lower())
    if sde_cls is not None and sde_cls.phase_space and name == "ncsnpp":
        # phase space: the network sees [x, m] (2C channels) and predicts the noise of both blocks (2C) or of
        # the momentum only (C, ``model.blocks = 'momentum'``); the SDE keys of `model` are not network options
        model = {k: v for k, v in model.items() if k not in sde_cls.config_options and k not in PHASE_SPACE_MODEL_KEYS}
        c = int(data.get("num_channels", 3))
        out = c if _section(config, "model").get("blocks", "all") == "momentum" else 2 * c
        return NCSNpp.from_config(model, data, in_channels=2 * c, out_channels=out)
    if sde_cls is not None:  # the SDE's keys (e.g. CosineVP's cosine_s) are not network options
        model = {k: v for k, v in model.items() if k not in set(sde_cls.config_keys) - NETWORK_SDE_KEYS}
    return NETWORKS[name](model, data)


def _sde_name(config: Mapping[str, Any]) -> str:
    training = _section(config, "training")
    if "sde" in training:
        return str(training["sde"]).lower()
    # configs/ve/ncsn/celeba.py sets training.loss = 'vesde' instead of training.sde (an original typo).
    if _section(config, "model").get("name") in _NCSN_NAMES:
        return "vesde"
    raise ValueError(f"config has no training.sde ({', '.join(repr(n) for n in CONFIG_SDES)})")


def build_sde(config: ConfigLike) -> SDE:
    """The SDE of ``training.sde`` (:data:`scoresde.sdes.CONFIG_SDES`) with the ``model`` section's parameters and
    ``N = model.num_scales`` (:meth:`~scoresde.sdes.SDE.from_model_config`)."""
    config = resolve_config(config)
    model = _section(config, "model")
    name = _sde_name(config)
    return CONFIG_SDES[check_choice("training.sde", name, tuple(CONFIG_SDES))].from_model_config(model)


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


def _memory_format(net: nn.Module, model: Mapping[str, Any]) -> nn.Module:
    """``net`` with its 4-D weights in channels_last (NHWC) order when ``model.channels_last`` is true.

    Convolutions then run oneDNN's NHWC kernels (inputs are converted by the first convolution; outputs equal the
    NCHW ones to float rounding). On the 2-core AMD CPU of benchmarks/RESULTS.md ("Side by side with the original")
    it makes the NCSN++ forward 1.1-1.2x faster (sampling, evaluation) and the training step up to 10% slower
    (PyTorch's GroupNorm is slower on NHWC inputs); on GPUs it is the layout tensor cores want for bf16/fp16.
    A network without convolutions is refused (the option would do nothing).
    """
    if not check_flag("model.channels_last", model.get("channels_last", False)):
        return net
    if not any(p.dim() == 4 for p in net.parameters()):
        raise ValueError(f"model.channels_last: {type(net).__name__} ({model.get('name')!r}) has no convolution to lay "
                         "out; it applies to the image networks (ncsnpp, ddpm, ncsn, ncsnv2_*)")
    return net.to(memory_format=torch.channels_last)


def _preconditioning(model: Mapping[str, Any], net: nn.Module, sde: SDE) -> dict[str, Any]:
    """``ScoreModel``'s preconditioning arguments from ``model.preconditioning`` / ``model.sigma_data`` (``{}`` without
    preconditioning), or one ``ValueError``: a phase-space SDE, or a network that divides by its noise label or takes
    its log (a preconditioned network is fed ``c_noise``, which may be <= 0)."""
    name = model.get("preconditioning")
    if name is None:
        return {}
    check_choice("model.preconditioning", name, tuple(PRECONDITIONINGS))
    if sde.has_auxiliary:
        raise ValueError(f"model.preconditioning={name!r} needs a scalar SDE, not {type(sde).__name__}")
    if getattr(net, "scale_by_sigma", False) or (
            getattr(net, "embedding_type", None) == "fourier" and getattr(net, "fourier_log", True)):
        raise ValueError(f"model.preconditioning={name!r}: the network divides its output by its noise label or "
                         "embeds its log (scale_by_sigma, Fourier features of logs); a preconditioned network is "
                         "fed c_noise and scaled by c_out: set model.scale_by_sigma=false and model.fourier_log=false")
    return {"preconditioning": name, "sigma_data": model.get("sigma_data")}


def build_score_model(config: ConfigLike, *, dtype: torch.dtype | None = None
                      ) -> ScoreModel | PhaseSpaceScoreModel:
    """A randomly initialised score model for ``config`` with the original conventions (README §4): a
    :class:`~scoresde.models.ScoreModel`, or a :class:`~scoresde.models.PhaseSpaceScoreModel` for a phase-space
    ``training.sde``.

    ``config`` is anything :func:`~scoresde.config.resolve_config` takes (e.g. ``"toy/gaussian_mixture"``).
    ``dtype`` (e.g. ``torch.float64``) casts the network and builds the SDE's discrete tables in that dtype;
    ``None`` keeps the original dtypes (float32 weights, float64 ``sigmas`` buffers).
    """
    config = resolve_config(config)
    net = build_network(config)
    with default_dtype(dtype):
        sde = build_sde(config)
    # NCSN/NCSNv2 take only integer noise indices: discrete labels whatever training.continuous says (the
    # preset ve/ncsnv2/bedroom leaves continuous=True through an original typo, 'continuouse').
    model_section = _section(config, "model")
    continuous = bool(_section(config, "training").get("continuous", True))
    continuous = continuous and model_section.get("name") not in _NCSN_NAMES
    if dtype is not None:
        net = net.to(dtype)  # (keeps the memory format)
    precond = _preconditioning(model_section, net, sde)
    if precond:
        return ScoreModel(net, sde, continuous=continuous, **precond).eval()
    if sde.has_auxiliary:  # noise prediction of the full state, raw t (PSLD's convention)
        var = model_section.get("mixed_data_var")
        return PhaseSpaceScoreModel(net, sde, blocks=str(model_section.get("blocks", "all")),
                                    mixed_score=bool(model_section.get("mixed_score", False)),
                                    mixed_data_var=None if var is None else float(var)).eval()
    fixed = getattr(type(net), "adapter_conventions", None)  # the network's own conventions (the toy MLP's)
    if fixed is not None:
        return ScoreModel(net, sde, continuous=True, label_type=fixed[0], output_type=fixed[1]).eval()
    return ScoreModel(net, sde, continuous=continuous).eval()
