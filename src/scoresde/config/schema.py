"""Typed, validated run configs: the original Score SDE layout as dataclasses, plus our own training options.

A :class:`Config` has the sections of the original ``ml_collections`` configs (``training``, ``sampling``,
``eval``, ``data``, ``model``, ``optim``, ``seed``) so that every original preset (:mod:`scoresde.config.presets`)
loads unchanged, and our presets (2-D toys, digits, phase space, FP) use the same names. ``model`` stays a plain
dict: its keys depend on the architecture and are validated by the network builder (:mod:`scoresde.config.factory`).

* :func:`config_from_dict` checks every key and type: an unknown key is an error that lists the closest valid
  keys; a wrong type names the key, the value and the expected type.
* :func:`apply_overrides` applies ``--set section.key=value`` strings (values parsed by the field's type).
* :func:`load_config` resolves any config source (:func:`scoresde.config.resolve_config`) and validates it.

Choices are those of their owners: ``training.sde`` the SDE classes' :data:`scoresde.sdes.CONFIG_SDES`,
``training.fp_mode``/``fp_weighting`` :data:`scoresde.losses.fp_core.MODES`/``WEIGHTINGS``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.augment import AugmentPipe
from ..data.toy2d import TOY_2D
from ..losses.fp_core import MODES as FP_MODES
from ..losses.fp_core import WEIGHTINGS as FP_WEIGHTINGS
from ..losses.weighting import check_recipe
from ..numerics.checks import Bounds, HintMismatch, check_choice, check_number, convert_to_hint
from ..numerics.grids import GRIDS
from ..sampling.registry import SAMPLERS
from ..sampling.steps import CORRECTORS, PREDICTORS
from ..sdes import CONFIG_SDES
from .factory import CLASS_MODEL_KEYS, NETWORKS, PRECONDITIONING_MODEL_KEYS, RUNTIME_MODEL_KEYS
from .resolve import ConfigLike, resolve_config

#: ``model`` keys of the augmentation labels (EDM's ``augment_dim``: the length of the ``augment_labels`` that NCSNpp
#: and DDPM add to their noise embedding, :class:`scoresde.nets.embeddings.AugmentEmbedding`; 0 = none)
AUGMENT_MODEL_KEYS = ("augment_dim",)

__all__ = ["AMP_MODES", "FP_DIFFUSION_KEYS", "IGNORED_KEYS", "MAX_BATCH_ELEMENTS", "MAX_MODEL_INTEGER",
           "NONFINITE_POLICIES", "SAMPLING_METHODS",
           "SDES", "SECTIONS", "Config", "ConfigError", "DataConfig", "EvalConfig", "OptimConfig", "SamplingConfig",
           "TrainingConfig", "apply_overrides", "config_from_dict", "load_config", "section_from_dict", "validate"]

# Keys of original configs that the original code never reads (typos and leftovers), accepted and dropped.
IGNORED_KEYS = frozenset({
    "device",                 # a torch.device at import time in the originals; where to run is the launcher's choice
    "training.continuouse",   # typo in configs/ve/ncsnv2/bedroom.py (the original keeps continuous=True)
    "training.loss",          # configs/ve/ncsn/celeba.py sets this instead of training.sde
    "data.tfrecords_path",    # TFRecord location of the TF pipeline
})

SDES = tuple(CONFIG_SDES)

#: FP-Diffusion's own ``training`` keys (Lai et al. 2023, its ``configs/default_*_configs.py`` and README) -> ours, with
#: the value map of the ones whose values differ (``scalar_fp``: 'True' = the scalar term only, 'False' = the vector
#: term only, 'both'). Read wherever a whole config is read (:func:`config_from_dict`: ``.py``/JSON/dict configs,
#: checkpoint loaders, ``scoresde import``, ``train --config file``); not accepted as ``--set`` overrides, which name
#: our keys.
FP_DIFFUSION_KEYS: dict[str, tuple[str, dict[Any, str] | None]] = {
    "alpha": ("fp_alpha", None),
    "beta": ("fp_beta", None),
    "m": ("fp_m", None),
    "scalar_fp": ("fp_mode", {"both": "both", "True": "scalar", "False": "vector", True: "scalar", False: "vector"}),
    "fp_wgt_type": ("fp_weighting", None),
}


def _fp_diffusion_training(section: Any) -> Any:
    """``section`` (a ``training`` mapping) with FP-Diffusion's key names replaced by ours (:data:`FP_DIFFUSION_KEYS`);
    a key given under both names with different values, or a ``scalar_fp`` value outside its three, is a
    :class:`ConfigError`."""
    if not isinstance(section, Mapping) or not any(key in section for key in FP_DIFFUSION_KEYS):
        return section
    out = dict(section)
    for theirs, (ours, values) in FP_DIFFUSION_KEYS.items():
        if theirs not in out:
            continue
        value = out.pop(theirs)
        if values is not None:
            if not isinstance(value, (str, bool)) or value not in values:
                raise ConfigError(f"unknown training.{theirs} {value!r}; valid values are: 'both', 'True', 'False'")
            value = values[value]
        if ours in out and out[ours] != value:
            raise ConfigError(f"config keys training.{theirs} (FP-Diffusion's name) = {value!r} and training.{ours} = "
                              f"{out[ours]!r} disagree; keep one")
        out[ours] = value
    return out

AMP_MODES = ("none", "bf16", "fp16", "auto")

#: Largest number of entries of one batch (``batch_size`` times the entries of one example: C·H·W for images, 2 for
#: the 2-D toys): 2**31 entries are 8 GiB in float32, beyond any one device; a larger batch is refused naming the key
#: instead of failing in the allocator after the run folder is written.
MAX_BATCH_ELEMENTS = 2**31
#: Largest integer in the ``model`` section (widths, depths, channel multipliers, ``num_scales``): a width of 2**14
#: already gives a layer of 2**28 weights (1 GiB in float32); the presets' largest value is 2000 (``num_scales``).
MAX_MODEL_INTEGER = 2**14
#: Largest magnitude of a float in the ``model`` section (the SDE's ``beta_max``, ``sigma_max``, ...): they become
#: float32 tensors, whose range ends here.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _num(default: Any, allowed: str) -> Any:
    """A numeric dataclass field whose allowed values ``allowed`` are written as an interval (``"(0, 1)"``, ``"[1,
    2147483647]"``, ``"[0, 1)"``) or a one-sided bound (``"> 0"``, ``">= 1"``), kept as its metadata (a
    :class:`~scoresde.numerics.checks.Bounds`) and checked by :func:`validate`. A numeric field without it must only
    be finite (an integer: within int64)."""
    side = re.fullmatch(r"(>=?)\s*(\S+)", allowed)
    if side:
        bounds = Bounds(low=float(side[2]) if "." in side[2] else int(side[2]), low_open=side[1] == ">")
    else:
        ends = re.fullmatch(r"([\[(])\s*([^,]+),\s*([^\])]+)([\])])", allowed)
        assert ends, f"bad interval {allowed!r}"  # a typo in this file, not a user input
        low, high = (float(v) if "." in v else int(v) for v in (ends[2], ends[3]))
        bounds = Bounds(low=low, high=high, low_open=ends[1] == "(", high_open=ends[4] == ")")
    return field(default=default, metadata={"bounds": bounds})

NONFINITE_POLICIES = ("stop", "skip")
SAMPLING_METHODS = tuple(SAMPLERS)  # the registry's names (scoresde.sampling.registry)


@dataclass
class TrainingConfig:
    """``training`` section. The first ten fields are the original ones; the rest are scoresde's options."""

    sde: str = "vesde"                       # 'vesde' | 'vpsde' | 'subvpsde' | 'psld' | 'cld'
    continuous: bool = True                  # continuous-time DSM (eq. 7) vs the discrete SMLD/DDPM losses
    reduce_mean: bool = False                # mean over C·H·W instead of 0.5·sum
    likelihood_weighting: bool = False       # lambda(t) = g(t)^2
    batch_size: int = _num(128, "[1, 2147483647]")  # global batch: all ranks and all accumulation steps together
    n_iters: int = _num(1300001, ">= 1")     # number of optimizer steps
    snapshot_freq: int = _num(50000, ">= 1")  # keep a numbered checkpoint (and a sample grid) every this many steps
    snapshot_freq_for_preemption: int = _num(10000, ">= 1")  # overwrite checkpoints/latest every this many steps
    log_freq: int = _num(50, ">= 1")         # training-loss logging period
    eval_freq: int = _num(100, ">= 0")       # held-out loss (EMA weights) period; 0 disables it
    snapshot_sampling: bool = True           # sample a grid at each snapshot
    eps: float = _num(1e-5, "(0, 1)")        # smallest training time of the continuous loss
    grad_accum: int = _num(1, ">= 1")        # micro-batches per optimizer step (per rank)
    amp: str = "none"                        # 'none' | 'bf16' | 'fp16' autocast (fp16 uses a GradScaler) | 'auto':
                                             # bf16 where the device computes it natively (CUDA; CPU with AVX512-BF16
                                             # or AMX), else float32
    compile: bool = False                    # torch.compile the network
    nonfinite: str = "stop"                  # on a NaN/inf loss: 'stop' (error naming the step) or 'skip' the step
    max_skips: int = _num(10, ">= 1")        # nonfinite='skip': stop after this many consecutive skipped steps
    num_snapshot_samples: int = _num(64, ">= 1")  # images in each snapshot grid
    snapshot_sampler: str = "dpm_solver"     # sampler of the snapshot grids (a scoresde.sampling.SAMPLERS name, run
                                             # with its defaults), or 'sampling': the run's sampling section (slow:
                                             # pc at 1000 steps took 105 s for 64 images of 32x32 on a CPU)
    snapshot_steps: int = _num(20, ">= 1")   # steps of a fixed-step snapshot_sampler (dpm_solver 20: 20 NFE)
    num_workers: int = _num(0, ">= 0")       # DataLoader workers per rank
    fp_alpha: float = _num(0.0, ">= 0")      # FP-Diffusion (Lai et al. 2023) weight of the vector score-FPE residual
    fp_beta: float = _num(0.0, ">= 0")       # ... and of the scalar term; both 0 (default) disable the regulariser
    fp_mode: str = "both"                    # 'both' | 'vector' | 'scalar' (the original's scalar_fp both/False/True)
    fp_weighting: str = "ll"                 # vector-term time weight: 'constant' | 'convention' (g) | 'll' (g^2)
    fp_m: float = _num(2.0, "> 0")           # power of the per-example residual norm
    fp_min_time: float = _num(0.0, "[0, 1)")  # phase space only: the regulariser skips t < fp_min_time (0.01 advised)
    label_dropout: float = _num(0.0, "[0, 1)")  # class-conditional models: probability that a label becomes the
                                             # null label -1 (classifier-free guidance training, Ho & Salimans 2022)
    ema_halflife_kimg: float | None = _num(None, "> 0")  # EDM's EMA: half-life in thousands of training images
                                             # (500 for CIFAR-10) instead of model.ema_rate (set that to none)
    ema_rampup_ratio: float | None = _num(0.05, "> 0")  # EDM's EMA ramp-up: half-life <= this x images seen (None:
                                             # no ramp-up); with ema_halflife_kimg only
    augment_p: float = _num(0.0, "[0, 1]")   # EDM's non-leaking augmentation probability (0.12 for CIFAR-10; needs
                                             # model.augment_dim = 9); 0: off
    objective: str = "dsm"                   # 'dsm' (Score SDE's losses) | 'edm' (Karras et al.'s weighted denoising
                                             # loss, scoresde.losses.edm_loss) | 'flow_matching' (velocity loss)
    loss_weighting: str | None = None        # objective 'edm': 'edm' (None) | 'snr' | 'likelihood' | 'min_snr' |
                                             # 'soft_min_snr' (scoresde.losses.weighting; sigma_d: model.sigma_data)
    time_distribution: str | None = None     # 'edm'/'flow_matching': 'uniform' | 'lognormal' | 'logit_normal' (None:
                                             # lognormal for 'edm', uniform for 'flow_matching')
    p_mean: float | None = None              # mean of the normal of ln s / logit t (None: -1.2 lognormal, 0 logit)
    p_std: float | None = _num(None, "> 0")  # its std (None: 1.2 lognormal, 1 logit_normal)
    min_snr_gamma: float = _num(5.0, "> 0")  # loss_weighting 'min_snr': the SNR cap gamma (Hang et al. 2023)


