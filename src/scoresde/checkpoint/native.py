"""scoresde's own checkpoint format: safetensors weights + a JSON config, written atomically.

A checkpoint is a directory::

    checkpoint.json      {"format": "scoresde-checkpoint", "version": 1, "step": ..., "network": ...,
                          "files": {...}, "sha256": {<file name>: <hex digest>, ...},
                          "config": <the full config in the original layout>}
    model.safetensors    the online weights (state-dict keys of the scoresde network)
    ema.safetensors      optional: the EMA weights as a full state dict (buffers included)
    optimizer.pt         optional: an optimizer ``state_dict()`` (tensors, numbers, lists, dicts only), indexed
                         in ``net.parameters()`` order; read back with ``torch.load(weights_only=True)``
    trainer.pt           optional: the rest of a training run's state (EMA update count, gradient-scaler state,
                         ...), same rules as ``optimizer.pt``

Every file is written to a temporary file in the same directory, flushed with ``fsync`` and moved into place
with ``os.replace``; ``checkpoint.json`` is written last, with the sha256 of every other file as written. Loading
checks every listed file against its checksum (a truncated, zero-length or bit-flipped file is a
:class:`~scoresde.checkpoint.errors.CorruptCheckpointError` naming it) before reading any; every tensor file also
records the step in its metadata, checked against ``checkpoint.json``, so a checkpoint torn by a crash while being
overwritten is refused instead of silently mixing two steps. Checkpoints written before checksums were recorded (no
``sha256`` entry) still load, checked by their step stamps and file formats only. The config travels with the
weights (as in k-diffusion and EDM), so loading needs only the directory.

The metadata file was called ``config.json`` before (the name of a run folder's own config, one level up); such
checkpoints still load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import safetensors.torch
import torch
from torch import Tensor, nn

from ..config import ConfigLike, build_network, build_score_model, resolve_config
from ..models import DiffusionModel, PhaseSpaceScoreModel, ScoreModel
from .atomic import atomic_write
from .errors import CorruptCheckpointError, IncompatibleCheckpointError
from .files import load_safetensors, load_weights_only, safetensors_error
from .loaded import loaded_model
from .original import original_state_dicts, read_original_checkpoint
from .state_dict import checkpoint_key_map, load_state_dict

__all__ = [
    "FORMAT",
    "VERSION",
    "TrainingState",
    "convert_original_checkpoint",
    "file_sha256",
    "load_checkpoint_directory",
    "load_training_state",
    "read_original_training_state",
    "remap_optimizer_state",
    "save_checkpoint",
    "verify_files",
]

FORMAT = "scoresde-checkpoint"
VERSION = 1
_META, _MODEL, _EMA, _OPTIM, _TRAINER = (
    "checkpoint.json", "model.safetensors", "ema.safetensors", "optimizer.pt", "trainer.pt")
#: the metadata file's name in checkpoints written before it was renamed (still read)
_LEGACY_META = "config.json"


class TrainingState(NamedTuple):
    """Everything needed to resume training: the state dicts (``ema_state``/``optimizer_state`` may be None),
    the step and the config."""

    model_state: dict[str, Tensor]
    ema_state: dict[str, Tensor] | None
    optimizer_state: dict[str, Any] | None
    step: int
    config: dict[str, Any]
    trainer_state: dict[str, Any] | None = None


# ---- atomic writes ------------------------------------------------------------------------------------------


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks of ``chunk_bytes`` (what ``checkpoint.json`` records)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(target: Path, write: Callable[[Path], None]) -> str:
    """Write ``target`` atomically (:func:`~scoresde.checkpoint.atomic.atomic_write`: temporary file, fsync,
    ``os.replace``; a storage fault is one ``StorageError`` naming it); return the sha256 of what was written."""
    atomic_write(target, write)
    return file_sha256(target)


def _torch_save(payload: Any, path: Path) -> None:
    """``torch.save`` through a Python file object: a failed write then carries its ``OSError`` (errno) instead of
    only torch's C++ ``unexpected pos`` message."""
    with open(path, "wb") as handle:
        torch.save(payload, handle)


def _write_tensors(target: Path, tensors: Mapping[str, Tensor], step: int) -> str:
    # Clones: safetensors refuses tensors that share storage, and needs contiguous ones.
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "step": str(step)}
    return _atomic_write(target, lambda tmp: safetensors.torch.save_file(data, str(tmp), metadata=metadata))


