"""Reading and writing a diffusers folder on disk: the pipeline/model layout, its JSON configs and weight files.

No translation happens here: :func:`read_diffusers_folder` returns the ``UNet2DModel`` config, its state dict (diffusers
keys) and the scheduler config as stored; :func:`write_diffusers_folder` writes them back in the layout
``UNet2DModel.from_pretrained`` and ``DDPMPipeline.from_pretrained`` read. Nothing in a folder is executed: weights are
read from safetensors, or from a ``.bin`` with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from ..errors import IncompatibleCheckpointError
from ..files import load_safetensors, load_weights_only

__all__ = [
    "EXPORT_DIFFUSERS_VERSION",
    "SCHEDULER_CONFIG",
    "SUPPORTED_UNET_CLASSES",
    "WEIGHTS_BIN",
    "WEIGHTS_SAFETENSORS",
    "is_diffusers_folder",
    "read_diffusers_folder",
    "write_diffusers_folder",
]

#: the diffusers model classes that correspond to a scoresde network
SUPPORTED_UNET_CLASSES = ("UNet2DModel",)
WEIGHTS_SAFETENSORS = "diffusion_pytorch_model.safetensors"
WEIGHTS_BIN = "diffusion_pytorch_model.bin"
SCHEDULER_CONFIG = "scheduler_config.json"
#: the diffusers version written into exported configs (the one the export was tested with)
EXPORT_DIFFUSERS_VERSION = "0.42.1"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise IncompatibleCheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise IncompatibleCheckpointError(f"{path} is not a JSON object")
    return data



def is_diffusers_folder(path: str | Path) -> bool:
    """Whether ``path`` is a diffusers pipeline folder (``model_index.json``) or model folder (``config.json`` with
    a ``_class_name``)."""
    path = Path(path)
    if (path / "model_index.json").is_file():
        return True
    config = path / "config.json"
    return config.is_file() and "_class_name" in _read_json(config)


def _pipeline_parts(root: Path) -> tuple[Path, Path | None]:
    """``(unet folder, scheduler config or None)`` of a pipeline folder, refusing pipelines of other model classes."""
    index = _read_json(root / "model_index.json")
    components = {k: v for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2}
    pipeline = index.get("_class_name", "?")
    others = sorted(k for k, (_, cls) in components.items() if k not in ("unet", "scheduler") and cls is not None)
    unet = components.get("unet")
    if unet is None or unet[1] not in SUPPORTED_UNET_CLASSES or others:
        found = ", ".join(f"{k}={cls}" for k, (_, cls) in sorted(components.items()))
        raise IncompatibleCheckpointError(
            f"{root}: {pipeline} ({found}) is not supported; scoresde reads pipelines of one unconditional "
            f"{' or '.join(SUPPORTED_UNET_CLASSES)} and a scheduler (DDPMPipeline, DDIMPipeline, ScoreSdeVePipeline, "
            "...), not latent, text-conditioned or multi-model pipelines")
    scheduler = root / "scheduler" / SCHEDULER_CONFIG
    return root / "unet", (scheduler if components.get("scheduler") and scheduler.is_file() else None)


def _read_weights(folder: Path) -> dict[str, Tensor]:
    safetensors_file, bin_file = folder / WEIGHTS_SAFETENSORS, folder / WEIGHTS_BIN
    index = folder / (WEIGHTS_SAFETENSORS + ".index.json")
    if safetensors_file.is_file() or index.is_file():
        if safetensors_file.is_file():
            return load_safetensors(safetensors_file)
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        weights: dict[str, Tensor] = {}
        for shard in shards:
            weights.update(load_safetensors(folder / shard))
        return weights
    if bin_file.is_file():
        state = load_weights_only(bin_file)
        if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
            raise IncompatibleCheckpointError(f"{bin_file} is not a state dict of tensors")
        return dict(state)
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise IncompatibleCheckpointError(f"{folder} has no {WEIGHTS_SAFETENSORS} or {WEIGHTS_BIN} (found: {present}); "
                                      "variant files such as *.fp16.safetensors must be renamed to these names")


def read_diffusers_folder(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Any] | None]:
    """``(unet config, unet state dict, scheduler config or None)`` of a local diffusers folder.

    ``path`` is a pipeline folder (``model_index.json`` with ``unet/`` and ``scheduler/``, as
    ``DDPMPipeline.save_pretrained`` or a Hub download writes it), a model folder (``config.json`` and weights; a
    ``scheduler_config.json`` next to them is read too), or a file inside a model folder. Weights: safetensors, or a
    ``.bin`` read with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no diffusers config.
        IncompatibleCheckpointError: a pipeline or model class other than :data:`SUPPORTED_UNET_CLASSES`, or no
            weights file.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist (expected a diffusers pipeline or model folder)")
    if root.is_file():
        root = root.parent
    if (root / "model_index.json").is_file():
        unet_dir, scheduler_path = _pipeline_parts(root)
    elif (root / "config.json").is_file():
        unet_dir, scheduler_path = root, root / SCHEDULER_CONFIG
        if not scheduler_path.is_file():
            scheduler_path = None
    else:
        raise FileNotFoundError(f"{root} is not a diffusers folder: no model_index.json (pipeline) or config.json "
                                "(model)")
    config = _read_json(unet_dir / "config.json")
    cls = config.get("_class_name")
    if cls not in SUPPORTED_UNET_CLASSES:
        raise IncompatibleCheckpointError(f"{unet_dir / 'config.json'}: model class {cls!r} is not supported; "
                                          f"supported: {', '.join(SUPPORTED_UNET_CLASSES)} (unconditional pixel-space "
                                          "U-Nets in the DDPM or NCSN++ layout)")
    scheduler = _read_json(scheduler_path) if scheduler_path is not None else None
    return config, _read_weights(unet_dir), scheduler



def write_diffusers_folder(out: str | Path, unet_config: Mapping[str, Any], tensors: Mapping[str, Tensor],
                           scheduler: Mapping[str, Any] | None, *, pipeline: bool = False) -> Path:
    """Write a ``UNet2DModel`` config, its weights (diffusers keys, CPU tensors) and a scheduler config (or ``None``)
    as a diffusers folder; returns ``out``.

    ``pipeline=False``: a model folder (``config.json``, ``diffusion_pytorch_model.safetensors``,
    ``scheduler_config.json``); ``True``: a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``) naming
    ``ScoreSdeVePipeline`` for a ``ScoreSdeVeScheduler`` and ``DDPMPipeline`` otherwise. Existing files of the same
    names are replaced; each JSON file is written to a temporary name and renamed into place.
    """
    out = Path(out)
    unet_dir, scheduler_dir = (out / "unet", out / "scheduler") if pipeline else (out, out)
    unet_dir.mkdir(parents=True, exist_ok=True)
    save_file(dict(tensors), str(unet_dir / WEIGHTS_SAFETENSORS), metadata={"format": "pt"})
    _write_json(unet_dir / "config.json", unet_config)
    if scheduler is not None:
        scheduler_dir.mkdir(parents=True, exist_ok=True)
        _write_json(scheduler_dir / SCHEDULER_CONFIG, scheduler)
    if pipeline:
        name = {"ScoreSdeVeScheduler": "ScoreSdeVePipeline"}.get(scheduler and scheduler["_class_name"],
                                                                 "DDPMPipeline")
        index = {"_class_name": name, "_diffusers_version": EXPORT_DIFFUSERS_VERSION,
                 "unet": ["diffusers", "UNet2DModel"],
                 "scheduler": ["diffusers", scheduler["_class_name"]] if scheduler else [None, None]}
        _write_json(out / "model_index.json", index)
    return out


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