#: the ``sampling`` fields of Score SDE's configs, with its defaults (the registry adds every other sampler option)
_SAMPLING_BASE: tuple[tuple[str, Any, Any], ...] = (
    ("method", str, "pc"),                   # a name of scoresde.sampling.SAMPLERS
    ("predictor", str, "reverse_diffusion"),
    ("corrector", str, "langevin"),
    ("snr", float, 0.16),
    ("n_steps_each", int, 1),
    ("noise_removal", bool, True),           # the samplers' `denoise` option
    ("probability_flow", bool, False),
    ("eps", float | None, None),             # last time of the grid; None: the SDE's sampling_eps (EDM: sigma_min)
    ("rtol", float, 1e-5),                   # ODE tolerances
    ("atol", float, 1e-5),
    ("ode_method", str, "dopri5"),           # the ODE sampler's `method`
    ("grid", str | None, None),              # time grid (scoresde.numerics.grids.GRIDS); None: the sampler's default
    ("steps", int | None, None),             # steps of the fixed-step samplers; None: the SDE's N
)
#: allowed values of Score SDE's numeric sampling fields (:func:`_num`'s notation); the registry's other numeric
#: options must be finite
_SAMPLING_BOUNDS = {"snr": ">= 0", "n_steps_each": ">= 0", "eps": "(0, 1)", "rtol": "> 0", "atol": "> 0",
                    "steps": ">= 1"}
