"""Checkpoints of the PSLD code (Pandey & Mandt 2023, ``mandt-lab/PSLD``): PyTorch Lightning ``.ckpt`` files.

Format (read here with ``torch.load(weights_only=True)`` only; nothing in the file is executed)::

    {"epoch": int, "global_step": int, "pytorch-lightning_version": str,
     "state_dict": {"score_fn.all_modules.<i>.<...>": Tensor,       # the online network
                    "ema_score_fn.all_modules.<i>.<...>": Tensor,   # the EMA network (a full copy, every tensor)
                    ...},
     "optimizer_states": [Adam state_dict over score_fn.parameters()], "lr_schedulers": [...],
     "loops": {...}, "callbacks": {...}}

The Lightning module (``SDEWrapper``) holds the noise-predicting NCSN++ as ``score_fn`` and its EMA copy as
``ema_score_fn`` (updated by a callback with a constant decay, no warm-up); the SDE and the loss hold no tensors.
Under those prefixes the keys are the Score SDE ``all_modules.<i>`` keys of NCSN++, which
:meth:`scoresde.nets.NCSNpp.original_key_map` maps to our named blocks. A ``module.`` prefix (DDP) before or
after ``score_fn.`` is stripped.

Conventions of PSLD's NCSN++ and how they map onto ours (checked against ``main/models/score_fn/song_sde/ncsnpp.py``):

* input ``in_ch = 2C`` (the state ``[x, m]`` on dim 1), output ``out_ch = 2C`` (noise of both blocks) or ``C``
  (momentum only, ``Gamma = 0`` runs): our ``build_network`` with ``model.blocks = 'all'`` / ``'momentum'``;
* the network is fed the raw time ``t`` in ``(0, 1]``: ``log t`` into the Fourier features, or ``t`` into the
  sinusoidal embedding; no ``2x - 1`` input scaling (their data are already in ``[-1, 1]``), no division by a noise
  level: our :class:`~scoresde.models.PhaseSpaceScoreModel` with ``data.centered = True`` and
  ``model.scale_by_sigma = False`` (other values are refused by :func:`check_psld_config`);
* no ``sigmas`` buffer: ours (unused by these settings) is kept from the network the config builds;
* config names: their ``noise_cond`` is our ``conditional``, ``in_ch``/``out_ch`` come from ``data.num_channels`` and
  ``model.blocks``; every other ``model.score_fn`` entry has our name.

``score = -L_t^-T eps_theta`` with ``L_t`` the lower Cholesky factor of the HSM kernel covariance (their
``decomp_mode = 'lower'``, ``training.mode = 'hsm'``) is what ``PhaseSpaceScoreModel`` computes; PSLD adds
``numerical_eps = 1e-9`` to the diagonal of that covariance, which we do not (a relative change below 1e-6 for
``t >= 1e-3``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigLike, build_network, build_score_model, resolve_config
from ..models import DiffusionModel, PhaseSpaceScoreModel
from ..nets.original_keys import OriginalCheckpointMixin
from .errors import IncompatibleCheckpointError
from .files import load_weights_only
from .loaded import loaded_model
from .native import TrainingState, remap_optimizer_state
from .state_dict import checkpoint_key_map, load_state_dict

__all__ = [
    "EMA_PREFIX",
    "ONLINE_PREFIX",
    "check_psld_config",
    "is_lightning_checkpoint",
    "load_psld_checkpoint",
    "psld_model",
    "psld_state_dicts",
    "read_psld_checkpoint",
    "read_psld_training_state",
]

#: prefix of the online network's keys in the Lightning ``state_dict``
ONLINE_PREFIX = "score_fn."
#: prefix of the EMA network's keys
EMA_PREFIX = "ema_score_fn."


def is_lightning_checkpoint(ckpt: Any) -> bool:
    """Whether a loaded checkpoint has the PyTorch Lightning layout (a ``state_dict`` mapping and Lightning's
    bookkeeping entries ``global_step``/``epoch``/``pytorch-lightning_version``)."""
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        return False
    return any(k in ckpt for k in ("global_step", "epoch", "pytorch-lightning_version"))


def read_psld_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` of a PSLD (Lightning) checkpoint, checked to have a ``state_dict``.

    Raises:
        IncompatibleCheckpointError: the file is not a Lightning checkpoint (e.g. a Score SDE ``.pth`` with a
            ``'model'`` entry); its subclasses when the file is truncated or corrupt, not a checkpoint at all, or
            holds code-executing globals that ``weights_only`` loading refuses (never executed):
            :func:`~scoresde.checkpoint.files.load_weights_only`.
    """
    path = Path(path)
    ckpt = load_weights_only(path, map_location)
    if not is_lightning_checkpoint(ckpt):
        keys = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        hint = " (this looks like a Score SDE checkpoint: use --format score-sde)" if (
            isinstance(ckpt, Mapping) and "model" in ckpt) else ""
        raise IncompatibleCheckpointError(
            f"{path} is not a PyTorch Lightning checkpoint of the PSLD code: expected a dict with a 'state_dict' "
            f"and 'global_step', got {keys}{hint}")
    return dict(ckpt)


