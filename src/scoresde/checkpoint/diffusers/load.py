"""Loading a diffusers folder as a ready scoresde model: :func:`load_diffusers`, and the weights alone for import.

Reads the folder (:mod:`.folder`), translates its configs (:mod:`.translate`), builds the network and maps the weights
into it (:mod:`.keymap`). Use :func:`scoresde.load_checkpoint` for scoresde runs and the original Score SDE / PSLD
checkpoints (it passes diffusers folders on to :func:`load_diffusers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...config import build_network, build_score_model
from ...models import ScoreModel
from ...sdes.base import SDE
from ..loaded import loaded_model
from .folder import read_diffusers_folder
from .keymap import check_groups, diffusers_key_map, map_into
from .translate import diffusers_config

__all__ = ["diffusers_network_state", "load_diffusers"]


def load_diffusers(
    path: str | Path,
    *,
    sde: SDE | None = None,
    continuous: bool | None = None,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> ScoreModel:
    """A local diffusers pipeline or model folder as a ready scoresde model (:mod:`scoresde.checkpoint.diffusers`).

    Use it for models published in the diffusers format (``google/ddpm-cifar10-32``, ``google/ncsnpp-celebahq-256``,
    ... downloaded with ``huggingface-cli download`` or ``snapshot_download``; scoresde never fetches); use
    :func:`scoresde.load_checkpoint` for scoresde runs and the original Score SDE / PSLD checkpoints.

    Args:
        path: a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``), a model folder (``config.json`` and
            ``diffusion_pytorch_model.safetensors`` or ``.bin``; a ``scheduler_config.json`` beside them is used),
            or a file in one.
        sde: the SDE of a folder without a scheduler config (``VESDE``, ``VPSDE``, ``SubVPSDE``, ``DiscreteVPSDE``:
            :data:`~scoresde.checkpoint.diffusers.translate.FOLDER_SDES`).
        continuous: the time convention (:func:`diffusers_config`): default the discrete DDPM chain for DDPM-type
            schedulers (SDE :class:`~scoresde.sdes.DiscreteVPSDE`, the schedule of ``alphas_cumprod``) and timestep
            embeddings, continuous for Score SDE schedulers and Fourier embeddings.
        map_location: device of the model.
        dtype: cast the network and build the SDE tables in this dtype (``None``: float32).

    Returns:
        a :class:`~scoresde.models.ScoreModel` in eval mode with ``model.config`` (its scoresde config: network,
        data shape, SDE) and ``model.step = 0``. Every sampler, the likelihood and guidance take it.

    Raises:
        IncompatibleCheckpointError (a ``ValueError``): a pipeline or model class that is not supported, config
            fields without a counterpart (named), mismatched weights (the keys are named), an unsupported scheduler.
        ValueError: ``sde`` missing for a folder without a scheduler, or given with one.
        FileNotFoundError: ``path`` does not exist or holds no diffusers folder.
    """
    unet_config, state, scheduler = read_diffusers_folder(path)
    config = diffusers_config(unet_config, scheduler, sde=sde, continuous=continuous)
    return _build_loaded(config, unet_config, state, map_location, dtype)


def _build_loaded(config: dict[str, Any], unet_config: Mapping[str, Any], state: Mapping[str, Tensor],
                  map_location: str | torch.device, dtype: torch.dtype | None) -> ScoreModel:
    model = build_score_model(config, dtype=dtype)
    model.net.load_state_dict(_mapped_state(model.net, unet_config, state), strict=True)
    return loaded_model(model.to(map_location).eval(), 0, config)


def diffusers_network_state(unet_config: Mapping[str, Any], state: Mapping[str, Tensor], config: Mapping[str, Any]
                            ) -> dict[str, Tensor]:
    """A diffusers UNet's weights (``state``, with its ``unet_config``: :func:`read_diffusers_folder`) as the state
    dict of the network ``config`` builds (for importing into a run folder; ``config`` as :func:`diffusers_config`
    returns it, with any overrides)."""
    return _mapped_state(build_network(config), unet_config, state)


def _mapped_state(net: nn.Module, unet_config: Mapping[str, Any], state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    km = diffusers_key_map(net, unet_config)
    check_groups(net, km)
    return map_into(net, km, state)

