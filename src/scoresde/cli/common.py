"""What the sub-commands of ``scoresde`` share: their common options (``--step``, ``--sampler``/``--steps``/``--set``,
``--device``/``--quiet``/``--threads``, the run options of the image commands), and reading a run folder (its saved
config, a checkpoint's path and model, the device, the sampler with its overrides, the class labels of ``--class``,
the suffix of ``--out``).

Every command module imports its shared helpers from here; no command module imports another.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..checkpoint.run import load_run
from ..config import Config, apply_overrides, config_from_dict
from ..models.score_model import autocast_dtype
from ..sampling import SAMPLERS


# ---- options ------------------------------------------------------------------------------------------------------
def positive_int(value: str) -> int:
    """``type=`` of an integer option that must be at least 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def add_step(p: argparse.ArgumentParser) -> None:
    """``--step N``: a numbered checkpoint of the run folder (sets ``args.checkpoint``)."""
    p.add_argument("--step", dest="checkpoint", type=int, default=None, metavar="STEP",
                   help="step of a numbered checkpoint (default: newest)")


def add_sampler(p: argparse.ArgumentParser) -> None:
    """``--sampler`` (every registered sampler), ``--steps`` and ``--set sampling.KEY=VALUE``."""
    fixed = [name for name, spec in SAMPLERS.items() if spec.fixed_steps]
    p.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                   help="sampler (default: the run's sampling.method); its other options: --set sampling.KEY=VALUE")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help=f"number of sampling steps of a fixed-step sampler ({', '.join(fixed)}; default: the "
                        "model's number of noise scales)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a sampling option, e.g. --set sampling.corrector=none (repeatable; only sampling.*: "
                        "the model and its SDE are the checkpoint's)")


def device_arg(text: str) -> str:
    """``--device``: a torch device this machine has (``cpu``, ``cuda``, ``cuda:N``, ``mps``); anything else is one
    argparse error line naming the value and what is allowed, never a traceback at the first tensor."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"device {text!r}: this machine has no CUDA device (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA "
                                             "device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"device {text!r}: MPS is not available on this machine (use --device cpu)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}; use cpu, cuda, cuda:N or mps")
    return text


def add_common(p: argparse.ArgumentParser) -> None:
    """``--device``, ``--quiet`` and ``--threads`` (applied by :func:`scoresde.cli.main`)."""
    p.add_argument("--device", type=device_arg, default=None,
                   help="cpu, cuda, cuda:1, ... (default: this rank's GPU if any, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's). On cores shared with other jobs use 1: two processes "
                        "of 2 threads on 2 cores ran a small model's training step 80x slower than 1 thread each")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--workdir``, ``--step``, ``--no-ema``, ``--seed`` and ``--class`` of the image commands (inpaint, colorize,
    encode, interpolate)."""
    p.add_argument("--workdir", required=True, help="run folder (its config and checkpoints)")
    add_step(p)
    p.add_argument("--no-ema", action="store_true", help="use the online weights instead of the EMA")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--class", dest="class_spec", default=None, metavar="LABELS",
                   help="condition a class-conditional run on these class(es) (a label, a comma list or 'all'); "
                        "default: its unconditional (null-label) model")


