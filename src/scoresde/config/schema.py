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
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..losses.fp_core import MODES as FP_MODES
from ..losses.fp_core import WEIGHTINGS as FP_WEIGHTINGS
from ..numerics.checks import HintMismatch, check_choice, convert_to_hint
from ..numerics.grids import GRIDS
from ..sampling.registry import SAMPLERS
from ..sampling.steps import CORRECTORS, PREDICTORS
from ..sdes import CONFIG_SDES
from .factory import CLASS_MODEL_KEYS, RUNTIME_MODEL_KEYS
from .resolve import ConfigLike, resolve_config

__all__ = ["AMP_MODES", "FP_DIFFUSION_KEYS", "IGNORED_KEYS", "NONFINITE_POLICIES", "SAMPLING_METHODS",
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

AMP_MODES = ("none", "bf16", "fp16")
NONFINITE_POLICIES = ("stop", "skip")
SAMPLING_METHODS = tuple(SAMPLERS)  # the registry's names (scoresde.sampling.registry)


@dataclass
class TrainingConfig:
    """``training`` section. The first ten fields are the original ones; the rest are scoresde's options."""

    sde: str = "vesde"                       # 'vesde' | 'vpsde' | 'subvpsde' | 'psld' | 'cld'
    continuous: bool = True                  # continuous-time DSM (eq. 7) vs the discrete SMLD/DDPM losses
    reduce_mean: bool = False                # mean over C·H·W instead of 0.5·sum
    likelihood_weighting: bool = False       # lambda(t) = g(t)^2
    batch_size: int = 128                    # global batch: all ranks and all accumulation steps together
    n_iters: int = 1300001                   # number of optimizer steps
    snapshot_freq: int = 50000               # keep a numbered checkpoint (and a sample grid) every this many steps
    snapshot_freq_for_preemption: int = 10000  # overwrite checkpoints/latest every this many steps
    log_freq: int = 50                       # training-loss logging period
    eval_freq: int = 100                     # held-out loss (EMA weights) period; 0 disables it
    snapshot_sampling: bool = True           # sample a grid at each snapshot
    eps: float = 1e-5                        # smallest training time of the continuous loss
    grad_accum: int = 1                      # micro-batches per optimizer step (per rank)
    amp: str = "none"                        # 'none' | 'bf16' | 'fp16' autocast (fp16 uses a GradScaler)
    compile: bool = False                    # torch.compile the network
    nonfinite: str = "stop"                  # on a NaN/inf loss: 'stop' (error naming the step) or 'skip' the step
    max_skips: int = 10                      # nonfinite='skip': stop after this many consecutive skipped steps
    num_snapshot_samples: int = 64           # images in each snapshot grid
    snapshot_sampler: str = "dpm_solver"     # sampler of the snapshot grids (a scoresde.sampling.SAMPLERS name, run
                                             # with its defaults), or 'sampling': the run's sampling section (slow:
                                             # pc at 1000 steps took 105 s for 64 images of 32x32 on a CPU)
    snapshot_steps: int = 20                 # steps of a fixed-step snapshot_sampler (dpm_solver 20: 20 NFE)
    num_workers: int = 0                     # DataLoader workers per rank
    fp_alpha: float = 0.0                    # FP-Diffusion (Lai et al. 2023) weight of the vector score-FPE residual
    fp_beta: float = 0.0                     # ... and of the scalar term; both 0 (default) disable the regulariser
    fp_mode: str = "both"                    # 'both' | 'vector' | 'scalar' (the original's scalar_fp both/False/True)
    fp_weighting: str = "ll"                 # vector-term time weight: 'constant' | 'convention' (g) | 'll' (g^2)
    fp_m: float = 2.0                        # power of the per-example residual norm
    fp_min_time: float = 0.0                 # phase space only: the regulariser skips t < fp_min_time (0.01 advised)
    label_dropout: float = 0.0               # class-conditional models: probability that a training label becomes the
                                             # null label -1 (classifier-free guidance training, Ho & Salimans 2022)


#: the ``sampling`` fields of Score SDE's configs, with its defaults (the registry adds every other sampler option)
_SAMPLING_BASE: tuple[tuple[str, Any, Any], ...] = (
    ("method", str, "pc"),                   # a name of scoresde.sampling.SAMPLERS
    ("predictor", str, "reverse_diffusion"),
    ("corrector", str, "langevin"),
    ("snr", float, 0.16),
    ("n_steps_each", int, 1),
    ("noise_removal", bool, True),           # the samplers' `denoise` option
    ("probability_flow", bool, False),
    ("eps", float, 1e-3),                    # last time of the sampling grid
    ("rtol", float, 1e-5),                   # ODE tolerances
    ("atol", float, 1e-5),
    ("ode_method", str, "dopri5"),           # the ODE sampler's `method`
    ("grid", str | None, None),              # time grid (scoresde.numerics.grids.GRIDS); None: the sampler's default
    ("steps", int | None, None),             # steps of the fixed-step samplers; None: the SDE's N
)
#: sampler options that are not config values (per-call inputs)
_NOT_CONFIG = frozenset({"progress", "times"})


def _sampling_fields() -> list[tuple[str, Any, Any]]:
    """Score SDE's fields, then every other option of every registered sampler under its config name."""
    fields = [(name, typ, dataclasses.field(default=default)) for name, typ, default in _SAMPLING_BASE]
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
    return self.method, {k: v for k, v in values.items() if v is not None or defaults[k] is None}


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
    batch_size: int = 1024
    enable_sampling: bool = False
    num_samples: int = 50000
    enable_loss: bool = True
    enable_bpd: bool = False
    bpd_dataset: str = "test"


@dataclass
class DataConfig:
    """``data`` section: the original keys plus where the files are."""

    dataset: str = "CIFAR10"                 # CIFAR10 | CELEBA | CelebAHQ | FFHQ | LSUN | digits | folder | 2-D toys
    image_size: int = 32
    num_channels: int = 3
    random_flip: bool = True
    centered: bool = False                   # model range [-1, 1] instead of [0, 1]
    uniform_dequantization: bool = False
    channels: int | None = None              # read by the original NCSNv2 configs; must equal num_channels if set
    category: str | None = None              # LSUN category (original key)
    root: str | None = None                  # CIFAR-10 download folder, or the image folder / zip
    download: bool = False                   # fetch CIFAR-10 if it is missing
    eval_split: str = "test"                 # held-out split for the evaluation loss


@dataclass
class OptimConfig:
    """``optim`` section, with the original semantics (linear warm-up of the learning rate, global-norm clip)."""

    optimizer: str = "Adam"
    lr: float = 2e-4
    beta1: float = 0.9
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup: int = 5000                       # steps of linear learning-rate warm-up; 0 disables it
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
    seed: int = 42

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
    """``training.label_dropout`` in ``[0, 1)``, and nonzero only for a class-conditional model
    (``model.num_classes`` > 0; the network builder checks ``num_classes`` and ``null_label`` themselves)."""
    p = cfg.training.label_dropout
    if not 0 <= p < 1:
        raise ConfigError(f"training.label_dropout must lie in [0, 1), got {p}")
    num_classes = cfg.model.get("num_classes", 0)
    if p and not (isinstance(num_classes, (int, float)) and num_classes > 0):
        raise ConfigError(f"training.label_dropout={p} needs a class-conditional model (model.num_classes > 0), got "
                          f"model.num_classes={num_classes!r}")


def validate(cfg: Config) -> Config:
    """Check the values that the types alone do not (choices, ranges); return ``cfg``."""
    t, s, d, o = cfg.training, cfg.sampling, cfg.data, cfg.optim
    check_choice("training.sde", t.sde.lower(), SDES, error=ConfigError)
    t.sde = t.sde.lower()
    check_choice("training.amp", t.amp, AMP_MODES, error=ConfigError)
    check_choice("training.nonfinite", t.nonfinite, NONFINITE_POLICIES, error=ConfigError)
    check_choice("training.snapshot_sampler", t.snapshot_sampler, (*SAMPLING_METHODS, "sampling"), error=ConfigError)
    if t.snapshot_steps < 1:
        raise ConfigError(f"training.snapshot_steps must be a positive integer, got {t.snapshot_steps}")
    check_choice("training.fp_mode", t.fp_mode, FP_MODES, error=ConfigError)
    check_choice("training.fp_weighting", t.fp_weighting, FP_WEIGHTINGS, error=ConfigError)
    if not 0 <= t.fp_min_time < 1:
        raise ConfigError(f"training.fp_min_time must lie in [0, 1), got {t.fp_min_time}")
    if t.fp_alpha < 0 or t.fp_beta < 0 or not t.fp_m > 0:
        raise ConfigError(f"training.fp_alpha ({t.fp_alpha}) and training.fp_beta ({t.fp_beta}) must be >= 0 "
                          f"and training.fp_m ({t.fp_m}) positive")
    _check_classes(cfg)
    check_choice("sampling.method", s.method, SAMPLING_METHODS, error=ConfigError)
    check_choice("sampling.predictor", s.predictor, tuple(PREDICTORS), error=ConfigError)  # before a run is written
    check_choice("sampling.corrector", s.corrector, tuple(CORRECTORS), error=ConfigError)
    _check_sampler_fields(s)
    if s.grid is not None:
        check_choice("sampling.grid", s.grid, tuple(GRIDS), error=ConfigError)
    if s.steps is not None and s.steps < 1:
        raise ConfigError(f"config key sampling.steps must be a positive integer or null, got {s.steps}")
    check_choice("optim.optimizer", o.optimizer, ("Adam",), error=ConfigError)
    for path, value in (("training.batch_size", t.batch_size), ("training.n_iters", t.n_iters),
                        ("training.grad_accum", t.grad_accum), ("training.snapshot_freq", t.snapshot_freq),
                        ("training.snapshot_freq_for_preemption", t.snapshot_freq_for_preemption),
                        ("training.log_freq", t.log_freq), ("training.max_skips", t.max_skips),
                        ("data.image_size", d.image_size),
                        ("data.num_channels", d.num_channels), ("training.num_snapshot_samples",
                                                                t.num_snapshot_samples)):
        if value < 1:
            raise ConfigError(f"config key {path} must be a positive integer, got {value}")
    if t.eval_freq < 0 or o.warmup < 0 or t.num_workers < 0:
        raise ConfigError("training.eval_freq, optim.warmup and training.num_workers must be >= 0")
    if not (0 < t.eps < 1) or not (0 < s.eps < 1):
        raise ConfigError(f"training.eps ({t.eps}) and sampling.eps ({s.eps}) must lie in (0, 1)")
    if not o.lr > 0:
        raise ConfigError(f"config key optim.lr must be positive, got {o.lr}")
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

    Keys must exist already (in the section's schema, or in ``model`` for architecture keys; ``model.num_classes``
    and ``model.null_label`` may always be set); an unknown key is an error listing the closest valid ones.
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
            valid = list(dict.fromkeys([*out.get("model", {}), *CLASS_MODEL_KEYS, *RUNTIME_MODEL_KEYS]))
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
