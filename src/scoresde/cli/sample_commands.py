"""``scoresde sample``: draw samples from a run's checkpoint, with the class-conditional options ``--class``,
``--guidance cfg|classifier``, ``--scale`` and ``--classifier`` (a thin layer over
:func:`~scoresde.guidance.classifier_free` and :func:`~scoresde.guidance.classifier`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checkpoint.atomic import atomic_write
from ..data import inverse_data_scaler
from ..data.image_grid import save_image_grid
from ..guidance import classifier, classifier_free
from ..sampling import SAMPLERS, sample
from ..training.classifier import CLASSIFIER_KIND, RUN_CHECKPOINT, RUN_SETTINGS, load_classifier
from ..training.plots import scatter_panels
from .batch_size import autotune_batch_size, batch_size_arg
from .command_table import COMMAND_HELP
from .common import (
    add_common,
    add_sampler,
    add_step,
    check_out,
    class_labels,
    load_run_model,
    num_classes,
    positive_int,
    resolve_device,
    resolve_sampler,
    saved_config,
    with_precision,
)
from .grid_commands import add_grid_option, apply_grid

#: ``--guidance`` values of ``scoresde sample``: classifier-free (a class-conditional run) or classifier guidance
GUIDANCE = ("cfg", "classifier")


def add_sample_command(sub: argparse._SubParsersAction) -> None:
    """Register ``sample`` on the sub-parsers ``sub`` of ``scoresde``."""
    smp = sub.add_parser("sample", help=COMMAND_HELP["sample"],
                         description="Sample a run's checkpoint (EMA weights) with its sampling config.")
    smp.add_argument("--workdir", required=True)
    add_step(smp)
    smp.add_argument("--num", type=positive_int, default=64, help="number of samples (default: %(default)s)")
    smp.add_argument("--batch-size", type=batch_size_arg, default=256,
                     help="samples per batch, or 'auto': the largest that fits in half the free memory (default: "
                          "%(default)s); the samples depend on it (one generator per batch)")
    smp.add_argument("--out", default=None,
                     help="output .png (grid / scatter) or .npz: 'samples' holds uint8 images channels last (N, H, W, "
                          "C), as inpaint/encode read them, or points (N, 2)")
    add_sampler(smp)
    smp.add_argument("--nfe", type=positive_int, default=None, metavar="N",
                     help="a budget of network calls instead of --steps: a fixed-step sampler spends at most N "
                          "(dpm_solver singlestep splits it into orders, DPM-Solver-fast)")
    add_grid_option(smp)  # --grid NAME|fitted
    smp.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    smp.add_argument("--no-ema", action="store_true", help="use the online weights instead of the EMA")
    smp.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32",
                     help="network arithmetic: float32, bf16/fp16 autocast (refused where the device lacks it), or "
                          "auto = bf16 where native, else float32 (default: %(default)s)")
    add_common(smp)
    add_class_options(smp)  # --class, --guidance, --scale, --classifier, --rescale, --threshold, --interval
    smp.set_defaults(func=cmd_sample)


def add_class_options(p: argparse.ArgumentParser) -> None:
    """Add ``--class``, ``--guidance``, ``--scale`` and ``--classifier`` to a sampling command's parser."""
    g = p.add_argument_group("class-conditional sampling")
    g.add_argument("--class", dest="class_spec", default=None, metavar="LABELS",
                   help="requested class(es): one label (3), a comma list (0,2,7) or 'all'; a list splits the samples "
                        "into equal consecutive blocks, one per label, so --num K*K --class all is one grid row per "
                        "class. Needs a class-conditional run or --guidance classifier")
    g.add_argument("--guidance", choices=GUIDANCE, default=None,
                   help="cfg: classifier-free guidance of a class-conditional run (Ho & Salimans); classifier: the "
                        "gradient of a noise-conditional classifier (--classifier) added to the score. Without it a "
                        "conditional run samples its plain conditional model (= cfg with --scale 0)")
    g.add_argument("--scale", type=float, default=None, metavar="W",
                   help="guidance strength: cfg's w (0 = plain conditional model; diffusers' guidance_scale is 1 + w) "
                        "or the classifier's gradient weight (1 = exact Bayes rule) (default: 1)")
    g.add_argument("--classifier", default=None, metavar="DIR",
                   help="output folder of `scoresde train-classifier` (same SDE as the run) for --guidance classifier")
    g.add_argument("--rescale", type=float, default=None, metavar="PHI",
                   help="cfg only: CFG rescale phi in [0, 1] (Lin et al. 2024; 0.7 recommended there), pulls the "
                        "guided data prediction's std back toward the conditional one's (default: 0, plain CFG)")
    g.add_argument("--threshold", type=float, default=None, metavar="P",
                   help="dynamic thresholding of the data prediction at percentile P in (0, 100] (Saharia et al. "
                        "2022 use 99.5); images in [-1, 1] (default: none)")
    g.add_argument("--interval", default=None, metavar="LO,HI",
                   help="guide only where the noise level sigma = sigma_t/alpha_t is in (LO, HI] (Kynkaanniemi et al. "
                        "2024), the plain conditional model elsewhere (default: everywhere)")


