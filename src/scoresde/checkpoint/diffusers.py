"""Hugging Face ``diffusers`` folders: load a ``UNet2DModel`` (+ scheduler) as a scoresde model, export ours as one.

Two ``UNet2DModel`` families correspond to scoresde networks, and only their weights are renamed (nothing is
re-trained or approximated):

* **DDPM** (Ho et al. 2020; ``google/ddpm-*``): ``DownBlock2D``/``AttnDownBlock2D`` and ``UpBlock2D``/
  ``AttnUpBlock2D`` blocks, positional time embedding -> :class:`~scoresde.nets.DDPM` with
  ``decoder_attn_per_block=True`` (diffusers' ``AttnUpBlock2D`` attends after every decoder block, as Ho et al.'s
  TensorFlow code does; Score SDE's port attends once per resolution).
* **NCSN++** (Song et al. 2021; ``google/ncsnpp-*``): ``SkipDownBlock2D``/``AttnSkipDownBlock2D`` and
  ``SkipUpBlock2D``/``AttnSkipUpBlock2D`` blocks (BigGAN residual blocks with FIR resampling, the input and output
  image pyramids) -> :class:`~scoresde.nets.NCSNpp` with ``progressive='output_skip'``,
  ``progressive_input='input_skip'``, ``fir=True``; Fourier (noise-level) or positional (timestep) embedding.

The scheduler config fixes the SDE and the conventions of :class:`~scoresde.models.ScoreModel`:

* ``DDPMScheduler``, ``DDIMScheduler``, ``DPMSolverMultistepScheduler``, ... with ``beta_schedule='linear'`` and
  ``prediction_type='epsilon'``: the discrete DDPM chain of ``N = num_train_timesteps`` steps,
  :class:`~scoresde.sdes.DiscreteVPSDE` ``(beta_min = N beta_start, beta_max = N beta_end, N)`` with
  ``training.continuous=False`` (``training.sde = 'discrete_vpsde'``): the network sees the timestep ``t (N - 1)``
  and predicts the noise; the SDE's DDPM tables equal the scheduler's betas and ``alphas_cumprod``, and its noise
  schedule (``alpha``, ``sigma``, ``lambda_t``, which every sampler reads) interpolates ``alphas_cumprod`` between the
  timesteps' times ``k / (N - 1)``, so DDIM and DPM-Solver step on the table the network was trained on, as
  diffusers' schedulers do. ``continuous=True`` (``N = 1000``) reads it as a continuous ``VPSDE`` fed ``999 t``
  instead (Score SDE's reading of DDPM checkpoints, whose ``alpha(t)`` is not the table);
* ``ScoreSdeVeScheduler``: ``VESDE(sigma_min, sigma_max, N)``, continuous, the network sees ``sigma(t)`` and
  outputs the score;
* ``ScoreSdeVpScheduler``: ``VPSDE(beta_min, beta_max, N)``, continuous, the network sees ``999 t`` and predicts
  the noise (Score SDE's convention).

A bare model folder (``config.json`` and weights, no scheduler) needs ``sde=``. Weights are read from
``diffusion_pytorch_model.safetensors`` (with ``safetensors``) or ``diffusion_pytorch_model.bin`` (with
``torch.load(weights_only=True)``): nothing in a folder is executed, and the ``diffusers`` package is not needed
(the tests use it as the reference). The loaded model carries a scoresde config (``model.config``), so it can be
imported into a run folder and fine-tuned (``scoresde import --format diffusers``).

Sampling with diffusers' timesteps: :func:`timestep_times` turns a scheduler's integer ``timesteps`` into the
forward times of the loaded discrete model (``t = k / (N - 1)``), for ``scoresde.sample(..., times=...)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import build_network
from ..models import ScoreModel
from ..sdes import VESDE, VPSDE, DiscreteVPSDE, SubVPSDE
from ..sdes.base import SDE
from .errors import IncompatibleCheckpointError
from .files import load_weights_only
from .loaded import loaded_model
from .state_dict import KeyReport

__all__ = [
    "DDPM_SCHEDULERS",
    "SUPPORTED_UNET_CLASSES",
    "diffusers_config",
    "diffusers_key_map",
    "diffusers_network_state",
    "export_diffusers",
    "is_diffusers_folder",
    "load_diffusers",
    "read_diffusers_folder",
    "timestep_times",
]

#: the diffusers model classes that correspond to a scoresde network
SUPPORTED_UNET_CLASSES = ("UNet2DModel",)
#: schedulers whose ``beta_schedule='linear'`` table is the discrete DDPM chain (DiscreteVPSDE, ``continuous=False``)
DDPM_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
                   "PNDMScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler", "EulerDiscreteScheduler",
                   "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler")
SCORE_SDE_SCHEDULERS = ("ScoreSdeVeScheduler", "ScoreSdeVpScheduler")

WEIGHTS_SAFETENSORS = "diffusion_pytorch_model.safetensors"
WEIGHTS_BIN = "diffusion_pytorch_model.bin"
SCHEDULER_CONFIG = "scheduler_config.json"
#: the diffusers version written into exported configs (the one the export was tested with)
EXPORT_DIFFUSERS_VERSION = "0.42.1"

_DDPM_DOWN, _DDPM_UP = ("DownBlock2D", "AttnDownBlock2D"), ("UpBlock2D", "AttnUpBlock2D")
_SKIP_DOWN, _SKIP_UP = ("SkipDownBlock2D", "AttnSkipDownBlock2D"), ("SkipUpBlock2D", "AttnSkipUpBlock2D")
#: attention parameter names of old diffusers checkpoints -> current ones
_DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_SQRT2 = math.sqrt(2.0)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise IncompatibleCheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise IncompatibleCheckpointError(f"{path} is not a JSON object")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Reading a folder
# ---------------------------------------------------------------------------------------------------------------


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
        from safetensors.torch import load_file

        if safetensors_file.is_file():
            return load_file(str(safetensors_file))
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        weights: dict[str, Tensor] = {}
        for shard in shards:
            weights.update(load_file(str(folder / shard)))
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


# ---------------------------------------------------------------------------------------------------------------
# UNet2DModel config <-> scoresde network config
# ---------------------------------------------------------------------------------------------------------------

#: UNet2DModel defaults of the fields the translation reads (diffusers 0.42)
_UNET_DEFAULTS: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "center_input_sample": False, "time_embedding_type": "positional",
    "time_embedding_dim": None, "freq_shift": 0, "flip_sin_to_cos": True, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv",
    "dropout": 0.0, "act_fn": "silu", "attention_head_dim": 8, "norm_num_groups": 32, "attn_norm_num_groups": None,
    "norm_eps": 1e-5, "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None,
    "num_class_embeds": None, "mid_block_type": "UNetMidBlock2D",
}


def _field(config: Mapping[str, Any], key: str) -> Any:
    return config.get(key, _UNET_DEFAULTS.get(key))


def _layout(config: Mapping[str, Any]) -> str:
    """``'ddpm'`` or ``'ncsnpp'`` from the block types, or an error naming the fields that match neither."""
    down, up = list(config.get("down_block_types", ())), list(config.get("up_block_types", ()))
    for name, families in (("ddpm", (_DDPM_DOWN, _DDPM_UP)), ("ncsnpp", (_SKIP_DOWN, _SKIP_UP))):
        if down and all(b in families[0] for b in down) and all(b in families[1] for b in up):
            return name
    raise IncompatibleCheckpointError(
        f"UNet2DModel with down_block_types={down}, up_block_types={up} has no scoresde counterpart: supported are "
        f"the DDPM layout ({'/'.join(_DDPM_DOWN)} and {'/'.join(_DDPM_UP)}) and the NCSN++ layout "
        f"({'/'.join(_SKIP_DOWN)} and {'/'.join(_SKIP_UP)})")


def _check_fields(config: Mapping[str, Any], required: Mapping[str, Any], layout: str) -> None:
    bad = []
    for key, allowed in required.items():
        value = _field(config, key)
        ok = value in allowed if isinstance(allowed, tuple) else value == allowed
        if not ok:
            bad.append(f"{key}={value!r} (supported: {allowed!r})")
    if bad:
        raise IncompatibleCheckpointError(f"UNet2DModel config fields without a scoresde {layout} counterpart: "
                                          + "; ".join(bad))


def _image_size(config: Mapping[str, Any]) -> int:
    size = config.get("sample_size")
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise IncompatibleCheckpointError(f"sample_size={size}: only square images are supported")
        size = size[0]
    if not isinstance(size, int):
        raise IncompatibleCheckpointError(f"sample_size={size!r}: an integer image size is needed")
    return size


def _levels(config: Mapping[str, Any]) -> tuple[int, list[int], list[int]]:
    """``(nf, ch_mult, resolutions with attention)`` from ``block_out_channels`` and the block types."""
    channels = [int(c) for c in config["block_out_channels"]]
    nf = channels[0]
    if any(c % nf for c in channels):
        raise IncompatibleCheckpointError(f"block_out_channels={channels}: every entry must be a multiple of the first "
                                          "(scoresde's nf * ch_mult)")
    size = _image_size(config)
    down, up = config["down_block_types"], config["up_block_types"]
    if len(down) != len(channels) or len(up) != len(channels):
        raise IncompatibleCheckpointError(f"{len(channels)} block_out_channels but {len(down)} down and {len(up)} up "
                                          "blocks")
    attn = [size // 2**level for level, block in enumerate(down) if block.startswith("Attn")]
    attn_up = [size // 2 ** (len(up) - 1 - j) for j, block in enumerate(up) if block.startswith("Attn")]
    if sorted(attn) != sorted(attn_up):
        raise IncompatibleCheckpointError(f"attention at resolutions {sorted(attn)} in the encoder but "
                                          f"{sorted(attn_up)} in the decoder (down_block_types/up_block_types): "
                                          "scoresde's U-Nets attend at the same resolutions in both")
    return nf, [c // nf for c in channels], sorted(attn, reverse=True)


def diffusers_config(unet_config: Mapping[str, Any], scheduler_config: Mapping[str, Any] | None = None, *,
                     sde: SDE | None = None, continuous: bool | None = None) -> dict[str, Any]:
    """The scoresde config (nested dicts: ``model``, ``data``, ``training``) of a diffusers ``UNet2DModel`` config and
    its scheduler config (module docstring), or of ``sde`` for a folder without a scheduler.

    Args:
        unet_config: the UNet's ``config.json``.
        scheduler_config: the scheduler's ``scheduler_config.json`` (``None``: none).
        sde: the forward SDE when there is no scheduler (``VESDE``, ``VPSDE``, ``DiscreteVPSDE``, ``SubVPSDE``); with a
            scheduler it must be ``None``.
        continuous: the time convention. With ``sde``: default ``True`` for a Fourier (noise-level) embedding,
            ``False`` for a timestep embedding. With a DDPM-type scheduler: ``False`` (default) is the discrete DDPM
            chain on its own schedule, :class:`~scoresde.sdes.DiscreteVPSDE` (conversions between noise, score and
            data predictions read the DDPM tables at the network's timestep, so that an ``ancestral_sampling`` step of
            the ``pc`` sampler is ``DDPMScheduler.step``; DDIM and DPM-Solver++ step on ``alphas_cumprod`` as
            diffusers' schedulers do); ``True`` (``N = 1000`` only) reads the same network as a continuous
            ``VPSDE`` fed ``999 t`` (every conversion and sampler step on the continuous ``alpha(t)``, which is not
            the table the network was trained on). Score SDE schedulers are continuous.

    Raises:
        IncompatibleCheckpointError: config fields without a counterpart (named), an unsupported scheduler.
        ValueError: ``sde`` missing for a folder without a scheduler, or given with one.
    """
    layout = _layout(unet_config)
    nf, ch_mult, attn = _levels(unet_config)
    common = {"act_fn": ("silu", "swish"), "resnet_time_scale_shift": "default", "class_embed_type": None,
              "num_class_embeds": None, "time_embedding_dim": None, "add_attention": True,
              "attn_norm_num_groups": None, "norm_eps": 1e-6, "mid_block_type": "UNetMidBlock2D"}
    fourier = _field(unet_config, "time_embedding_type") == "fourier"
    if not fourier:
        common.update(time_embedding_type="positional", freq_shift=1)
    head_dim = _field(unet_config, "attention_head_dim")
    attn_channels = sorted({nf * ch_mult[lv] for lv, b in enumerate(unet_config["down_block_types"])
                            if b.startswith("Attn")} | {nf * ch_mult[-1]})
    if head_dim is not None and any(c != head_dim for c in attn_channels):
        # diffusers attends with C // attention_head_dim heads; scoresde's attention blocks have one
        raise IncompatibleCheckpointError(
            f"UNet2DModel config field attention_head_dim={head_dim!r} has no scoresde {layout} counterpart "
            f"(supported: None, or the channel count of every attention block {attn_channels}: single-head "
            "attention)")
    size = _image_size(unet_config)
    model: dict[str, Any] = {"nf": nf, "ch_mult": ch_mult, "num_res_blocks": int(_field(unet_config,
                             "layers_per_block")), "attn_resolutions": attn,
                             "dropout": float(_field(unet_config, "dropout")), "resamp_with_conv": True,
                             "conditional": True, "nonlinearity": "swish"}
    if layout == "ddpm":
        _check_fields(unet_config, {**common, "time_embedding_type": "positional", "norm_num_groups": 32,
                                    "downsample_padding": 0, "mid_block_scale_factor": 1,
                                    "downsample_type": "conv", "upsample_type": "conv"}, layout)
        model.update(name="ddpm", scale_by_sigma=False, decoder_attn_per_block=True)
    else:
        in_out = {"in_channels": 3, "out_channels": 3}  # the skip blocks' image convolutions have 3 channels
        _check_fields(unet_config, {**common, **in_out, "norm_num_groups": None}, layout)
        scale = float(_field(unet_config, "mid_block_scale_factor"))
        if abs(scale - _SQRT2) > 1e-9:
            raise IncompatibleCheckpointError(f"UNet2DModel config field mid_block_scale_factor={scale!r} has no "
                                              "scoresde ncsnpp counterpart (supported: sqrt(2), skip_rescale)")
        model.update(name="ncsnpp", fir=True, fir_kernel=[1, 3, 3, 1], skip_rescale=True, resblock_type="biggan",
                     progressive="output_skip", progressive_input="input_skip", progressive_combine="sum",
                     embedding_type="fourier" if fourier else "positional", fourier_scale=16.0, init_scale=0.0,
                     scale_by_sigma=fourier)
    data = {"image_size": size, "num_channels": int(_field(unet_config, "in_channels")),
            "centered": not bool(_field(unet_config, "center_input_sample"))}
    if int(_field(unet_config, "out_channels")) != data["num_channels"]:
        raise IncompatibleCheckpointError(f"in_channels={data['num_channels']} but out_channels="
                                          f"{_field(unet_config, 'out_channels')}: scoresde models output the data's "
                                          "shape")
    training = _sde_section(scheduler_config, sde, continuous, fourier, model)
    return {"model": model, "data": data, "training": training}


def _sde_section(scheduler: Mapping[str, Any] | None, sde: SDE | None, continuous: bool | None, fourier: bool,
                 model: dict[str, Any]) -> dict[str, Any]:
    """``training`` section (SDE name, ``continuous``) and the SDE's entries of ``model`` (updated in place)."""
    if scheduler is None:
        if sde is None:
            raise ValueError("this diffusers folder has no scheduler config: pass sde= (VESDE, VPSDE, DiscreteVPSDE "
                             "or SubVPSDE) and, if it differs from the default, continuous=")
        names = {VESDE: "vesde", VPSDE: "vpsde", DiscreteVPSDE: "discrete_vpsde", SubVPSDE: "subvpsde"}
        if type(sde) not in names:
            raise ValueError(f"sde must be a VESDE, VPSDE, DiscreteVPSDE or SubVPSDE, got {type(sde).__name__}")
        if sde.T != 1.0 or isinstance(sde.prior_mean, Tensor) or sde.prior_mean != 0.0:
            mean = "a tensor" if isinstance(sde.prior_mean, Tensor) else sde.prior_mean
            raise ValueError(f"sde must have T = 1 and prior_mean = 0 (a run config has no place for others), got "
                             f"T={sde.T}, prior_mean={mean}")
        if isinstance(sde, VESDE):
            model.update(sigma_min=sde.sigma_min, sigma_max=sde.sigma_max)
        else:
            model.update(beta_min=sde.beta_min, beta_max=sde.beta_max)
        model["num_scales"] = sde.N
        return {"sde": names[type(sde)], "continuous": fourier if continuous is None else bool(continuous)}
    if sde is not None:
        raise ValueError("this diffusers folder has a scheduler config, which fixes the SDE: do not pass sde=")
    cls = scheduler.get("_class_name")
    n = int(scheduler.get("num_train_timesteps", 1000))
    if cls in SCORE_SDE_SCHEDULERS and continuous is False:
        raise ValueError(f"{cls} models are continuous-time: continuous=False is not available for them")
    if cls == "ScoreSdeVeScheduler":
        model.update(sigma_min=float(scheduler.get("sigma_min", 0.01)), sigma_max=float(scheduler.get("sigma_max",
                     1348.0)), num_scales=n)
        return {"sde": "vesde", "continuous": True}
    if cls == "ScoreSdeVpScheduler":
        model.update(beta_min=float(scheduler.get("beta_min", 0.1)), beta_max=float(scheduler.get("beta_max", 20.0)),
                     num_scales=n)
        return {"sde": "vpsde", "continuous": True}
    if cls in DDPM_SCHEDULERS:
        bad = [f"{k}={scheduler.get(k, d)!r} (supported: {d!r})" for k, d in
               (("beta_schedule", "linear"), ("prediction_type", "epsilon"), ("trained_betas", None))
               if scheduler.get(k, d) != d]
        if bad:
            raise IncompatibleCheckpointError(f"{cls} config fields without a scoresde counterpart: {'; '.join(bad)}")
        # beta_i = linspace(beta_min / N, beta_max / N, N) in VPSDE's DDPM tables: the scheduler's linear betas
        model.update(beta_min=float(f"{float(scheduler.get('beta_start', 1e-4)) * n:.12g}"),
                     beta_max=float(f"{float(scheduler.get('beta_end', 0.02)) * n:.12g}"), num_scales=n)
        if continuous and n != 1000:
            raise ValueError(f"continuous=True reads the network as a continuous VP model fed 999 t, which is its "
                             f"timestep t (N - 1) only for N = 1000 training timesteps (this one has {n})")
        # discrete: the table's own schedule (DiscreteVPSDE); continuous: Score SDE's continuous VP reading
        return {"sde": "vpsde" if continuous else "discrete_vpsde", "continuous": bool(continuous)}
    raise IncompatibleCheckpointError(f"scheduler {cls!r} is not supported; supported: "
                                      f"{', '.join(SCORE_SDE_SCHEDULERS + DDPM_SCHEDULERS)}")


# ---------------------------------------------------------------------------------------------------------------
# The key map
# ---------------------------------------------------------------------------------------------------------------

#: how a tensor changes between the two layouts: ``(theirs -> ours, ours -> theirs)``
_Transform = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]