def _as_state_dict(obj: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(obj, (ScoreModel, PhaseSpaceScoreModel)):
        obj = obj.net
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    return dict(obj)


def save_checkpoint(
    directory: str | Path,
    net: nn.Module | Mapping[str, Tensor],
    config: Mapping[str, Any],
    *,
    step: int = 0,
    ema: nn.Module | Mapping[str, Tensor] | None = None,
    optimizer: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    trainer_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint in scoresde's format (see the module docstring) and return its directory.

    Args:
        directory: the checkpoint directory (created if needed; existing files are replaced atomically).
        net: the network (or a score model, or its state dict) with the online weights.
        config: the full config in the original layout (what :func:`load_checkpoint` rebuilds the model from).
        step: the training step.
        ema: the EMA weights as a network copy or a full state dict (optional).
        optimizer: an optimizer or its ``state_dict()`` (optional; must hold only tensors and plain values).
        trainer_state: any other state a training run needs to resume (optional; tensors and plain values).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    step = int(step)
    files = {"model": _MODEL}
    sha256 = {_MODEL: _write_tensors(directory / _MODEL, _as_state_dict(net), step)}
    if ema is not None:
        sha256[_EMA] = _write_tensors(directory / _EMA, _as_state_dict(ema), step)
        files["ema"] = _EMA
    if optimizer is not None:
        state = optimizer.state_dict() if isinstance(optimizer, torch.optim.Optimizer) else dict(optimizer)
        payload = {"step": step, "optimizer": state}
        sha256[_OPTIM] = _atomic_write(directory / _OPTIM, lambda tmp: _torch_save(payload, tmp))
        files["optimizer"] = _OPTIM
    if trainer_state is not None:
        trainer_payload = {"step": step, "trainer": dict(trainer_state)}
        sha256[_TRAINER] = _atomic_write(directory / _TRAINER, lambda tmp: _torch_save(trainer_payload, tmp))
        files["trainer"] = _TRAINER
    is_model = isinstance(net, (ScoreModel, PhaseSpaceScoreModel))
    network = type(net.net if is_model else net).__name__ if isinstance(net, nn.Module) else None
    meta = {"format": FORMAT, "version": VERSION, "step": step, "network": network, "files": files,
            "sha256": sha256, "config": json.loads(json.dumps(dict(config)))}
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / _META, lambda tmp: tmp.write_text(text))
    return directory


# ---- reading ------------------------------------------------------------------------------------------------


def _meta_path(directory: Path) -> Path:
    """The metadata file of a checkpoint directory: ``checkpoint.json``, else the old ``config.json``."""
    path = directory / _META
    return path if path.is_file() or not (directory / _LEGACY_META).is_file() else directory / _LEGACY_META


def _read_meta(directory: Path) -> dict[str, Any]:
    path = _meta_path(directory)
    hint = (" (a checkpoint file: use scoresde.load_checkpoint with its config)" if directory.is_file() else
            " (a run folder: use scoresde.load_checkpoint)" if (directory / "checkpoints").is_dir() else "")
    if not path.is_file():
        raise FileNotFoundError(f"{directory / _META} not found: {directory} is not a scoresde checkpoint "
                                f"directory{hint}")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise IncompatibleCheckpointError(f"{path} is truncated or corrupt: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise IncompatibleCheckpointError(f"{path} is not the metadata of a {FORMAT} (format={found!r}): "
                                          f"{directory} is not a scoresde checkpoint directory{hint}")
    if int(meta.get("version", 0)) > VERSION:
        raise IncompatibleCheckpointError(f"{path} has format version {meta['version']}; this scoresde reads "
                                          f"versions <= {VERSION}")
    return meta


def verify_files(directory: str | Path, meta: Mapping[str, Any] | None = None) -> None:
    """Check that every file a checkpoint directory lists exists and matches the sha256 its metadata recorded.

    Called by every loader of the format before it reads a file, so a checkpoint damaged anywhere (a truncated,
    zero-length or bit-flipped file, one file replaced by another step's) is refused as a whole, by every command
    alike. A checkpoint without recorded checksums (written before they were) is checked for missing files only.

    Raises:
        CorruptCheckpointError: a listed file is missing or its sha256 differs (the file is named).
    """
    directory = Path(directory)
    meta = _read_meta(directory) if meta is None else meta
    recorded = meta.get("sha256") or {}
    for name in sorted(set(meta.get("files", {}).values()) | set(recorded)):
        path = directory / name
        if not path.is_file():
            raise CorruptCheckpointError(f"{path} is missing: the checkpoint is incomplete")
        if name in recorded and file_sha256(path) != recorded[name]:
            raise CorruptCheckpointError(f"{path} is corrupt: its sha256 differs from the one "
                                         f"{_meta_path(directory).name} recorded (a torn or damaged checkpoint)")


def _check_step(path: Path, step: int) -> None:
    """Refuse a tensor file whose recorded step (read from its header only) is not ``step``."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (safetensors.SafetensorError, OSError) as err:
        raise safetensors_error(path, err) from err
    if metadata.get("step") != str(step):
        raise IncompatibleCheckpointError(
            f"{path} is from step {metadata.get('step')} but {_meta_path(path.parent).name} says step {step}: the "
            "checkpoint was torn by an interrupted save")


def _read_tensors(path: Path, step: int, map_location: str | torch.device) -> dict[str, Tensor]:
    _check_step(path, step)
    return load_safetensors(path, map_location)


def load_training_state(directory: str | Path, map_location: str | torch.device = "cpu") -> TrainingState:
    """The state dicts, step and config of a scoresde checkpoint, for resuming training.

    Every file is checked against its checksum first (:func:`verify_files`); the optimizer and trainer state are
    read with ``torch.load(weights_only=True)`` (:func:`~scoresde.checkpoint.files.load_weights_only`).
    """
    directory = Path(directory)
    meta = _read_meta(directory)
    verify_files(directory, meta)
    step, files = int(meta["step"]), meta.get("files", {})
    model_state = _read_tensors(directory / files.get("model", _MODEL), step, map_location)
    ema_state = _read_tensors(directory / files["ema"], step, map_location) if "ema" in files else None
    optimizer_state = _read_pickled(directory, files, "optimizer", step, map_location)
    trainer_state = _read_pickled(directory, files, "trainer", step, map_location)
    return TrainingState(model_state, ema_state, optimizer_state, step, meta["config"], trainer_state)


def _read_pickled(directory: Path, files: Mapping[str, str], key: str, step: int,
                  map_location: str | torch.device) -> dict[str, Any] | None:
    """The ``key`` entry of an optional ``torch.save`` file, read with ``weights_only=True`` and step-checked."""
    if key not in files:
        return None
    path = directory / files[key]
    payload = load_weights_only(path, map_location)
    if not isinstance(payload, dict) or key not in payload:
        raise CorruptCheckpointError(f"{path} holds no {key!r} entry: not the {key} state of a scoresde checkpoint")
    if int(payload.get("step", -1)) != step:
        raise IncompatibleCheckpointError(f"{path} is from step {payload.get('step')} but "
                                          f"{_meta_path(directory).name} says step {step}: the checkpoint was torn by "
                                          "an interrupted save")
    return payload[key]


def load_checkpoint_directory(
    directory: str | Path,
    *,
    use_ema: bool = True,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> DiffusionModel:
    """Load one scoresde checkpoint directory as a ready score model (EMA weights by default).

    The model is rebuilt from the config stored with the weights; keys and shapes must match exactly
    (:class:`IncompatibleCheckpointError` names any that do not). Only the weights asked for are read in full; a
    checkpoint whose files do not match their checksums (:func:`verify_files`) or whose weight files record
    different steps (torn by an interrupted save) is refused. ``dtype`` as in
    :func:`~scoresde.checkpoint.load_score_sde_checkpoint`. Returns the model with ``model.step`` and ``model.config``
    (:func:`~scoresde.checkpoint.loaded.loaded_model`).
    """
    directory = Path(directory)
    meta = _read_meta(directory)
    step, files = int(meta["step"]), meta.get("files", {})
    kind = meta.get("config", {}).get("kind") if isinstance(meta.get("config"), dict) else None
    if kind is not None:  # a checkpoint of another kind of model (e.g. a noise-conditional classifier)
        raise IncompatibleCheckpointError(f"{directory} holds a {kind!r} checkpoint, not a score model: load a "
                                          "classifier with scoresde.training.classifier.load_classifier")
    if use_ema and "ema" not in files:
        raise IncompatibleCheckpointError(f"{directory} was saved without EMA weights; pass use_ema=False")
    verify_files(directory, meta)
    for name in [files.get("model", _MODEL), *([files["ema"]] if "ema" in files else [])]:
        _check_step(directory / name, step)  # a checkpoint torn in either weight file is refused
    weights = _read_tensors(directory / files.get("ema" if use_ema else "model", _MODEL), step, map_location)
    model = build_score_model(meta["config"], dtype=dtype)
    load_state_dict(model.net, weights, layout="native")
    return loaded_model(model.to(map_location).eval(), step, meta["config"])


# ---- conversion ---------------------------------------------------------------------------------------------


def _parameter_permutation(net: nn.Module, original_keys: list[str]) -> list[int]:
    """``perm[i]``: index in ``net.parameters()`` of the i-th parameter of the original ``model.parameters()``."""
    key_map = checkpoint_key_map(net, "original")
    ours = {name: i for i, (name, _) in enumerate(net.named_parameters())}
    perm = []
    for key in original_keys:
        name = key_map.get(key, key)
        if name in ours:  # buffers are not parameters
            perm.append(ours[name])
    if sorted(perm) != list(range(len(ours))):
        raise IncompatibleCheckpointError("the checkpoint's parameters do not cover the network's parameters")
    return perm


def remap_optimizer_state(net: nn.Module, model_state: Mapping[str, Tensor], optimizer_state: Mapping[str, Any]
                          ) -> dict[str, Any]:
    """An original optimizer ``state_dict`` re-indexed from the original ``model.parameters()`` order (the order
    of the parameters among the original state-dict keys) to ``net.parameters()``. Each group's ``params`` list is
    sorted, so a single-group optimizer built on ``net.parameters()`` loads it."""
    perm = _parameter_permutation(net, [k.removeprefix("module.") for k in model_state])
    state = {perm[int(i)]: value for i, value in optimizer_state.get("state", {}).items()}
    groups = [{**group, "params": sorted(perm[int(i)] for i in group["params"])}
              for group in optimizer_state.get("param_groups", [])]
    return {"state": state, "param_groups": groups}


def convert_original_checkpoint(
    src: str | Path,
    config: ConfigLike,
    dst: str | Path,
    *,
    include_optimizer: bool = True,
    map_location: str | torch.device = "cpu",
) -> Path:
    """Convert an original Score SDE checkpoint (``.pth``) to a scoresde checkpoint directory ``dst``.

    The online and EMA weights are stored under the scoresde network's keys (bit-identical tensors, float64
    ``sigmas`` kept), the optimizer state re-indexed to ``net.parameters()`` order (:func:`remap_optimizer_state`),
    the step and the resolved config alongside. ``config`` is anything :func:`load_score_sde_checkpoint` takes.
    """
    state = read_original_training_state(src, config, include_optimizer=include_optimizer,
                                         map_location=map_location)
    return save_checkpoint(dst, state.model_state, state.config, step=state.step, ema=state.ema_state,
                           optimizer=state.optimizer_state)


def read_original_training_state(
    src: str | Path,
    config: ConfigLike,
    *,
    include_optimizer: bool = True,
    map_location: str | torch.device = "cpu",
) -> TrainingState:
    """The training state of an original Score SDE checkpoint under the scoresde network's keys (the reading half
    shared by :func:`convert_original_checkpoint` and ``scoresde import``).

    ``model_state``/``ema_state`` come from :func:`~scoresde.checkpoint.original.original_state_dicts` (validated
    against the network ``config`` builds), ``optimizer_state`` is re-indexed with :func:`remap_optimizer_state`
    (None without an ``optimizer`` entry or with ``include_optimizer=False``), ``step`` is the checkpoint's
    ``step`` and ``trainer_state`` holds ``ema_num_updates`` (the EMA's ``num_updates``, else the step).
    """
    cfg = resolve_config(config)
    ckpt = read_original_checkpoint(src, map_location)
    net = build_network(cfg)
    model_sd, ema_sd = original_state_dicts(net, ckpt)
    optimizer = None
    if include_optimizer and isinstance(ckpt.get("optimizer"), Mapping):
        optimizer = remap_optimizer_state(net, ckpt["model"], ckpt["optimizer"])
    step = ckpt.get("step", 0)
    step = int(step.item() if isinstance(step, Tensor) else step)
    ema = ckpt.get("ema")
    updates = ema.get("num_updates", step) if isinstance(ema, Mapping) else step
    updates = int(updates.item() if isinstance(updates, Tensor) else updates)
    return TrainingState(model_sd, ema_sd, optimizer, step, cfg, {"ema_num_updates": updates})