#: sampler options that are not config values (per-call inputs)
_NOT_CONFIG = frozenset({"progress", "times"})


def _sampling_fields() -> list[tuple[str, Any, Any]]:
    """Score SDE's fields, then every other option of every registered sampler under its config name."""
    fields = [(name, typ, _num(default, _SAMPLING_BOUNDS[name]) if name in _SAMPLING_BOUNDS else
               dataclasses.field(default=default)) for name, typ, default in _SAMPLING_BASE]
    # an explicit time grid of a fixed-step sampler (a fitted one: scoresde.sampling.optimize_grid); None: steps/grid
    fields.append(("times", tuple[float, ...] | None, dataclasses.field(default=None)))
    seen = {name for name, _, _ in fields}
    for spec in SAMPLERS.values():
        defaults, types_ = spec.options(), spec.option_types()
        for option, default in defaults.items():
            name = spec.config_names.get(option, option)
            if option in _NOT_CONFIG or name in seen:
                continue
            fields.append((name, types_[option], dataclasses.field(default=default)))
            seen.add(name)
    return fields


def _sampler_call(self: Any) -> tuple[str, dict[str, Any]]:
    """``(sampler name, options)`` for :func:`scoresde.sample` from this section: each option of the chosen
    sampler read from its config field (``noise_removal`` -> ``denoise``, ``ode_method`` -> the ODE's ``method``)."""
    spec = SAMPLERS.get(self.method)
    values = {option: getattr(self, spec.config_names.get(option, option))
              for option in spec.options() if option not in _NOT_CONFIG}
    # None in a field whose sampler default is not None means "the sampler's own default" (e.g. grid: heun's karras)
    defaults = spec.options()
    options = {k: v for k, v in values.items() if v is not None or defaults[k] is None}
    if self.times is not None and "times" in defaults:  # sampling.times: the explicit grid replaces steps and grid
        options["times"] = list(self.times)
    return self.method, options