def conditioned_model(args: argparse.Namespace, model: Any, num: int, device: str | torch.device,
                      data_shape: tuple[int, ...] | None = None) -> tuple[Any, Tensor | None]:
    """``(model to sample, labels (num,) or None)`` for the class options of ``args`` (:func:`add_class_options`):
    the plain model without ``--class``; the conditional model, its :func:`~scoresde.guidance.classifier_free`
    wrapper (``--guidance cfg``) or its :func:`~scoresde.guidance.classifier` wrapper with the loaded classifier
    (``--guidance classifier``). Options that would be ignored, guidance on an unconditional run, labels outside the
    classes and a classifier of another SDE or of another ``data_shape`` (the run's ``(C, H, W)``) are one
    ``ValueError`` line."""
    spec, guidance, scale, path = args.class_spec, args.guidance, args.scale, args.classifier
    options = {"--scale": scale, "--threshold": args.threshold, "--interval": args.interval}
    if spec is None:
        for name, value in (("--guidance", guidance), ("--classifier", path), ("--rescale", args.rescale),
                            *options.items()):
            if value is not None:
                raise ValueError(f"{name} needs --class (the requested class, e.g. --class 3 or --class all)")
        return model, None
    for name, value in options.items():
        if value is not None and guidance is None:
            raise ValueError(f"{name} needs --guidance cfg or --guidance classifier")
    if args.rescale is not None and guidance != "cfg":
        raise ValueError("--rescale is classifier-free guidance's option: it needs --guidance cfg")
    extra = {"threshold": args.threshold, "interval": _interval(args.interval)}
    if path is not None and guidance != "classifier":
        raise ValueError("--classifier is used by --guidance classifier only; add it or drop --classifier")
    n_classes = num_classes(model)
    scale = 1.0 if scale is None else scale
    if guidance == "classifier":
        if path is None:
            raise ValueError("--guidance classifier needs --classifier DIR (a `scoresde train-classifier` folder)")
        clf = _load_guidance_classifier(path, device)
        if n_classes and clf.num_classes != n_classes:
            raise ValueError(f"the classifier {path} has {clf.num_classes} classes, the conditional model "
                             f"{n_classes}")
        _check_classifier_shape(path, data_shape)
        return classifier(model, clf, scale, **extra), class_labels(spec, num, clf.num_classes)
    if not n_classes:
        raise ValueError("this run's model is unconditional (model.num_classes = 0): --class needs a class-conditional "
                         "run (e.g. digits/vp_ddpmpp_conditional) or --guidance classifier --classifier DIR")
    labels = class_labels(spec, num, n_classes)
    if guidance != "cfg":
        return model, labels
    return classifier_free(model, scale, rescale=args.rescale or 0.0, **extra), labels