def _same() -> _Transform:
    return (lambda t: t, lambda t: t)


def _linear_to_nin() -> _Transform:
    # nn.Linear / 1x1 Conv2d weight (out, in[, 1, 1]) <-> NIN's W (in, out)
    return (lambda t: t.reshape(t.shape[0], t.shape[1]).t().contiguous(), lambda t: t.t().contiguous())


def _conv1x1_to_nin() -> _Transform:
    return (lambda t: t[:, :, 0, 0].t().contiguous(), lambda t: t.t().contiguous()[:, :, None, None])


def _flip_halves(dim: int) -> _Transform:
    # [cos, sin] embedding columns (flip_sin_to_cos) <-> scoresde's [sin, cos]
    def flip(t: Tensor) -> Tensor:
        return torch.cat([t[:, dim // 2:], t[:, :dim // 2]], dim=1)

    return (flip, flip)


class _KeyMap:
    """``{diffusers key: (scoresde key, transform)}`` plus the GroupNorm group counts diffusers uses."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, _Transform]] = {}
        self.groups: dict[str, int] = {}  # our GroupNorm module name -> diffusers' num_groups

    def add(self, theirs: str, ours: str, transform: _Transform | None = None) -> None:
        self.entries[theirs] = (ours, transform or _same())

    def module(self, theirs: str, ours: str, names: Sequence[tuple[str, str]]) -> None:
        """Map the weight and bias of each ``(their sub, our sub)`` child (``''`` for the module itself)."""
        for t_sub, o_sub in names:
            t_prefix = f"{theirs}.{t_sub}" if t_sub else theirs
            o_prefix = f"{ours}.{o_sub}" if o_sub else ours
            self.add(f"{t_prefix}.weight", f"{o_prefix}.weight")
            self.add(f"{t_prefix}.bias", f"{o_prefix}.bias")

    def norm(self, theirs: str, ours: str, groups: int) -> None:
        self.module(theirs, ours, [("", "")])
        self.groups[ours] = groups

    def resnet(self, theirs: str, ours: str, block: nn.Module, groups: tuple[int, int]) -> None:
        """A diffusers ``ResnetBlock2D`` <-> our ``ResnetBlockDDPM``/``ResnetBlockBigGAN``."""
        self.norm(f"{theirs}.norm1", f"{ours}.GroupNorm_0", groups[0])
        self.norm(f"{theirs}.norm2", f"{ours}.GroupNorm_1", groups[1])
        self.module(theirs, ours, [("conv1", "Conv_0"), ("time_emb_proj", "Dense_0"), ("conv2", "Conv_1")])
        if hasattr(block, "NIN_0"):
            self.add(f"{theirs}.conv_shortcut.weight", f"{ours}.NIN_0.W", _conv1x1_to_nin())
            self.add(f"{theirs}.conv_shortcut.bias", f"{ours}.NIN_0.b")
        elif hasattr(block, "Conv_2"):
            self.module(theirs, ours, [("conv_shortcut", "Conv_2")])

    def attention(self, theirs: str, ours: str, groups: int) -> None:
        """A diffusers ``Attention`` (single head) <-> our ``AttnBlock`` (NIN_0..3 = q, k, v, out)."""
        self.norm(f"{theirs}.group_norm", f"{ours}.GroupNorm_0", groups)
        for t_sub, o_sub in (("to_q", "NIN_0"), ("to_k", "NIN_1"), ("to_v", "NIN_2"), ("to_out.0", "NIN_3")):
            self.add(f"{theirs}.{t_sub}.weight", f"{ours}.{o_sub}.W", _linear_to_nin())
            self.add(f"{theirs}.{t_sub}.bias", f"{ours}.{o_sub}.b")


def _gn(channels: int) -> int:
    return min(channels // 4, 32)


def diffusers_key_map(net: nn.Module, unet_config: Mapping[str, Any]) -> _KeyMap:
    """The map between a diffusers ``UNet2DModel`` state dict with ``unet_config`` and ``net`` (a
    :class:`~scoresde.nets.DDPM` or :class:`~scoresde.nets.NCSNpp` built from :func:`diffusers_config`), with the
    GroupNorm group counts diffusers uses (checked against ``net``'s by the loader and the exporter)."""
    layout = _layout(unet_config)
    km = _KeyMap()
    nf, ch_mult = net.nf, net.ch_mult
    levels, R = len(ch_mult), net.num_res_blocks
    res = net.resolutions
    ddpm = layout == "ddpm"
    fixed = 32 if ddpm else None  # DDPM: norm_num_groups (32) everywhere

    def groups(c: int) -> int:
        return fixed or _gn(c)

    def resample(theirs: str, ddpm_name: str, skip_name: str, ours: str, channels: int) -> None:
        """A resampling step: DDPM's strided / nearest-neighbour convolution, or NCSN++'s BigGAN FIR block."""
        if ddpm:
            km.module(f"{theirs}.{ddpm_name}.0.conv", f"{ours}.Conv_0", [("", "")])
        else:
            km.resnet(f"{theirs}.{skip_name}", ours, net.get_submodule(ours), (groups(channels), groups(channels)))

    if not ddpm and net.embedding_type == "fourier":
        km.add("time_proj.weight", "fourier_proj.W")
    emb_in = 2 * nf if not ddpm and net.embedding_type == "fourier" else nf
    flip = (not (not ddpm and net.embedding_type == "fourier")) and bool(_field(unet_config, "flip_sin_to_cos"))
    km.add("time_embedding.linear_1.weight", "temb_dense0.weight", _flip_halves(emb_in) if flip else None)
    km.add("time_embedding.linear_1.bias", "temb_dense0.bias")
    km.module("time_embedding.linear_2", "temb_dense1", [("", "")])
    km.module("conv_in", "conv_in", [("", "")])
    in_ch = nf
    for level in range(levels):
        r, out_ch = f"{res[level]}x{res[level]}", nf * ch_mult[level]
        for i in range(R):
            km.resnet(f"down_blocks.{level}.resnets.{i}", f"enc.{r}_block{i}", net.enc[f"{r}_block{i}"],
                      (groups(in_ch), groups(out_ch)))
            in_ch = out_ch
            if res[level] in net.attn_resolutions:
                km.attention(f"down_blocks.{level}.attentions.{i}", f"enc.{r}_attn{i}", 32 if not ddpm else fixed)
        if level == levels - 1:
            break
        r_down = f"{res[level + 1]}x{res[level + 1]}"
        resample(f"down_blocks.{level}", "downsamplers", "resnet_down", f"enc.{r_down}_down", in_ch)
        if not ddpm:
            km.module(f"down_blocks.{level}.skip_conv", f"enc.{r_down}_combine.Conv_0", [("", "")])
    c = nf * ch_mult[-1]
    km.resnet("mid_block.resnets.0", "mid.block0", net.mid["block0"], (groups(c), groups(c)))
    km.attention("mid_block.attentions.0", "mid.attn", groups(c))
    km.resnet("mid_block.resnets.1", "mid.block1", net.mid["block1"], (groups(c), groups(c)))
    skips = [nf]  # channels of the encoder outputs the decoder concatenates, in push order
    for lv in range(levels):
        skips += [nf * ch_mult[lv]] * (R + (lv < levels - 1))
    in_ch = c
    for j in range(levels):
        level = levels - 1 - j
        r, out_ch = f"{res[level]}x{res[level]}", nf * ch_mult[level]
        attn_up = _field(unet_config, "up_block_types")[j].startswith("Attn")
        for i in range(R + 1):
            skip = skips.pop()
            # AttnSkipUpBlock2D computes its first norm's groups as min(in + skip // 4, 32) (operator precedence)
            g0 = min(in_ch + skip // 4, 32) if (not ddpm and attn_up) else groups(in_ch + skip)
            km.resnet(f"up_blocks.{j}.resnets.{i}", f"dec.{r}_block{i}", net.dec[f"{r}_block{i}"], (g0, groups(out_ch)))
            in_ch = out_ch
            if ddpm and attn_up:
                km.attention(f"up_blocks.{j}.attentions.{i}", f"dec.{r}_attn{i}", fixed)
        if not ddpm and attn_up:
            km.attention(f"up_blocks.{j}.attentions.0", f"dec.{r}_attn", 32)
        if not ddpm:
            if level != 0:
                km.norm(f"up_blocks.{j}.skip_norm", f"dec.{r}_pyramid_norm", _gn(in_ch))
                km.module(f"up_blocks.{j}.skip_conv", f"dec.{r}_pyramid_conv", [("", "")])
            else:
                g = _field(unet_config, "norm_num_groups")
                km.norm("conv_norm_out", f"dec.{r}_pyramid_norm", g if g is not None else _gn(nf))
                km.module("conv_out", f"dec.{r}_pyramid_conv", [("", "")])
        if level != 0:
            r_up = f"{res[level - 1]}x{res[level - 1]}"
            resample(f"up_blocks.{j}", "upsamplers", "resnet_up", f"dec.{r_up}_up", in_ch)
    if ddpm:
        km.norm("conv_norm_out", "norm_out", fixed)
        km.module("conv_out", "conv_out", [("", "")])
    return km


def _check_groups(net: nn.Module, km: _KeyMap) -> None:
    bad = [f"{name} ({km.groups[name]} vs {net.get_submodule(name).num_groups})" for name in km.groups
           if net.get_submodule(name).num_groups != km.groups[name]]
    if bad:
        raise IncompatibleCheckpointError(
            "GroupNorm group counts differ between diffusers and scoresde (diffusers vs ours; at channel counts "
            f"below 128 the two layouts normalise differently): {', '.join(bad[:8])}"
            + (f", ... ({len(bad) - 8} more)" if len(bad) > 8 else ""))


def _rename_deprecated(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        parts = key.rsplit(".", 2)
        if len(parts) == 3 and ".attentions." in key and parts[1] in _DEPRECATED_ATTENTION:
            key = f"{parts[0]}.{_DEPRECATED_ATTENTION[parts[1]]}.{parts[2]}"
        if key == "time_proj.W":
            key = "time_proj.weight"
        out[key] = value
    return out


def _map_into(net: nn.Module, km: _KeyMap, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` (diffusers keys) as ``net``'s state dict (``sigmas`` kept), after a strict key and shape check."""
    own = net.state_dict()
    state = _rename_deprecated(state)
    converted, mismatched = {}, []
    for theirs, value in state.items():
        if theirs not in km.entries:
            continue
        ours, (to_ours, _) = km.entries[theirs]
        value = to_ours(value)
        if tuple(value.shape) != tuple(own[ours].shape):
            mismatched.append((theirs, tuple(state[theirs].shape), tuple(own[ours].shape)))
        converted[ours] = value.to(own[ours].dtype)
    report = KeyReport(missing=[k for k in km.entries if k not in state],
                       unexpected=[k for k in state if k not in km.entries], mismatched=mismatched)
    if not report.ok:
        raise IncompatibleCheckpointError(
            f"the diffusers weights do not match the {type(net).__name__} their config describes: "
            f"{report.summary('{key} {checkpoint} vs {network} expected (ours, in their layout)')}", report)
    unmapped = sorted(k for k in own if k not in converted and not k.endswith("sigmas"))
    if unmapped:  # a bug of the key map, not of the folder
        raise RuntimeError(f"internal error: scoresde tensors without a diffusers key: {unmapped[:8]}")
    return {**own, **converted}


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


def load_diffusers(
    path: str | Path,
    *,
    sde: SDE | None = None,
    continuous: bool | None = None,
    map_location: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> ScoreModel:
    """A local diffusers pipeline or model folder as a ready scoresde model (module docstring).

    Use it for models published in the diffusers format (``google/ddpm-cifar10-32``, ``google/ncsnpp-celebahq-256``,
    ... downloaded with ``huggingface-cli download`` or ``snapshot_download``; scoresde never fetches); use
    :func:`scoresde.load_checkpoint` for scoresde runs and the original Score SDE / PSLD checkpoints.

    Args:
        path: a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``), a model folder (``config.json`` and
            ``diffusion_pytorch_model.safetensors`` or ``.bin``; a ``scheduler_config.json`` beside them is used),
            or a file in one.
        sde: the SDE of a folder without a scheduler config (``VESDE``, ``VPSDE``, ``DiscreteVPSDE``, ``SubVPSDE``).
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
    from ..config import build_score_model

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
    _check_groups(net, km)
    return _map_into(net, km, state)


# ---------------------------------------------------------------------------------------------------------------
# Exporting
# ---------------------------------------------------------------------------------------------------------------


def _export_unet_config(net: nn.Module) -> dict[str, Any]:
    """The ``UNet2DModel`` config of ``net``, or an error naming the options diffusers cannot express."""
    from ..nets import DDPM, NCSNpp

    name = type(net).__name__
    if getattr(net, "label_embed", None) is not None:
        raise ValueError(f"{name} is class-conditional: UNet2DModel's class embedding is another design, so "
                         "class-conditional networks are not exported")
    bad: list[str] = []
    if not isinstance(net.act, nn.SiLU):
        bad.append(f"nonlinearity={type(net.act).__name__} (diffusers: swish)")
    if not net.conditional:
        bad.append("conditional=False (UNet2DModel is always time-conditional)")
    size = net.resolutions[0]
    channels = [net.nf * m for m in net.ch_mult]
    base = {"_class_name": "UNet2DModel", "_diffusers_version": EXPORT_DIFFUSERS_VERSION, "sample_size": size,
            "in_channels": net.in_channels, "out_channels": net.out_channels,
            "center_input_sample": not net.centered, "block_out_channels": channels,
            "layers_per_block": net.num_res_blocks, "act_fn": "silu", "attention_head_dim": None,
            "norm_eps": 1e-6, "resnet_time_scale_shift": "default", "add_attention": True,
            "class_embed_type": None, "num_class_embeds": None, "time_embedding_dim": None,
            "attn_norm_num_groups": None, "mid_block_type": "UNetMidBlock2D", "downsample_type": "conv",
            "upsample_type": "conv"}
    attn = [r in net.attn_resolutions for r in net.resolutions]
    if isinstance(net, DDPM):
        first = next(iter(net.enc.values()))
        if not getattr(net, "decoder_attn_per_block", False) and any(attn):
            bad.append("decoder_attn_per_block=False (Score SDE's DDPM attends once per decoder resolution; "
                       "UNet2DModel's AttnUpBlock2D after every block)")
        if net.scale_by_sigma:
            bad.append("scale_by_sigma=True")
        if first.GroupNorm_0.num_groups != 32:
            bad.append(f"num_groups={first.GroupNorm_0.num_groups} (diffusers DDPM layout: 32)")
        if len(net.resolutions) > 1 and not hasattr(net.enc[f"{net.resolutions[1]}x{net.resolutions[1]}_down"],
                                                    "Conv_0"):
            bad.append("resamp_with_conv=False")
        config = {**base, "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
                  "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
                  "time_embedding_type": "positional", "flip_sin_to_cos": False, "freq_shift": 1,
                  "downsample_padding": 0, "mid_block_scale_factor": 1, "norm_num_groups": 32,
                  "dropout": float(first.Dropout_0.p)}
    elif isinstance(net, NCSNpp):
        want = {"resblock_type": "biggan", "progressive": "output_skip", "progressive_input": "input_skip",
                "progressive_combine": "sum"}
        bad += [f"{k}={getattr(net, k)!r} (diffusers: {v!r})" for k, v in want.items() if getattr(net, k) != v]
        if not net._block_kw.get("fir") or tuple(net._block_kw.get("fir_kernel", ())) != (1, 3, 3, 1):
            bad.append("fir=False or fir_kernel != (1, 3, 3, 1) (diffusers: FIR [1, 3, 3, 1])")
        if not net.skip_rescale:
            bad.append("skip_rescale=False")
        if net.in_channels != 3 or net.out_channels != 3:
            bad.append(f"{net.in_channels}/{net.out_channels} channels (diffusers' skip blocks: 3)")
        fourier = net.embedding_type == "fourier"
        if net.scale_by_sigma != fourier:
            bad.append(f"scale_by_sigma={net.scale_by_sigma} with a {net.embedding_type} embedding (diffusers "
                       "divides by the noise level exactly for Fourier embeddings)")
        if fourier and net.fourier_proj.W.numel() != net.nf:
            bad.append("a Fourier embedding of another size than nf")
        config = {**base, "down_block_types": ["AttnSkipDownBlock2D" if a else "SkipDownBlock2D" for a in attn],
                  "up_block_types": ["AttnSkipUpBlock2D" if a else "SkipUpBlock2D" for a in reversed(attn)],
                  "time_embedding_type": "fourier" if fourier else "positional", "flip_sin_to_cos": False,
                  "freq_shift": 1, "downsample_padding": 1, "mid_block_scale_factor": _SQRT2,
                  "norm_num_groups": None, "dropout": float(net._block_kw["dropout"])}
    else:
        raise ValueError(f"cannot export {name}: diffusers' UNet2DModel corresponds to scoresde's DDPM (with "
                         "decoder_attn_per_block=True) and NCSN++ in the skip layout only")
    if bad:
        raise ValueError(f"cannot export this {name} as a UNet2DModel: {'; '.join(bad)}")
    return config


def _export_scheduler(model: ScoreModel) -> dict[str, Any] | None:
    """The scheduler config matching ``model``'s SDE and conventions, or ``None`` where diffusers has none."""
    sde, n = model.sde, model.sde.N
    common = {"_diffusers_version": EXPORT_DIFFUSERS_VERSION, "num_train_timesteps": n}
    if type(sde) is VESDE and model.label_type == "sigma" and model.output_type == "score":
        sampling = getattr(getattr(model, "config", None), "sampling", None)
        snr = float(sampling.snr) if sampling is not None else 0.16  # the run's corrector snr, else Score SDE's
        return {"_class_name": "ScoreSdeVeScheduler", **common, "sigma_min": sde.sigma_min,
                "sigma_max": sde.sigma_max, "snr": snr, "sampling_eps": 1e-5, "correct_steps": 1}
    discrete_labels = model.label_type == "timestep" or (model.label_type == "time" and n == 1000)
    if (type(sde) is DiscreteVPSDE and model.output_type == "eps" and discrete_labels) or (
            type(sde) is VPSDE and model.output_type == "eps" and model.label_type == "timestep"
            and not model.continuous):
        return {"_class_name": "DDPMScheduler", **common, "beta_start": sde.beta_min / n, "beta_end": sde.beta_max / n,
                "beta_schedule": "linear", "trained_betas": None, "variance_type": "fixed_large", "clip_sample": True,
                "prediction_type": "epsilon"}
    if type(sde) is VPSDE and model.output_type == "eps" and model.label_type == "time" and model.continuous:
        return {"_class_name": "ScoreSdeVpScheduler", **common, "beta_min": sde.beta_min, "beta_max": sde.beta_max,
                "sampling_eps": 1e-3}
    return None


def export_diffusers(model: ScoreModel | str | Path, out: str | Path, *, pipeline: bool = False,
                     use_ema: bool = True) -> Path:
    """Write a scoresde DDPM or NCSN++ model as a diffusers folder; returns ``out``.

    ``UNet2DModel.from_pretrained(out)`` loads the network and gives the same outputs (the network's own input and
    output; the conventions are the scheduler's). The scheduler config matching the model's SDE is written where
    diffusers has one (discrete DDPM chain: ``DDPMScheduler``; VE: ``ScoreSdeVeScheduler``; continuous VP:
    ``ScoreSdeVpScheduler``; sub-VP: none). Use it to share a model trained here; :func:`load_diffusers` reads the
    folder back.

    Args:
        model: a :class:`~scoresde.models.ScoreModel` with a :class:`~scoresde.nets.DDPM`
            (``decoder_attn_per_block=True``) or :class:`~scoresde.nets.NCSNpp` (skip layout: ``biggan`` blocks, FIR,
            ``output_skip``/``input_skip``) network, or a run folder / checkpoint directory (its EMA weights with
            ``use_ema``).
        out: the folder to write (created; existing files of the same names are replaced).
        pipeline: ``False``: a model folder (``config.json``, ``diffusion_pytorch_model.safetensors``,
            ``scheduler_config.json``), which ``UNet2DModel.from_pretrained(out)`` loads; ``True``: a pipeline folder
            (``model_index.json``, ``unet/``, ``scheduler/``) for ``DDPMPipeline``/``ScoreSdeVePipeline``.
        use_ema: with a path: load the EMA weights (default) or the online ones.

    Raises:
        ValueError: a network or option diffusers' ``UNet2DModel`` cannot express (named).
    """
    from safetensors.torch import save_file

    if not isinstance(model, nn.Module):
        from .load import load_checkpoint

        model = load_checkpoint(model, use_ema=use_ema)
    if not isinstance(model, ScoreModel):
        raise ValueError(f"cannot export {type(model).__name__}: only ScoreModel (DDPM / NCSN++ networks) has a "
                         "diffusers counterpart")
    net = model.net
    unet_config = _export_unet_config(net)
    km = diffusers_key_map(net, unet_config)
    _check_groups(net, km)
    own = net.state_dict()
    tensors = {theirs: from_ours(own[ours].detach()).to("cpu").contiguous()
               for theirs, (ours, (_, from_ours)) in km.entries.items()}
    scheduler = _export_scheduler(model)
    out = Path(out)
    unet_dir, scheduler_dir = (out / "unet", out / "scheduler") if pipeline else (out, out)
    unet_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(unet_dir / WEIGHTS_SAFETENSORS), metadata={"format": "pt"})
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


# ---------------------------------------------------------------------------------------------------------------
# Timesteps
# ---------------------------------------------------------------------------------------------------------------


def timestep_times(timesteps: Sequence[int] | Tensor, model: ScoreModel) -> Tensor:
    """The forward times ``t = k / (N - 1)`` at which a discrete-time model loaded by :func:`load_diffusers` sees the
    integer timesteps ``k`` of a diffusers scheduler (``scheduler.timesteps``), as a float64 tensor for
    ``scoresde.sample(model, ..., times=...)``.

    With ``denoise=True`` (the final step to ``alpha = 1``) this reproduces diffusers' DDIM and DPM-Solver loops on
    the same timesteps and the same ``alphas_cumprod`` (README: which spacings). Only VP models fed the timestep have
    integer timesteps (``label_type='timestep'``, or ``'time'``, i.e. ``999 t``, with ``N = 1000``).

    Raises:
        ValueError: ``model`` is not a discrete-time VP model, or a timestep outside ``[1, N - 1]`` (timestep 0 is
            ``t = 0``, where the sampling grid may not end).
    """
    label, n = getattr(model, "label_type", None), getattr(getattr(model, "sde", None), "N", 0)
    if not (label == "timestep" or (label == "time" and n == 1000)):
        raise ValueError("timestep_times needs a model fed the timestep t (N - 1): a diffusers DDPM folder loaded with "
                         f"load_diffusers (label_type 'timestep', or 'time' with N = 1000); got label_type {label!r}")
    steps = torch.as_tensor(timesteps).to(torch.float64).reshape(-1)
    if bool(((steps < 1) | (steps > n - 1) | (steps != steps.round())).any()):
        raise ValueError(f"timesteps must be integers in [1, {n - 1}], got {steps.tolist()}")
    times = steps / (n - 1)
    # k / (N - 1) * (N - 1) rounds below k for a few k in float64; the discrete tables are indexed by its floor
    low = torch.floor(times * (n - 1)) < steps
    return torch.where(low, torch.nextafter(times, torch.full_like(times, 2.0)), times)