SamplingConfig = dataclasses.make_dataclass(
    "SamplingConfig", _sampling_fields(), namespace={
        "__doc__": "``sampling`` section: the sampler used for snapshots, ``scoresde sample`` and ``scoresde eval``. "
                   "Its fields are Score SDE's plus every option of every sampler in ``scoresde.sampling.SAMPLERS`` "
                   "(derived from the registry: a new sampler's options appear here without an edit).",
        "sampler_call": _sampler_call, "__module__": __name__})


@dataclass
class EvalConfig:
    """``eval`` section (the original's; evaluation commands read it)."""

    begin_ckpt: int = 9
    end_ckpt: int = 26
    batch_size: int = _num(1024, "[1, 2147483647]")
    enable_sampling: bool = False
    num_samples: int = _num(50000, ">= 0")
    enable_loss: bool = True
    enable_bpd: bool = False
    bpd_dataset: str = "test"


@dataclass
class DataConfig:
    """``data`` section: the original keys plus where the files are."""

    dataset: str = "CIFAR10"                 # CIFAR10 | CELEBA | CelebAHQ | FFHQ | LSUN | digits | folder | 2-D toys
    image_size: int = _num(32, ">= 1")
    num_channels: int = _num(3, ">= 1")
    random_flip: bool = True
    centered: bool = False                   # model range [-1, 1] instead of [0, 1]
    uniform_dequantization: bool = False
    channels: int | None = None              # read by the original NCSNv2 configs; must equal num_channels if set
    category: str | None = None              # LSUN category (original key)
    root: str | None = None                  # CIFAR-10 download folder, or the image folder / zip
    download: bool = False                   # fetch CIFAR-10 if it is missing
    eval_split: str = "test"                 # held-out split for the evaluation loss
    skip_bad_files: bool = False             # image folders: leave unreadable files out (one warning), not refuse