def check_out(path: str | Path, suffixes: tuple[str, ...], what: str = "--out") -> Path:
    """An output path, checked before any work: its suffix must be one of ``suffixes`` and its folder writable
    (created if missing, probed with a temporary file): a read-only, missing or full location is one line naming
    the path before anything is computed, not after."""
    out = Path(path)
    if out.suffix not in suffixes:
        raise ValueError(f"{what} must end in {' or '.join(suffixes)}, got {out.name!r}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".scoresde-probe-"):
            pass
    except OSError as err:
        raise ValueError(f"cannot write {out}: {err.strerror or err}") from None
    return out


def method_options(items: list[str], steps: int | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` options of an inverse-problem method (``inpaint``, ``colorize``, ``restore``; values read as
    JSON, else as strings) and ``--steps``; an item without ``=`` is a ``ValueError``."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set num_particles=8")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    if steps is not None:
        options["steps"] = steps
    return options



# ---- the run folder -----------------------------------------------------------------------------------------------
def resolve_device(device: str | None) -> str:
    """``--device``, by default ``cuda`` where available, else ``cpu``."""
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def saved_config(workdir: Path) -> Config:
    """The config of a run folder (its ``config.json``); ``FileNotFoundError`` for a folder that is not a run."""
    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{workdir} is not a scoresde run folder (no config.json); train or import first")
    return config_from_dict(json.loads(path.read_text()))


def load_run_model(workdir: Path, step: int | None, use_ema: bool, device: str) -> tuple[Any, int, Path]:
    """``(model, its step, checkpoint path)`` of a run folder on ``device``: the checkpoint of ``--step step``, by
    default the newest valid one, skipping damaged newer ones with one warning each
    (:func:`scoresde.checkpoint.run.load_run`, the fallback of :func:`scoresde.load_checkpoint` too). Every command
    that reads a run loads it here."""
    model, path = load_run(workdir, step, use_ema=use_ema, map_location=device)
    return model, model.step, path


def with_precision(model, precision: str, device: str):
    """``model`` computing its network in ``precision`` (``ScoreModel.with_precision``); checked on ``device`` now, so
    that an unsupported choice is one error before any sampling. ``ValueError`` for a model without the option."""
    if precision == "fp32":
        return model
    if not hasattr(model, "with_precision"):
        raise ValueError(f"--precision {precision}: {type(model).__name__} models have no precision option (only "
                         "ScoreModel); use --precision fp32")
    autocast_dtype(precision, torch.device(device))  # refuses bf16/fp16 where the device lacks them
    return model.with_precision(precision)


def run_image_shape(cfg: Config) -> tuple[int, int, int]:
    """``(C, H, W)`` of a run's images; ``ValueError`` for a run of 2-D points."""
    if cfg.model.get("name") == "toy_mlp":
        raise ValueError("this run models 2-D points, not images: inpaint/colorize/encode/interpolate need an image "
                         "run (use scoresde.inpaint / scoresde.encode from Python for points)")
    return cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size


def load_image_run(args: argparse.Namespace) -> tuple[Config, Any, str]:
    """``(config, model, device)`` of ``--workdir`` / ``--step`` / ``--no-ema`` / ``--device`` for a run of images."""
    workdir = Path(args.workdir)
    cfg = saved_config(workdir)
    run_image_shape(cfg)
    device = resolve_device(args.device)
    model, _, _ = load_run_model(workdir, args.checkpoint, not args.no_ema, device)
    return cfg, model, device


# ---- the sampler of `sample` / `eval` -----------------------------------------------------------------------------
def _instead(key: str, value: str, command: str) -> str:
    """What to use instead of ``--set key=value``, which ``command`` cannot apply (it samples a trained model)."""
    section, _, name = key.partition(".")
    if key == "model.num_scales":
        return f"for the number of sampling steps use --steps {value}"
    if key == "seed":
        return f"for the seed of the samples use --seed {value}"
    if key == "training.sde":
        return "to sample another SDE, train or import a run with it"
    if section == "eval" and command == "eval":
        option = {"batch_size": "--batch-size", "num_samples": "--num-samples", "bpd_dataset": "--bpd-split",
                  "begin_ckpt": "--step", "end_ckpt": "--step"}.get(name, "--metrics")
        return f"for the eval settings use {option}"
    if section in ("model", "training", "optim", "data"):
        return "to change them, train or import another run"
    return "e.g. --set sampling.corrector=none"


def _sampling_overrides(overrides: list[str], command: str) -> list[str]:
    """The ``--set`` items of ``sample``/``eval``, which must all be ``sampling.*``: the model, its SDE and data
    come from the checkpoint, so anything else would be silently ignored. Refuse it, saying what to use instead."""
    for item in overrides:
        key, _, value = item.partition("=")
        if not key.strip().startswith("sampling."):
            raise ValueError(f"--set {item}: `scoresde {command}` takes sampling.* overrides only (the model, its "
                             f"SDE and data are the checkpoint's); {_instead(key.strip(), value, command)}")
    return list(overrides)


def resolve_sampler(cfg: Config, args: argparse.Namespace, command: str) -> tuple[Config, str, dict]:
    """``(config, sampler name, options)`` of ``sample``/``eval``: the run's ``sampling`` section with ``--set
    sampling.*`` and ``--sampler`` applied, and ``--steps`` for a fixed-step sampler."""
    sets = _sampling_overrides(args.set, command) + ([f"sampling.method={args.sampler}"] if args.sampler else [])
    if sets:
        cfg = config_from_dict(apply_overrides(cfg.to_dict(), sets))
    name, options = cfg.sampling.sampler_call()
    spec = SAMPLERS[name]
    used = spec.config_fields() | {"method"}
    for item in sets:
        key = item.split("=", 1)[0].strip().split(".", 1)[-1]
        if key not in used:  # it would be accepted and silently ignored
            raise ValueError(f"--set sampling.{key} does nothing for sampler {name!r}; its settings are: "
                             f"{', '.join(sorted(used - {'method'}))}")
    if args.steps is not None:
        if not SAMPLERS[name].fixed_steps:
            fixed = [n for n, spec in SAMPLERS.items() if spec.fixed_steps]
            raise ValueError(f"--steps needs a fixed-step sampler ({', '.join(fixed)}); {name} has no fixed number "
                             f"of steps (its options: {', '.join(SAMPLERS[name].options())})")
        options["steps"] = args.steps
    return cfg, name, options


# ---- class labels of `--class` ------------------------------------------------------------------------------------
def class_labels(spec: str, num: int, num_classes: int) -> Tensor:
    """The int64 labels ``(num,)`` of ``--class spec``: one label for all samples, or a comma list / ``all`` (every
    class in ``[0, num_classes)``) split into equal consecutive blocks (sample ``i`` gets label ``i * L // num`` of
    the ``L`` listed), so that a grid of ``L`` rows shows one label per row. Labels outside ``[0, num_classes)`` are a
    ``ValueError``."""
    text = spec.strip()
    if text == "all":
        listed = list(range(num_classes))
    else:
        try:
            listed = [int(item) for item in text.split(",")]
        except ValueError:
            raise ValueError(f"--class {spec!r}: expected a label, a comma list of labels or 'all'") from None
    bad = [y for y in listed if not 0 <= y < num_classes]
    if bad:
        raise ValueError(f"--class {spec}: label {bad[0]} is outside [0, {num_classes}) (the classes of this model)")
    index = torch.arange(num) * len(listed) // num
    return torch.tensor(listed, dtype=torch.long)[index]


def num_classes(model: Any) -> int:
    """The number of classes of a model's network (0: unconditional)."""
    n = getattr(getattr(model, "net", None), "num_classes", 0)
    return int(n or 0)


def class_cond(args: argparse.Namespace, model: Any, num: int) -> dict[str, Any] | None:
    """``cond`` of the inverse-problem and latent commands: ``--class`` on a conditional run, else ``None`` (the
    unconditional / null-label model)."""
    if args.class_spec is None:
        return None
    n = num_classes(model)
    if not n:
        raise ValueError("this run's model is unconditional (model.num_classes = 0): --class needs a "
                         "class-conditional run")
    return {"class_labels": class_labels(args.class_spec, num, n)}
