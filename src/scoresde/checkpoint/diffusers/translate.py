"""Config translation between diffusers and scoresde: ``UNet2DModel``/scheduler configs <-> our config sections.

* :func:`diffusers_config`: a ``UNet2DModel`` config and its scheduler config (or an SDE for a folder without one) ->
  scoresde's ``model``/``data``/``training`` sections (the rules: :mod:`scoresde.checkpoint.diffusers`).
* :func:`export_unet_config` / :func:`export_scheduler_config`: the other way, a scoresde network / model -> the
  ``UNet2DModel`` config and the scheduler config that describe it (used by
  :func:`~scoresde.checkpoint.diffusers.export.export_diffusers`).
* :func:`timestep_times`: a scheduler's integer timesteps -> the forward times of a loaded discrete model.

Only configs are translated here; the weights' key map is :mod:`.keymap`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...models import ScoreModel
from ...nets import DDPM, NCSNpp
from ...sdes import CONFIG_SDES, VESDE, VPSDE, DiscreteVPSDE
from ...sdes.base import SDE
from ..errors import IncompatibleCheckpointError
from .folder import EXPORT_DIFFUSERS_VERSION

__all__ = [
    "DDPM_SCHEDULERS",
    "FOLDER_SDES",
    "SCORE_SDE_SCHEDULERS",
    "SKIP_ATTENTION_GROUPS",
    "diffusers_config",
    "export_scheduler_config",
    "export_unet_config",
    "timestep_times",
    "unet_field",
    "unet_layout",
]

#: schedulers whose ``beta_schedule='linear'`` table is the discrete DDPM chain (DiscreteVPSDE, ``continuous=False``)
DDPM_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
                   "PNDMScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler", "EulerDiscreteScheduler",
                   "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler")
SCORE_SDE_SCHEDULERS = ("ScoreSdeVeScheduler", "ScoreSdeVpScheduler")

#: ``training.sde`` name -> class of the SDEs that read a folder without a scheduler config: those a run config names
#: (:data:`scoresde.sdes.CONFIG_SDES`) whose state is the data, as a ``UNet2DModel``'s input and output are
FOLDER_SDES: dict[str, type[SDE]] = {name: cls for name, cls in CONFIG_SDES.items() if not cls.phase_space}
_FOLDER_SDE_NAMES = ", ".join(cls.__name__ for cls in FOLDER_SDES.values())

_DDPM_DOWN, _DDPM_UP = ("DownBlock2D", "AttnDownBlock2D"), ("UpBlock2D", "AttnUpBlock2D")
_SKIP_DOWN, _SKIP_UP = ("SkipDownBlock2D", "AttnSkipDownBlock2D"), ("SkipUpBlock2D", "AttnSkipUpBlock2D")
_SQRT2 = math.sqrt(2.0)
#: GroupNorm groups of the attention blocks of diffusers' AttnSkipDownBlock2D / AttnSkipUpBlock2D (a constant there);
#: NCSN++ normalises every block with min(C // 4, 32) groups, so the two agree at 4 * 32 = 128 channels and more
SKIP_ATTENTION_GROUPS = 32

# ---------------------------------------------------------------------------------------------------------------
# UNet2DModel config -> scoresde config
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


def unet_field(config: Mapping[str, Any], key: str) -> Any:
    """``config[key]``, or diffusers' ``UNet2DModel`` default where the config leaves the field out."""
    return config.get(key, _UNET_DEFAULTS.get(key))