def _interval(text: str | None) -> tuple[float, float] | None:
    """``--interval LO,HI`` as two floats (their range is checked by :func:`~scoresde.guidance.classifier_free`)."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"--interval must be two noise levels LO,HI (e.g. 0.3,5), got {text!r}") from None


def _classifier_meta(path: str) -> dict[str, Any]:
    """The checkpoint config of ``--classifier path`` (a ``train-classifier`` folder or its ``checkpoint/``), or one
    error line for what a CLI user may give instead: a path that does not exist, a score model's run folder or
    checkpoint (the library's own message would suggest a Python call)."""
    given = Path(path)
    folder = given / RUN_CHECKPOINT if (given / RUN_SETTINGS).is_file() else given
    wanted = "--guidance classifier needs the --workdir of `scoresde train-classifier` (same SDE as the run)"
    if not given.exists():
        raise FileNotFoundError(f"--classifier {path} does not exist; {wanted}")
    if (given / "config.json").is_file():
        raise ValueError(f"--classifier {path} is a score model's run folder, not a classifier; {wanted}, or sample "
                         "a class-conditional run with --guidance cfg")
    meta = folder / "checkpoint.json"
    config = json.loads(meta.read_text()).get("config", {}) if meta.is_file() else {}
    if config.get("kind") != CLASSIFIER_KIND:
        what = "a score model's checkpoint" if meta.is_file() else "not a classifier folder"
        raise ValueError(f"--classifier {path} is {what}; {wanted}")
    return config


def _load_guidance_classifier(path: str, device: str | torch.device) -> Any:
    """The classifier of ``--classifier path`` on ``device``, checked by :func:`_classifier_meta` first."""
    _classifier_meta(path)
    return load_classifier(path, map_location=device)


def _check_classifier_shape(path: str, data_shape: tuple[int, ...] | None) -> None:
    """Refuse a classifier trained on data of another shape than the run's (``data_shape`` of its checkpoint's
    config; a ``train-classifier`` folder keeps it in ``checkpoint/checkpoint.json``)."""
    meta = _classifier_meta(path)
    shape = meta.get("data_shape")
    if data_shape is not None and shape is not None and tuple(shape) != tuple(data_shape):
        raise ValueError(f"the classifier {path} was trained on data of shape {tuple(shape)}, the run's data have "
                         f"{tuple(data_shape)}")


def cmd_sample(args: argparse.Namespace) -> int:
    """``scoresde sample``: draw ``--num`` samples from a checkpoint and save them as PNG and/or NPZ."""
    workdir = Path(args.workdir)
    cfg, name, options = resolve_sampler(saved_config(workdir), args, "sample")
    if args.nfe is not None:  # the budget replaces the step count (sampler_call's steps); ode refuses it in sample()
        if args.steps is not None:
            raise ValueError(f"pass --steps or --nfe, not both (got --steps {args.steps} --nfe {args.nfe})")
        options.pop("steps", None)
        options["nfe"] = args.nfe
    options = apply_grid(args.grid, workdir, name, args.nfe, options)  # --grid fitted: the run's fitted times
    device = resolve_device(args.device)
    model, step, path = load_run_model(workdir, args.checkpoint, not args.no_ema, device)
    out = check_out(args.out or workdir / "samples" / f"sample_step_{step}.png", (".png", ".npz"))  # before the work
    model = with_precision(model, args.precision, device)
    toy = cfg.model["name"] == "toy_mlp"
    shape_one = (2,) if toy else (cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size)
    bar = {"progress": not args.quiet} if "progress" in SAMPLERS[name].options() else {}
    model, labels = conditioned_model(args, model, args.num, device, None if toy else shape_one)
    if args.batch_size == "auto":  # the samples depend on the batch size (one generator per batch)
        cond_fn = None if labels is None else (lambda n: {"class_labels": labels[:1].repeat(n).to(device)})
        args.batch_size = autotune_batch_size(model, shape_one, device, args.num, cond_fn=cond_fn)
        if not args.quiet:
            print(f"--batch-size auto: {args.batch_size}")
    chunks, nfe = [], 0
    for start in range(0, args.num, args.batch_size):
        n = min(args.batch_size, args.num - start)
        cond = None if labels is None else {"class_labels": labels[start:start + n].to(device)}
        g = torch.Generator(device).manual_seed(args.seed * 1_000_003 + start)
        x, info = sample(model, (n, *shape_one), name, generator=g, cond=cond, device=device, return_info=True,
                         **bar, **options)
        chunks.append(x.cpu())
        nfe = info.nfe
    x = torch.cat(chunks)
    if not toy:
        x = inverse_data_scaler(x, cfg.data.centered).clamp(0, 1)
    if out.suffix == ".npz":
        arr = x.numpy() if toy else (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        atomic_write(out, lambda tmp: np.savez(tmp, samples=arr, step=step, sampler=name, nfe=nfe,
                                               options=json.dumps(options),
                                               **({} if labels is None else {"labels": labels.numpy()})))
    elif toy:
        atomic_write(out, lambda tmp: scatter_panels([(out.stem, x)], tmp))
    else:
        atomic_write(out, lambda tmp: save_image_grid(x, tmp))
    print(f"wrote {args.num} samples of {path} (step {step}, sampler {name}, NFE {nfe} per batch) to {out}")
    return 0