@dataclass
class OptimConfig:
    """``optim`` section, with the original semantics (linear warm-up of the learning rate, global-norm clip)."""

    optimizer: str = "Adam"
    lr: float = _num(2e-4, "> 0")
    beta1: float = _num(0.9, "[0, 1)")
    eps: float = _num(1e-8, "> 0")
    weight_decay: float = _num(0.0, ">= 0")
    warmup: int = _num(5000, ">= 0")         # steps of linear learning-rate warm-up; 0 disables it
    grad_clip: float = 1.0                   # max global gradient norm; negative disables clipping
    amsgrad: bool = False


@dataclass
class Config:
    """A whole run: the original sections plus the seed. ``model`` is validated by the network builder."""

    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = _num(42, "[0, 9223372036854775807]")  # torch.manual_seed's int64 range

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dicts (JSON-ready), in the original layout."""
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {"training": TrainingConfig, "sampling": SamplingConfig, "eval": EvalConfig,
                             "data": DataConfig, "optim": OptimConfig}


class ConfigError(ValueError):
    """A config key or value that is not allowed; the message names it and what is allowed."""


def _closest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"{hint} (valid keys: {', '.join(sorted(valid))})"


def _check_type(path: str, value: Any, hint: Any) -> Any:
    """Return ``value`` converted to the annotated type ``hint`` (:func:`~scoresde.numerics.checks.convert_to_hint`:
    int -> float, list -> tuple) or raise a :class:`ConfigError` naming the whole key."""
    try:
        return convert_to_hint(value, hint)
    except HintMismatch:
        pass
    except TypeError:  # pragma: no cover - every field type is one convert_to_hint reads
        raise TypeError(f"unsupported config type {hint} for {path}") from None
    name = str(hint) if typing.get_origin(hint) is tuple else getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key {path} must be of type {name}, got {value!r} ({type(value).__name__})")


def section_from_dict(name: str, cls: type, values: Mapping[str, Any]) -> Any:
    """The dataclass section ``cls`` called ``name`` from plain values, each converted to its field's type; an unknown
    key is a :class:`ConfigError` listing the closest valid ones. Used for the run config's sections and for other
    typed option sections (``scoresde train-classifier``'s ``classifier``); range checks are the caller's."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section {name!r} must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        path = f"{name}.{key}"
        if path in IGNORED_KEYS:
            continue
        if key not in hints:
            raise ConfigError(f"unknown config key {path}{_closest(key, list(hints))}")
        kwargs[key] = _check_type(path, value, hints[key])
    return cls(**kwargs)


def _check_sampler_fields(s: Any) -> None:
    """A sampling field of ours (not one of Score SDE's, which its configs set for every method) that the chosen
    sampler does not take must keep its default: otherwise it would be silently ignored."""
    spec = SAMPLERS.get(s.method)
    used = spec.config_fields()
    base = {name for name, _, _ in _SAMPLING_BASE} - {"steps"}
    for f in dataclasses.fields(s):
        if f.name in base or f.name in used or f.name == "method":
            continue
        if getattr(s, f.name) != f.default:
            takers = [name for name, other in SAMPLERS.items() if f.name in other.config_fields()]
            raise ConfigError(f"config key sampling.{f.name} = {getattr(s, f.name)!r} is not an option of sampler "
                              f"{s.method!r} (it would be ignored); samplers that take it: {', '.join(takers)}")


def _check_classes(cfg: Config) -> None:
    """``training.label_dropout`` (in ``[0, 1)``: its field's bounds) nonzero only for a class-conditional model
    (``model.num_classes`` > 0; the network builder checks ``num_classes`` and ``null_label`` themselves)."""
    p = cfg.training.label_dropout
    num_classes = cfg.model.get("num_classes", 0)
    if p and not (isinstance(num_classes, (int, float)) and num_classes > 0):
        raise ConfigError(f"training.label_dropout={p} needs a class-conditional model (model.num_classes > 0), got "
                          f"model.num_classes={num_classes!r}")


def _check_ema_and_augment(cfg: Config) -> None:
    """One EMA rule (``training.ema_halflife_kimg`` or ``model.ema_rate``, never both; ``training.ema_rampup_ratio``
    changed only with the half-life), and ``training.augment_p`` > 0 only on images with a network built for EDM's
    augmentation labels (``model.augment_dim`` equal to the pipeline's, :class:`scoresde.data.AugmentPipe`)."""
    t, rate = cfg.training, cfg.model.get("ema_rate")
    if t.ema_halflife_kimg is not None and rate is not None:
        raise ConfigError(f"training.ema_halflife_kimg={t.ema_halflife_kimg} and model.ema_rate={rate} both choose the "
                          "EMA; keep one (model.ema_rate=none for EDM's half-life)")
    if t.ema_halflife_kimg is None and t.ema_rampup_ratio != 0.05:
        raise ConfigError(f"training.ema_rampup_ratio={t.ema_rampup_ratio} applies to training.ema_halflife_kimg, "
                          "which is not set (model.ema_rate's decay has no ramp-up)")
    if not t.augment_p:
        return
    if cfg.data.dataset in TOY_2D:
        raise ConfigError(f"training.augment_p={t.augment_p} augments images; data.dataset {cfg.data.dataset!r} is "
                          "2-D points")
    dim, want = cfg.model.get("augment_dim", 0), AugmentPipe(p=t.augment_p).augment_dim
    if dim != want:
        raise ConfigError(f"training.augment_p={t.augment_p} needs a network built for its augmentation labels: "
                          f"model.augment_dim={want}, got model.augment_dim={dim!r}")


def _check_numbers(cfg: Config) -> None:
    """Every numeric field of every section (and ``seed``) within its declared bounds (:func:`_num`; a field without
    them: finite, an integer within int64), each refusal naming the key and what is allowed."""
    for name, section in [*((name, getattr(cfg, name)) for name in SECTIONS), ("", cfg)]:
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                check_number(f"{name}.{f.name}" if name else f.name, value, f.metadata.get("bounds", Bounds()),
                             error=ConfigError)


def _check_batch_sizes(cfg: Config) -> None:
    """A training micro-batch (``batch_size / grad_accum`` examples) holds at most :data:`MAX_BATCH_ELEMENTS` entries
    (an example: 2 entries for the 2-D toys, C·H·W for images). ``eval.batch_size`` is not limited: the original
    1024x1024 configs evaluate 1024 images per batch."""
    d, t = cfg.data, cfg.training
    toy = d.dataset in TOY_2D
    example = 2 if toy else d.num_channels * d.image_size**2
    shape = "" if toy else f" with data.num_channels={d.num_channels} and data.image_size={d.image_size}"
    batch = -(-t.batch_size // t.grad_accum)
    if batch * example > MAX_BATCH_ELEMENTS:
        per = f" and training.grad_accum={t.grad_accum}" if t.grad_accum > 1 else ""
        raise ConfigError(f"training.batch_size={t.batch_size}{shape}{per} gives micro-batches of {batch} x {example} "
                          f"= {batch * example:.3g} entries; the limit is 2**31 entries (8 GiB in float32, "
                          "scoresde.config.schema.MAX_BATCH_ELEMENTS): use a smaller batch or a larger "
                          "training.grad_accum")


def _integer_hint(hint: Any) -> bool:
    """Whether a constructor annotation takes integers: ``int``, ``int | None``, ``tuple[int, ...]``."""
    if hint is int:
        return True
    args = typing.get_args(hint)
    return typing.get_origin(hint) in (typing.Union, types.UnionType, tuple, Sequence) and any(map(_integer_hint, args))


def _check_model_numbers(model: dict[str, Any]) -> None:
    """The numbers of the ``model`` section (read by the network builder and the SDE, which check their meaning):
    a float finite and within float32 (:data:`FLOAT32_MAX`), an integer (or a number where the network's constructor
    takes an integer: ``model.hidden=1e8``) within +-:data:`MAX_MODEL_INTEGER`; lists item by item."""
    builder = NETWORKS.get(model.get("name"))  # a bound from_config: its class's constructor annotations
    net = getattr(builder, "__self__", None)
    hints = typing.get_type_hints(net.__init__) if isinstance(net, type) else {}
    for key, value in model.items():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            integer = isinstance(item, int) or (_integer_hint(hints.get(key)) and float(item).is_integer())
            item = int(item) if integer and math.isfinite(item) else item
            limit = MAX_MODEL_INTEGER if integer else FLOAT32_MAX
            check_number(f"model.{key}", item, Bounds(low=-limit, high=limit), error=ConfigError)


def validate(cfg: Config) -> Config:
    """Check the values that the types alone do not (choices, ranges: each numeric field's declared bounds, the batch
    and model sizes); return ``cfg``."""
    t, s, d, o = cfg.training, cfg.sampling, cfg.data, cfg.optim
    _check_numbers(cfg)
    _check_batch_sizes(cfg)
    _check_model_numbers(cfg.model)
    check_choice("training.sde", t.sde.lower(), SDES, error=ConfigError)
    t.sde = t.sde.lower()
    check_choice("training.amp", t.amp, AMP_MODES, error=ConfigError)
    check_choice("training.nonfinite", t.nonfinite, NONFINITE_POLICIES, error=ConfigError)
    check_choice("training.snapshot_sampler", t.snapshot_sampler, (*SAMPLING_METHODS, "sampling"), error=ConfigError)
    check_choice("training.fp_mode", t.fp_mode, FP_MODES, error=ConfigError)
    check_choice("training.fp_weighting", t.fp_weighting, FP_WEIGHTINGS, error=ConfigError)
    check_recipe(t.objective, t.loss_weighting, t.time_distribution, t.p_mean, t.p_std, t.min_snr_gamma,
                 error=ConfigError)
    _check_classes(cfg)
    _check_ema_and_augment(cfg)
    check_choice("sampling.method", s.method, SAMPLING_METHODS, error=ConfigError)
    check_choice("sampling.predictor", s.predictor, tuple(PREDICTORS), error=ConfigError)  # before a run is written
    check_choice("sampling.corrector", s.corrector, tuple(CORRECTORS), error=ConfigError)
    _check_sampler_fields(s)
    if s.grid is not None:
        check_choice("sampling.grid", s.grid, tuple(GRIDS), error=ConfigError)
    if s.times is not None and not (len(s.times) >= 2 and s.times[-1] > 0
                                    and all(s.times[i + 1] < s.times[i] for i in range(len(s.times) - 1))):
        raise ConfigError(f"sampling.times must be at least 2 strictly decreasing positive times, got {s.times}")
    check_choice("optim.optimizer", o.optimizer, ("Adam",), error=ConfigError)
    if d.channels is not None and d.channels != d.num_channels:
        raise ConfigError(f"data.channels ({d.channels}) must equal data.num_channels ({d.num_channels})")
    if "name" not in cfg.model:
        raise ConfigError("config section 'model' needs a 'name' (the network architecture)")
    return cfg


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from nested dicts in the original layout (Score SDE's, and FP-Diffusion's
    ``training`` keys: :data:`FP_DIFFUSION_KEYS`)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(values).__name__}")
    kwargs: dict[str, Any] = {}
    valid = [*SECTIONS, "model", "seed"]
    for key, value in values.items():
        if key in IGNORED_KEYS:
            continue
        if key in SECTIONS:
            if key == "training":
                value = _fp_diffusion_training(value)
            kwargs[key] = section_from_dict(key, SECTIONS[key], value)
        elif key == "model":
            kwargs[key] = _check_type("model", value, dict)
        elif key == "seed":
            kwargs[key] = _check_type("seed", value, int)
        else:
            raise ConfigError(f"unknown config section {key}{_closest(key, valid)}")
    return validate(Config(**kwargs))


def _parse_value(text: str, hint: Any = None) -> Any:
    """The value of an override ``key=text`` for a field annotated ``hint`` (``None``: untyped, e.g. ``model``
    keys). A field that may be ``None`` maps ``none``/``null`` to ``None``; a ``str`` field keeps its text (so
    ``sampling.corrector=none`` and ``training.amp=none`` are the string ``'none'``, and ``data.root=123`` a path);
    anything else is JSON when it parses, ``true``/``false`` in any case, else the text (the type check names it)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = typing.get_args(hint) if union else (hint,)
    lowered = text.strip().lower()
    if lowered in ("none", "null") and (hint is None or type(None) in kinds):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
        if lowered in ("true", "false"):
            value = lowered == "true"
    if str in kinds and not isinstance(value, str):
        return text
    return value


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str], *,
                    sections: Mapping[str, type] | None = None) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a nested dict (values parsed by the field's type, :func:`_parse_value`).

    Keys must exist already (in the section's schema, or in ``model`` for architecture keys; ``model.num_classes``,
    ``model.null_label`` and ``model.augment_dim`` may always be set); an unknown key is an error listing the closest
    valid ones.
    ``sections`` replaces the run config's sections (and its ``model`` and ``seed``) by other dataclass sections, e.g.
    ``{"classifier": ClassifierConfig}`` for ``scoresde train-classifier``'s ``classifier.KEY=VALUE``.
    """
    run_config = sections is None
    sections = SECTIONS if sections is None else sections
    out = json.loads(json.dumps(values))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        path, text = item.split("=", 1)
        parts = path.strip().split(".")
        if run_config and len(parts) == 1 and parts[0] == "seed":
            out["seed"] = _parse_value(text, int)
            continue
        if len(parts) != 2:
            raise ConfigError(f"override key {path!r} must be section.key (e.g. training.batch_size) or seed"
                              if run_config else f"override {item!r} must look like "
                              f"{' or '.join(f'{name}.KEY=VALUE' for name in sections)}")
        section, key = parts
        hints: dict[str, Any] = {}
        if run_config and section == "model":  # the architecture's keys and the class options of conditional networks
            valid = list(dict.fromkeys([*out.get("model", {}), *CLASS_MODEL_KEYS, *RUNTIME_MODEL_KEYS,
                                        *AUGMENT_MODEL_KEYS, *PRECONDITIONING_MODEL_KEYS,
                                        *(key for cls in CONFIG_SDES.values() for key in cls.config_keys)]))
        elif section in sections:
            valid = [f.name for f in dataclasses.fields(sections[section])]
            hints = typing.get_type_hints(sections[section])
        else:
            known = [*SECTIONS, "model", "seed"] if run_config else list(sections)
            raise ConfigError(f"unknown config section {section}{_closest(section, known)}")
        if key not in valid:
            raise ConfigError(f"unknown config key {section}.{key}{_closest(key, valid)}")
        out.setdefault(section, {})[key] = _parse_value(text, hints.get(key))  # parsed by the field's type
    return out


def load_config(source: ConfigLike, overrides: Sequence[str] = ()) -> Config:
    """A validated :class:`Config` from any config source (a preset name, a ``.json`` file, an original ``.py``
    config, a dict or a :class:`Config`: :func:`~scoresde.config.resolve_config`) with ``overrides`` applied."""
    return config_from_dict(apply_overrides(resolve_config(source), overrides))