def _network_keys(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix`` (``module.`` stripped before and after it), without the prefix."""
    out = {}
    for key, value in state_dict.items():
        k = key.removeprefix("module.")
        if k.startswith(prefix):
            out[k[len(prefix):].removeprefix("module.")] = value
    return out


def _validated(net: nn.Module, sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """``sd`` (``all_modules.*`` keys) under ``net``'s keys, with ``net``'s own ``sigmas``-like top-level buffers
    (absent from PSLD's NCSN++) filled in; keys and shapes checked by loading into ``net``."""
    own = net.state_dict()
    top = {k: own[k] for k in getattr(net, "_original_top_level", ()) if k in own and k not in sd}
    full = {**top, **sd}
    try:
        load_state_dict(net, full, layout="original")
    except IncompatibleCheckpointError as err:
        raise IncompatibleCheckpointError(
            f"PSLD checkpoint, network '{prefix.rstrip('.')}' (keys below without that prefix): {err}",
            err.report) from None
    key_map = checkpoint_key_map(net, "original")
    return {key_map[k]: v for k, v in full.items()}


def psld_state_dicts(net: nn.Module, ckpt: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """``(model, ema)`` state dicts of a PSLD Lightning checkpoint under ``net``'s own keys (``ema`` is None when
    the checkpoint has no ``ema_score_fn.*`` tensors).

    ``score_fn.all_modules.<i>...`` / ``ema_score_fn.all_modules.<i>...`` are mapped through the Score SDE key layout
    of NCSN++ (:meth:`~scoresde.nets.NCSNpp.original_key_map`); the ``sigmas`` buffer, which PSLD's network lacks, is
    taken from ``net``. ``net`` is left holding the online weights.

    Raises:
        IncompatibleCheckpointError: tensors outside ``score_fn``/``ema_score_fn``, or missing, unexpected or
            shape-mismatched keys (named) against the network the config builds.
    """
    if not isinstance(net, OriginalCheckpointMixin):
        raise TypeError(f"{type(net).__name__} has no mapping from PSLD's NCSN++ keys (model.name must be 'ncsnpp')")
    state_dict = ckpt["state_dict"]
    others = sorted({k.removeprefix("module.").split(".")[0] for k in state_dict
                     if not k.removeprefix("module.").startswith((ONLINE_PREFIX, EMA_PREFIX))})
    if others:
        raise IncompatibleCheckpointError(
            f"PSLD checkpoint holds tensors outside '{ONLINE_PREFIX}'/'{EMA_PREFIX}': unexpected modules {others} "
            "(a classifier or another Lightning module?)")
    online = _network_keys(state_dict, ONLINE_PREFIX)
    if not online:
        raise IncompatibleCheckpointError(f"PSLD checkpoint has no '{ONLINE_PREFIX}*' tensors")
    ema = _network_keys(state_dict, EMA_PREFIX)
    ema_sd = _validated(net, ema, EMA_PREFIX) if ema else None
    model_sd = _validated(net, online, ONLINE_PREFIX)
    return model_sd, ema_sd


def check_psld_config(config: Mapping[str, Any]) -> None:
    """Refuse configs whose network conventions differ from PSLD's NCSN++ (see the module docstring): a phase-space
    ``training.sde`` (``psld`` or ``cld``), ``model.name = 'ncsnpp'``, ``data.centered = True`` (no ``2x - 1`` inside
    the network), ``model.scale_by_sigma = False``, ``model.mixed_score = False``."""
    sde = str(config.get("training", {}).get("sde", "")).lower()
    model, data = config.get("model", {}), config.get("data", {})
    problems = []
    if sde not in ("psld", "cld"):
        problems.append(f"training.sde is {sde!r}, expected 'psld' (or 'cld')")
    if model.get("name") != "ncsnpp":
        problems.append(f"model.name is {model.get('name')!r}, expected 'ncsnpp' (PSLD's score_fn.name)")
    if not data.get("centered", False):
        problems.append("data.centered must be true (PSLD's NCSN++ takes [-1, 1] data and never applies 2x - 1)")
    if model.get("scale_by_sigma", False):
        problems.append("model.scale_by_sigma must be false (PSLD's NCSN++ never divides by a noise level)")
    if model.get("mixed_score", False):
        problems.append("model.mixed_score must be false (PSLD's runs predict the noise itself; the mixed score of "
                        "their loss, training.use_ms, is not mapped)")
    if problems:
        raise ValueError("config does not describe a PSLD network: " + "; ".join(problems))


def _step(ckpt: Mapping[str, Any]) -> int:
    step = ckpt.get("global_step", 0)
    return int(step.item() if isinstance(step, Tensor) else step)


def read_psld_training_state(
    src: str | Path | Mapping[str, Any],
    config: ConfigLike,
    *,
    include_optimizer: bool = True,
    map_location: str | torch.device = "cpu",
) -> TrainingState:
    """The training state of a PSLD Lightning checkpoint under the scoresde network's keys (``scoresde import
    --format psld``), as :func:`~scoresde.checkpoint.native.read_original_training_state` for Score SDE files.

    ``src`` is the ``.ckpt`` path or the already loaded dict. ``optimizer_state`` is the first entry of
    ``optimizer_states`` (Adam over ``score_fn.parameters()``, i.e. the order of the ``score_fn.*`` keys) re-indexed
    to ``net.parameters()``; ``step`` and ``trainer_state['ema_num_updates']`` are Lightning's ``global_step``.
    """
    cfg = resolve_config(config)
    check_psld_config(cfg)
    ckpt = src if isinstance(src, Mapping) else read_psld_checkpoint(src, map_location)
    if not is_lightning_checkpoint(ckpt):
        raise IncompatibleCheckpointError("not a PyTorch Lightning checkpoint (no 'state_dict'/'global_step')")
    net = build_network(cfg)
    model_sd, ema_sd = psld_state_dicts(net, ckpt)
    optimizer = None
    states = ckpt.get("optimizer_states")
    if include_optimizer and isinstance(states, (list, tuple)) and states and isinstance(states[0], Mapping):
        optimizer = remap_optimizer_state(net, _network_keys(ckpt["state_dict"], ONLINE_PREFIX), states[0])
    step = _step(ckpt)
    return TrainingState(model_sd, ema_sd, optimizer, step, cfg, {"ema_num_updates": step})


def load_psld_checkpoint(
    path: str | Path,
    config: ConfigLike,
    *,
    use_ema: bool = True,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> DiffusionModel:
    """Load a checkpoint of the PSLD code as a ready :class:`~scoresde.models.PhaseSpaceScoreModel` (EMA weights by
    default, as PSLD's sampling with ``evaluation.sample_from = 'target'``).

    Args:
        path: the Lightning ``.ckpt`` file. Read with ``torch.load(weights_only=True)``: nothing in it is executed.
        config: the run's config in our layout (anything :func:`scoresde.config.resolve_config` takes: a dict, a
            :class:`~scoresde.config.Config`, a ``.json`` path or a preset such as ``'psld/cifar10'``):
            ``training.sde = 'psld'`` with the run's ``beta``, ``nu``, ``gamma``, ``kappa``; the network sizes of
            their ``model.score_fn`` section; ``model.blocks = 'momentum'`` for ``out_ch = C`` (``Gamma = 0``) runs.
            The checkpoint stores no config (the wrapper saves no hyper-parameters).
        use_ema: the ``ema_score_fn`` weights (default) or the online ``score_fn`` ones (``False``). A run trained
            with ``training.use_ema = False`` has an ``ema_score_fn`` that was never updated: load it with ``False``.
        map_location: where ``torch.load`` puts the tensors.
        dtype: cast the network (and build the SDE's tables) in this dtype; ``None`` keeps float32.

    Returns:
        the :class:`~scoresde.models.PhaseSpaceScoreModel` with ``model.step`` Lightning's ``global_step`` and
        ``model.config`` the typed :class:`~scoresde.config.Config`; ``model.score(z, t) = -L_t^-T
        eps_theta(z, t)`` on the state ``z = [x, m]``.

    Raises:
        IncompatibleCheckpointError: not a Lightning checkpoint, truncated, refused by ``weights_only``, or keys /
            shapes that do not match the network the config builds (named).
        ValueError: the config's conventions differ from PSLD's network (:func:`check_psld_config`).
    """
    cfg = resolve_config(config)
    check_psld_config(cfg)  # before reading a large file
    return psld_model(read_psld_checkpoint(path, map_location), cfg, use_ema=use_ema, dtype=dtype)


def psld_model(ckpt: Mapping[str, Any], config: ConfigLike, *, use_ema: bool = True,
               dtype: torch.dtype | None = None) -> DiffusionModel:
    """The phase-space score model of an already read PSLD Lightning checkpoint ``ckpt``
    (:func:`read_psld_checkpoint`); see :func:`load_psld_checkpoint`."""
    cfg = resolve_config(config)
    check_psld_config(cfg)
    model = build_score_model(cfg, dtype=dtype)
    if not isinstance(model, PhaseSpaceScoreModel):  # pragma: no cover - check_psld_config guarantees it
        raise ValueError("config does not build a phase-space score model")
    model_sd, ema_sd = psld_state_dicts(model.net, ckpt)
    if use_ema and ema_sd is None:
        raise IncompatibleCheckpointError(f"the checkpoint has no '{EMA_PREFIX}*' weights; pass use_ema=False")
    model.net.load_state_dict(ema_sd if use_ema else model_sd)
    device = next((t.device for t in ckpt["state_dict"].values() if isinstance(t, Tensor)), torch.device("cpu"))
    return loaded_model(model.to(device).eval(), _step(ckpt), cfg)
