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
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigLike, build_score_model, resolve_config
from ..models import DiffusionModel
from .errors import IncompatibleCheckpointError
from .files import load_weights_only
from .loaded import loaded_model
from .state_dict import ema_state_dict, load_state_dict, map_state_dict, strip_prefix

__all__ = [
    "guess_architecture",
    "is_original_checkpoint",
    "load_original_weights",
    "load_score_sde_checkpoint",
    "original_state_dicts",
    "read_original_checkpoint",
    "score_sde_model",
]


def is_original_checkpoint(ckpt: Any) -> bool:
    """Whether a loaded checkpoint has the Score SDE layout (a dict with a ``'model'`` state dict)."""
    return isinstance(ckpt, Mapping) and isinstance(ckpt.get("model"), Mapping)


def read_original_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict of an original checkpoint, read with :func:`~scoresde.checkpoint.files.load_weights_only` (nothing
    in it is executed; a truncated, foreign or unsafe file raises a ``ValueError`` saying which) and checked to have
    a ``'model'`` entry."""
    path = Path(path)
    ckpt = load_weights_only(path, map_location)
    if not is_original_checkpoint(ckpt):
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


def original_state_dicts(net: nn.Module, ckpt: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """``(model, ema)`` state dicts of ``ckpt`` under ``net``'s own keys (``ema`` is None without an EMA entry).

    The EMA state dict is the online one with the shadow parameters substituted (what ``ema.copy_to`` gives).
    Keys and shapes are validated; mismatches raise :class:`IncompatibleCheckpointError` naming them.
    """
    model_sd = strip_prefix(ckpt["model"])
    ours = map_state_dict(net, model_sd)
    ema = ckpt.get("ema")
    if ema is None:
        return ours, None
    return ours, map_state_dict(net, ema_state_dict(net, model_sd, ema))


def load_original_weights(net: nn.Module, ckpt: Mapping[str, Any], *, use_ema: bool = True) -> None:
    """Load the online (``use_ema=False``) or EMA weights of an original checkpoint into ``net``.

    Raises :class:`IncompatibleCheckpointError` naming the missing / unexpected / mismatched keys, with a guess
    of the checkpoint's architecture when the network does not match it.
    """
    if use_ema and ckpt.get("ema") is None:
        raise IncompatibleCheckpointError("the checkpoint has no 'ema' entry; pass use_ema=False for its weights")
    try:
        state = ema_state_dict(net, ckpt["model"], ckpt["ema"]) if use_ema else ckpt["model"]
        load_state_dict(net, state)
    except IncompatibleCheckpointError as err:
        guess = guess_architecture(ckpt["model"])
        raise IncompatibleCheckpointError(
            f"{err}\n  the config builds {type(net).__name__}; the checkpoint looks like {guess}", err.report
        ) from None


def load_score_sde_checkpoint(
    path: str | Path,
    config: ConfigLike,
    *,
    use_ema: bool = True,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> DiffusionModel:
    """Load an original Score SDE checkpoint as a ready score model (EMA weights by default).

    Args:
        path: the ``checkpoint_<n>.pth`` / ``checkpoint.pth`` file written by the original ``utils.save_checkpoint``.
            Read with ``torch.load(weights_only=True)``: nothing in the file is executed.
        config: the run's config, anything :func:`scoresde.config.resolve_config` takes: a dict in the original
            layout (e.g. a fixture's ``*.config.json`` loaded), a typed :class:`~scoresde.config.Config`, a path to
            such a ``.json`` file, a path to an original ``configs/**.py`` file (parsed with :mod:`ast`, never
            executed), or a preset name such as ``'ve/cifar10_ncsnpp_deep_continuous'`` or ``'digits/vp_ddpmpp'``.
        use_ema: load the EMA weights (as the original's sampling and evaluation do); ``False`` for the online
            weights.
        map_location: where ``torch.load`` puts the tensors.
        dtype: cast the network (and build the SDE tables) in this dtype, e.g. ``torch.float64``; ``None`` keeps
            float32 weights and float64 ``sigmas`` buffers as in the original.

    Returns:
        a :class:`~scoresde.models.ScoreModel` in eval mode with the original conventions (README §4: VE feeds
        sigma(t), VP/sub-VP 999 t and returns ``-out / std``, discrete models use the discrete labels), on the
        device of ``map_location``, with ``model.step`` (the checkpoint's ``step``) and ``model.config`` (the typed
        :class:`~scoresde.config.Config`).

    Raises:
        IncompatibleCheckpointError: the checkpoint's keys or shapes do not match the network the config builds
            (the message names them and guesses the checkpoint's architecture); its subclasses when the file is
            truncated or corrupt, not a checkpoint, or refused for code-executing globals
            (:func:`~scoresde.checkpoint.files.load_weights_only`).
    """
    return score_sde_model(read_original_checkpoint(path, map_location), config, use_ema=use_ema, dtype=dtype)


def score_sde_model(ckpt: Mapping[str, Any], config: ConfigLike, *, use_ema: bool = True,
                    dtype: torch.dtype | None = None) -> DiffusionModel:
    """The score model of an already read original checkpoint ``ckpt`` (:func:`read_original_checkpoint`); see
    :func:`load_score_sde_checkpoint`."""
    cfg = resolve_config(config)
    model = build_score_model(cfg, dtype=dtype)
    load_original_weights(model.net, ckpt, use_ema=use_ema)
    device = next((t.device for t in ckpt["model"].values() if isinstance(t, Tensor)), torch.device("cpu"))
    step = ckpt.get("step", 0)
    return loaded_model(model.to(device).eval(), int(step.item() if isinstance(step, Tensor) else step), cfg)
