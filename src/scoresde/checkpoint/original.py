"""Checkpoints of the original Score SDE PyTorch code (``utils.save_checkpoint``): read, load, convert.

An original checkpoint is a ``torch.save`` of ``{'model': state_dict of DataParallel(model), 'ema':
{'decay', 'num_updates', 'shadow_params'}, 'optimizer': Adam state_dict, 'step': int}``. It is read with
``torch.load(weights_only=True)`` only, so loading never executes code from the file. The ``module.`` prefix is
stripped, the EMA ``shadow_params`` list (trainable parameters only, in ``model.parameters()`` order: the Fourier
``W`` is skipped) is matched to its parameters, and the float64 ``sigmas`` buffers are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..models import ScoreModel
from ..nets import ncsn as ncsn_nets
from ..nets.layers import (
    IncompatibleCheckpointError,
    OriginalCheckpointMixin,
    load_original_checkpoint,
    original_ema_state_dict,
)
from .build import ConfigLike, build_score_model, resolve_config

__all__ = [
    "LoadedCheckpoint",
    "guess_architecture",
    "load_original_weights",
    "load_score_sde_checkpoint",
    "original_state_dicts",
    "read_original_checkpoint",
]


class LoadedCheckpoint(NamedTuple):
    """What the checkpoint loaders return: the ready :class:`ScoreModel` (eval mode), the training step and
    the resolved config (nested dicts). Unpacks as ``model, step, config = load_score_sde_checkpoint(...)``."""

    model: ScoreModel
    step: int
    config: dict[str, Any]


def read_original_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` of an original checkpoint, checked to have a ``'model'`` entry."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory: for checkpoints in scoresde's own format use "
                                "scoresde.checkpoint.load_checkpoint")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        keys = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise IncompatibleCheckpointError(f"{path} is not a Score SDE checkpoint: expected a dict with a 'model' "
                                          f"state dict (and 'ema', 'optimizer', 'step'), got {keys}")
    return dict(ckpt)


def guess_architecture(state_dict: Mapping[str, Tensor]) -> str:
    """A readable guess of the network a state dict belongs to, from its keys (used in error messages)."""
    keys = {k.removeprefix("module.") for k in state_dict}
    if "begin_conv.weight" in keys:
        if any(k.endswith("embed.weight") for k in keys):
            return "ncsn (NCSNv1: conditional InstanceNorm++ embeddings)"
        return "ncsnv2 (unconditional RefineNet with a sigmas buffer)"
    indices = {int(k.split(".")[1]) for k in keys if k.startswith("all_modules.") and k.split(".")[1].isdigit()}
    if indices:
        embedding = "Fourier" if "all_modules.0.W" in keys else "sinusoidal"
        return f"an all_modules U-Net (ncsnpp or ddpm) with {max(indices) + 1} modules and a {embedding} embedding"
    return "unknown (no key of a Score SDE network)"


def _network_name(net: nn.Module) -> str:
    return type(net).__name__


def original_state_dicts(net: nn.Module, ckpt: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """``(model, ema)`` state dicts of ``ckpt`` under ``net``'s own keys (``ema`` is None without an EMA entry).

    The EMA state dict is the online one with the shadow parameters substituted (what ``ema.copy_to`` gives).
    Keys and shapes are validated; mismatches raise :class:`IncompatibleCheckpointError` naming them.
    """
    model_sd = ckpt["model"]
    ema = ckpt.get("ema")
    if isinstance(net, OriginalCheckpointMixin):
        key_map = net.original_key_map()
        model_sd = {k.removeprefix("module."): v for k, v in model_sd.items()}
        ema_sd = original_ema_state_dict(net, model_sd, ema) if ema is not None else None
        load_original_checkpoint(net, {"model": model_sd})  # validates keys and shapes
        ours = {key_map[k]: v for k, v in model_sd.items()}
        return ours, ({key_map[k]: v for k, v in ema_sd.items()} if ema_sd is not None else None)
    ncsn_nets.load_original_state_dict(net, model_sd)  # validates keys and shapes
    ours = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if ema is None:
        return ours, None
    ncsn_nets.load_original_ema(net, ema)
    ema_sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(ours)
    return ours, ema_sd


def load_original_weights(net: nn.Module, ckpt: Mapping[str, Any], *, use_ema: bool = True) -> None:
    """Load the online (``use_ema=False``) or EMA weights of an original checkpoint into ``net``.

    Raises :class:`IncompatibleCheckpointError` naming the missing / unexpected / mismatched keys, with a guess
    of the checkpoint's architecture when the network does not match it.
    """
    if use_ema and ckpt.get("ema") is None:
        raise IncompatibleCheckpointError("the checkpoint has no 'ema' entry; pass use_ema=False for its weights")
    try:
        if isinstance(net, OriginalCheckpointMixin):
            load_original_checkpoint(net, dict(ckpt), ema=use_ema)
        else:
            ncsn_nets.load_original_state_dict(net, ckpt["model"])
            if use_ema:
                ncsn_nets.load_original_ema(net, ckpt["ema"])
    except IncompatibleCheckpointError as err:
        guess = guess_architecture(ckpt["model"])
        raise IncompatibleCheckpointError(
            f"{err}\n  the config builds {_network_name(net)}; the checkpoint looks like {guess}"
        ) from None


def load_score_sde_checkpoint(
    path: str | Path,
    config: ConfigLike,
    *,
    use_ema: bool = True,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> LoadedCheckpoint:
    """Load an original Score SDE checkpoint as a ready score model (EMA weights by default).

    Args:
        path: the ``checkpoint_<n>.pth`` / ``checkpoint.pth`` file written by the original ``utils.save_checkpoint``.
            Read with ``torch.load(weights_only=True)``: nothing in the file is executed.
        config: the run's config: a dict in the original layout (e.g. a fixture's ``*.config.json`` loaded), a
            path to such a ``.json`` file, a path to an original ``configs/**.py`` file (parsed with :mod:`ast`,
            never executed), or a preset name such as ``'ve/cifar10_ncsnpp_deep_continuous'``.
        use_ema: load the EMA weights (as the original's sampling and evaluation do); ``False`` for the online
            weights.
        map_location: where ``torch.load`` puts the tensors.
        dtype: cast the network (and build the SDE tables) in this dtype, e.g. ``torch.float64``; ``None`` keeps
            float32 weights and float64 ``sigmas`` buffers as in the original.

    Returns:
        :class:`LoadedCheckpoint` ``(model, step, config)``: ``model`` is a :class:`~scoresde.models.ScoreModel` in
        eval mode with the original conventions (README §4: VE feeds sigma(t), VP/sub-VP 999 t and returns
        ``-out / std``, discrete models use the discrete labels), on the device of ``map_location``.

    Raises:
        IncompatibleCheckpointError: the checkpoint's keys or shapes do not match the network the config builds
            (the message names them and guesses the checkpoint's architecture).
    """
    cfg = resolve_config(config)
    model = build_score_model(cfg, dtype=dtype)
    ckpt = read_original_checkpoint(path, map_location)
    load_original_weights(model.net, ckpt, use_ema=use_ema)
    device = next((t.device for t in ckpt["model"].values() if isinstance(t, Tensor)), torch.device("cpu"))
    model = model.to(device).eval()
    step = ckpt.get("step", 0)
    return LoadedCheckpoint(model, int(step.item() if isinstance(step, Tensor) else step), cfg)