def unet_layout(config: Mapping[str, Any]) -> str:
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
        value = unet_field(config, key)
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
    its scheduler config (:mod:`scoresde.checkpoint.diffusers`), or of ``sde`` for a folder without a scheduler.

    Args:
        unet_config: the UNet's ``config.json``.
        scheduler_config: the scheduler's ``scheduler_config.json`` (``None``: none).
        sde: the forward SDE when there is no scheduler (one of :data:`FOLDER_SDES`: ``VESDE``, ``VPSDE``,
            ``SubVPSDE``, ``DiscreteVPSDE``, with ``T = 1`` and a zero prior mean); with a scheduler it must be
            ``None``. Its ``training.sde`` name and ``model`` entries are its own (``config_name``,
            ``model_config()``).
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
        ValueError: ``sde`` missing for a folder without a scheduler, given with one, or one a run config cannot
            hold.
    """
    layout = unet_layout(unet_config)
    nf, ch_mult, attn = _levels(unet_config)
    common = {"act_fn": ("silu", "swish"), "resnet_time_scale_shift": "default", "class_embed_type": None,
              "num_class_embeds": None, "time_embedding_dim": None, "add_attention": True,
              "attn_norm_num_groups": None, "norm_eps": 1e-6, "mid_block_type": "UNetMidBlock2D"}
    fourier = unet_field(unet_config, "time_embedding_type") == "fourier"
    if not fourier:
        common.update(time_embedding_type="positional", freq_shift=1)
    head_dim = unet_field(unet_config, "attention_head_dim")
    attn_channels = sorted({nf * ch_mult[lv] for lv, b in enumerate(unet_config["down_block_types"])
                            if b.startswith("Attn")} | {nf * ch_mult[-1]})
    if head_dim is not None and any(c != head_dim for c in attn_channels):
        # diffusers attends with C // attention_head_dim heads; scoresde's attention blocks have one
        raise IncompatibleCheckpointError(
            f"UNet2DModel config field attention_head_dim={head_dim!r} has no scoresde {layout} counterpart "
            f"(supported: None, or the channel count of every attention block {attn_channels}: single-head "
            "attention)")
    size = _image_size(unet_config)
    model: dict[str, Any] = {"nf": nf, "ch_mult": ch_mult,
                             "num_res_blocks": int(unet_field(unet_config, "layers_per_block")),
                             "attn_resolutions": attn,
                             "dropout": float(unet_field(unet_config, "dropout")), "resamp_with_conv": True,
                             "conditional": True, "nonlinearity": "swish"}
    if layout == "ddpm":
        _check_fields(unet_config, {**common, "time_embedding_type": "positional",
                                    "downsample_padding": 0, "mid_block_scale_factor": 1,
                                    "downsample_type": "conv", "upsample_type": "conv"}, layout)
        groups = unet_field(unet_config, "norm_num_groups")
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise IncompatibleCheckpointError(f"UNet2DModel config field norm_num_groups={groups!r} has no scoresde "
                                              "ddpm counterpart (supported: a positive int, the GroupNorm groups of "
                                              "every block)")
        model.update(name="ddpm", scale_by_sigma=False, decoder_attn_per_block=True, num_groups=groups)
    else:
        in_out = {"in_channels": 3, "out_channels": 3}  # the skip blocks' image convolutions have 3 channels
        _check_fields(unet_config, {**common, **in_out, "norm_num_groups": None}, layout)
        scale = float(unet_field(unet_config, "mid_block_scale_factor"))
        if abs(scale - _SQRT2) > 1e-9:
            raise IncompatibleCheckpointError(f"UNet2DModel config field mid_block_scale_factor={scale!r} has no "
                                              "scoresde ncsnpp counterpart (supported: sqrt(2), skip_rescale)")
        model.update(name="ncsnpp", fir=True, fir_kernel=[1, 3, 3, 1], skip_rescale=True, resblock_type="biggan",
                     progressive="output_skip", progressive_input="input_skip", progressive_combine="sum",
                     embedding_type="fourier" if fourier else "positional", fourier_scale=16.0, init_scale=0.0,
                     scale_by_sigma=fourier)
    data = {"image_size": size, "num_channels": int(unet_field(unet_config, "in_channels")),
            "centered": not bool(unet_field(unet_config, "center_input_sample"))}
    if int(unet_field(unet_config, "out_channels")) != data["num_channels"]:
        raise IncompatibleCheckpointError(f"in_channels={data['num_channels']} but out_channels="
                                          f"{unet_field(unet_config, 'out_channels')}: scoresde models output the "
                                          "data's shape")
    training = _sde_section(scheduler_config, sde, continuous, fourier, model)
    return {"model": model, "data": data, "training": training}


def _sde_section(scheduler: Mapping[str, Any] | None, sde: SDE | None, continuous: bool | None, fourier: bool,
                 model: dict[str, Any]) -> dict[str, Any]:
    """``training`` section (SDE name, ``continuous``) and the SDE's entries of ``model`` (updated in place)."""
    if scheduler is None:
        if sde is None:
            raise ValueError(f"this diffusers folder has no scheduler config: pass sde= (one of {_FOLDER_SDE_NAMES}) "
                             "and, if it differs from the default, continuous=")
        if FOLDER_SDES.get(type(sde).config_name) is not type(sde):
            raise ValueError(f"sde must be one of {_FOLDER_SDE_NAMES}, got {type(sde).__name__}")
        try:
            model.update(sde.model_config())
        except ValueError as err:  # T != 1, a nonzero prior mean: the SDE names what a run config cannot hold
            raise ValueError(f"sde cannot be held by a run config: {err}") from None
        return {"sde": sde.config_name, "continuous": fourier if continuous is None else bool(continuous)}
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
# scoresde model -> UNet2DModel and scheduler configs
# ---------------------------------------------------------------------------------------------------------------


def export_unet_config(net: nn.Module) -> dict[str, Any]:
    """The ``UNet2DModel`` config of ``net``, or an error naming the options diffusers cannot express."""
    name = type(net).__name__
    if not isinstance(net, (DDPM, NCSNpp)):
        raise ValueError(f"{name} networks have no diffusers counterpart: export_diffusers writes DDPM and "
                         "NCSN++/DDPM++ U-Nets (UNet2DModel)")
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
        if len(net.resolutions) > 1 and not hasattr(net.enc[f"{net.resolutions[1]}x{net.resolutions[1]}_down"],
                                                    "Conv_0"):
            bad.append("resamp_with_conv=False")
        config = {**base, "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
                  "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
                  "time_embedding_type": "positional", "flip_sin_to_cos": False, "freq_shift": 1,
                  "downsample_padding": 0, "mid_block_scale_factor": 1,
                  # the DDPM layout normalises every block with norm_num_groups groups, as our DDPM its num_groups
                  "norm_num_groups": first.GroupNorm_0.num_groups,
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
        narrow = [f"{r}x{r} has {c} channels ({min(c // 4, 32)} groups)"
                  for r, c in zip(net.resolutions, channels, strict=True)
                  if r in net.attn_resolutions and min(c // 4, 32) != SKIP_ATTENTION_GROUPS]
        if narrow:
            bad.append(f"attention at {', '.join(narrow)}: diffusers' skip blocks normalise attention with "
                       f"{SKIP_ATTENTION_GROUPS} GroupNorm groups, NCSN++ with min(C/4, 32), so every attention "
                       f"resolution needs at least {4 * SKIP_ATTENTION_GROUPS} channels (nf * ch_mult; levels "
                       "without attention may have any width)")
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


def export_scheduler_config(model: ScoreModel) -> dict[str, Any] | None:
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

