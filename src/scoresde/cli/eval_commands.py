"""The evaluation commands of ``scoresde``: ``likelihood`` (bits/dim of a data split under a checkpoint), ``eval``
(the evaluation protocol of :mod:`scoresde.evaluation` on a run folder: FID / IS / KID / bits/dim / FPE residual) and
``fid-stats`` (reference Inception statistics of a dataset)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..checkpoint.atomic import atomic_write
from ..data import load_dataset
from ..evaluation import METRICS, SAMPLE_METRICS, EvalSettings, evaluate
from ..likelihood import data_nll
from ..metrics import StatsAccumulator, save_reference_stats
from ..metrics.inception import load_inception
from ..numerics.grids import GRIDS
from ..numerics.odeint import ODE_METHODS
from ..training.data import build_dataset
from ..training.distributed import init_distributed
from .batch_size import autotune_batch_size, batch_size_arg
from .command_table import COMMAND_HELP
from .common import (
    add_common,
    add_sampler,
    add_step,
    check_out,
    load_run_model,
    positive_int,
    resolve_device,
    resolve_sampler,
    saved_config,
)


def add_likelihood_command(sub: argparse._SubParsersAction) -> None:
    """Register ``likelihood`` on the sub-parsers ``sub`` of ``scoresde``."""
    lik = sub.add_parser("likelihood", help=COMMAND_HELP["likelihood"])
    lik.add_argument("--workdir", required=True)
    add_step(lik)
    lik.add_argument("--split", default="test", choices=["train", "test"])
    lik.add_argument("--num", type=positive_int, default=256, help="examples to evaluate (default: %(default)s)")
    lik.add_argument("--batch-size", type=positive_int, default=64)
    lik.add_argument("--trace", default="hutchinson-rademacher",
                     choices=["hutchinson-rademacher", "hutchinson-gaussian", "exact"])
    lik.add_argument("--n-probes", type=positive_int, default=1,
                     help="Hutchinson probes per example (momentum draws for PSLD/CLD runs) (default: %(default)s)")
    lik.add_argument("--seed", type=int, default=0)
    lik.add_argument("--method", default="dopri5", choices=ODE_METHODS,
                     help="ODE integrator: adaptive (dopri5, scipy-*), or fixed-step with --steps: Runge-Kutta "
                          "(rk4, ...) or exponential multistep (exp4m, ...: VE/VP/sub-VP; steps + 1 evaluations) "
                          "(default: %(default)s)")
    lik.add_argument("--steps", type=positive_int, default=None, help="intervals of a fixed-step --method")
    lik.add_argument("--grid", default=None, choices=tuple(GRIDS),
                     help="time grid of a fixed-step --method (default: uniform for Runge-Kutta, logSNR for the "
                          "exponential methods)")
    lik.add_argument("--no-ema", action="store_true")
    add_common(lik)
    lik.set_defaults(func=cmd_likelihood)


def cmd_likelihood(args: argparse.Namespace) -> int:
    """``scoresde likelihood``: bits/dim (images) or nats/dim (2-D toys) of a data split under a checkpoint; for
    phase-space runs the entropy-corrected augmented bound (``--n-probes`` momentum draws per example)."""
    workdir = Path(args.workdir)
    cfg = saved_config(workdir)
    device = resolve_device(args.device)
    model, step, path = load_run_model(workdir, args.checkpoint, not args.no_ema, device)
    out = check_out(workdir / "eval" / f"likelihood_{args.split}_step_{step}.json", (".json",), "the result file")
    dataset = build_dataset(cfg.data, args.split, cfg.seed)
    num = min(args.num, len(dataset))
    values, errors = [], []
    for start in range(0, num, args.batch_size):
        items = range(start, min(num, start + args.batch_size))
        batch = torch.stack([dataset[i][0] for i in items])
        # example i draws from (seed, i), as eval --metrics bpd; phase space: the bound over momentum draws
        v, se = data_nll(model.sde, model.score, batch.to(device), centered=cfg.data.centered, trace=args.trace,
                         n_probes=args.n_probes, seed=args.seed, indices=items, method=args.method,
                         steps=args.steps, grid=args.grid)
        values.append(v.detach().cpu())
        errors.append(se.detach().cpu())
    v, se = torch.cat(values), torch.cat(errors)
    unit = "bits/dim" if dataset[0][0].dtype == torch.uint8 else "nats/dim"
    result = {"value": float(v.mean()), "unit": unit, "stderr_over_examples": float(v.std() / math.sqrt(len(v))),
              "mean_probe_stderr": float(se.nanmean()) if len(se) else float("nan"), "num": len(v),
              "split": args.split, "checkpoint": str(path), "step": step, "ema": not args.no_ema,
              "trace": args.trace, "n_probes": args.n_probes, "method": args.method, "steps": args.steps,
              "grid": args.grid}
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(result, indent=2)))
    print(f"{result['value']:.4f} {unit} ± {result['stderr_over_examples']:.4f} on {len(v)} {args.split} examples "
          f"(step {step}); wrote {out}")
    return 0


def _metric_list(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [n for n in names if n not in METRICS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {bad or value!r}; choose from {','.join(METRICS)}")
    return names


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval`` and ``fid-stats`` on the sub-parsers ``sub`` of ``scoresde``."""
    ev = sub.add_parser(
        "eval", help=COMMAND_HELP["eval"],
        description="Generate --num-samples samples in resumable rounds (sample i is seeded from (--seed, i), so it "
                    "is the same whatever the batch size or number of ranks for samplers that treat samples "
                    "independently), extract Inception features (torch-fidelity), and compare with reference "
                    "statistics from `scoresde fid-stats`. Launch with torchrun to shard rounds over ranks; an "
                    "interrupted run resumes at its first missing round. Writes DIR/eval/<tag>/metrics.json and a "
                    "copy in DIR/eval/metrics.json.")
    ev.add_argument("--workdir", required=True)
    add_step(ev)
    ev.add_argument("--metrics", type=_metric_list, default=("fid", "is", "kid"),
                    help="comma-separated subset of fid,is,kid,bpd,fpe (default: fid,is,kid); bpd of a phase-space run "
                         "(PSLD/CLD) is the entropy-corrected augmented bound with --bpd-probes momentum draws; fpe "
                         "is the mean squared score Fokker-Planck residual per dimension on perturbed bpd-split data")
    ev.add_argument("--num-samples", type=positive_int, default=50_000, help="default: %(default)s (the papers')")
    ev.add_argument("--batch-size", type=batch_size_arg, default=500,
                    help="samples per sampler call, or 'auto': the largest that fits in half the free memory (the "
                         "samples do not depend on it)")
    ev.add_argument("--round-size", type=positive_int, default=5_000, help="samples per resumable round file")
    ev.add_argument("--seed", type=int, default=0)
    add_sampler(ev)
    ev.add_argument("--ref-stats", default=None, metavar="STATS.npz", help="reference statistics (fid, kid)")
    ev.add_argument("--inception-weights", default=None, metavar="PATH",
                    help="local torch-fidelity Inception weights (.pth) for offline use (default: download)")
    ev.add_argument("--kid-subset-size", type=positive_int, default=1000)
    ev.add_argument("--kid-subsets", type=positive_int, default=100)
    ev.add_argument("--bpd-split", default="test", choices=["train", "test"])
    ev.add_argument("--bpd-num", type=positive_int, default=None, help="examples for bpd (default: the whole split)")
    ev.add_argument("--bpd-batch-size", type=positive_int, default=100)
    ev.add_argument("--bpd-probes", type=positive_int, default=1,
                    help="Hutchinson probes per example; momentum draws per example for a phase-space run")
    ev.add_argument("--fpe-num", type=positive_int, default=None,
                    help="examples of the bpd split for fpe (default: --bpd-num, else the whole split)")
    ev.add_argument("--fpe-times", type=positive_int, default=10,
                    help="fpe time grid: linspace(--fpe-eps, T, N) (default: %(default)s)")
    ev.add_argument("--fpe-eps", type=float, default=None,
                    help="first fpe time (default: 1e-3; 1e-2 for PSLD/CLD, whose finite differences are stiff below)")
    ev.add_argument("--fpe-probes", type=positive_int, default=1,
                    help="Hutchinson probes per probe set of the unbiased fpe estimate (default: %(default)s)")
    ev.add_argument("--fpe-batch-size", type=positive_int, default=100)
    ev.add_argument("--tag", default=None,
                    help="sub-folder of DIR/eval (default: step_<N>_<sampler>_seed<S>, step_<N>_<sampler>_steps<K>_"
                         "seed<S> with --steps K; step_<N>_seed<S> for bpd / fpe alone, which sample nothing)")
    ev.add_argument("--no-ema", action="store_true", help="evaluate the online weights instead of the EMA")
    add_common(ev)
    ev.set_defaults(func=cmd_eval)

    fs = sub.add_parser(
        "fid-stats", help=COMMAND_HELP["fid-stats"],
        description="Inception pool features of every image of a split (uint8 path, no dropped last batch): mean, "
                    "covariance (float64) and the features, stored in an .npz with a content hash.")
    src = fs.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=["cifar10", "digits", "folder"], help="a dataset by name (with --root)")
    src.add_argument("--workdir", help="the dataset of a run folder's config")
    fs.add_argument("--root", default=None, help="CIFAR-10 folder or image folder/zip")
    fs.add_argument("--resolution", type=positive_int, default=None)
    fs.add_argument("--split", default="train", choices=["train", "test"])
    fs.add_argument("--out", required=True, help="output .npz")
    fs.add_argument("--batch-size", type=positive_int, default=200)
    fs.add_argument("--max-images", type=positive_int, default=None, help="only the first N images (tests, previews)")
    fs.add_argument("--no-features", action="store_true", help="store mean/covariance only (no KID)")
    fs.add_argument("--inception-weights", default=None, metavar="PATH")
    add_common(fs)
    fs.set_defaults(func=cmd_fid_stats)


def cmd_eval(args: argparse.Namespace) -> int:
    """``scoresde eval``: run :func:`scoresde.evaluation.evaluate` on a checkpoint of ``--workdir``."""
    workdir = Path(args.workdir)
    cfg, name, options = resolve_sampler(saved_config(workdir), args, "eval")  # checks --set items first
    samples = bool(set(args.metrics) & set(SAMPLE_METRICS))
    if not samples and (args.sampler is not None or args.steps is not None or args.set):
        raise ValueError(f"--sampler, --steps and --set sampling.* choose how {', '.join(SAMPLE_METRICS)} sample; "
                         f"--metrics {','.join(args.metrics)} samples nothing (drop them)")
    auto = args.batch_size == "auto"  # resolved once the model is loaded
    batch = 1 if auto else args.batch_size
    settings = EvalSettings(metrics=args.metrics, num_samples=args.num_samples, batch_size=batch,
                            round_size=args.round_size, seed=args.seed, ref_stats=args.ref_stats,
                            inception_weights=args.inception_weights, kid_subsets=args.kid_subsets,
                            kid_subset_size=args.kid_subset_size, bpd_split=args.bpd_split, bpd_num=args.bpd_num,
                            bpd_batch_size=args.bpd_batch_size, bpd_probes=args.bpd_probes, fpe_num=args.fpe_num,
                            fpe_times=args.fpe_times, fpe_eps=args.fpe_eps, fpe_probes=args.fpe_probes,
                            fpe_batch_size=args.fpe_batch_size)
    settings.validate()
    env = init_distributed(args.device)
    model, step, path = load_run_model(workdir, args.checkpoint, not args.no_ema, str(env.device))
    if auto:
        shape_one = (2,) if cfg.model["name"] == "toy_mlp" else (cfg.data.num_channels, cfg.data.image_size,
                                                                  cfg.data.image_size)
        per_rank = -(-args.num_samples // env.world_size)
        settings = dataclasses.replace(settings, batch_size=autotune_batch_size(model, shape_one, env.device, per_rank))
        if env.is_main and not args.quiet:
            print(f"--batch-size auto: {settings.batch_size}")
    steps = f"_steps{args.steps}" if args.steps is not None else ""
    sampler = f"_{name}{steps}" if samples else ""  # bpd / fpe: no sampler runs
    out_dir = workdir / "eval" / (args.tag or f"step_{step}{sampler}_seed{args.seed}")
    record = evaluate(model, cfg, step=step, ema=not args.no_ema, out_dir=out_dir, settings=settings, env=env,
                      sampler=name, options=options, checkpoint=str(path), progress=not args.quiet)
    if record is not None:
        shutil.copyfile(out_dir / "metrics.json", workdir / "eval" / "metrics.json")
        print(f"{_summary(record)} (step {step}{f', {name}' if samples else ''}); wrote {out_dir / 'metrics.json'}")
    return 0


def _summary(record: dict) -> str:
    parts = []
    for key, value in record["metrics"].items():
        if key == "fid":
            parts.append(f"FID {value:.3f}")
        elif key in ("is", "kid"):
            parts.append(f"{key.upper()} {value['mean']:.4g} ± {value['std']:.2g}")
        elif key == "fpe":
            parts.append(f"FPE residual {value['value']:.4g} ± {value['stderr'] or float('nan'):.2g}")
        else:
            parts.append(f"{value['value']:.4f} {value['unit']} ± {value['stderr'] or float('nan'):.4f}")
    return ", ".join(parts)


def cmd_fid_stats(args: argparse.Namespace) -> int:
    """``scoresde fid-stats``: Inception statistics of every image of a split, saved with their content hash."""
    if args.workdir is not None:
        cfg = saved_config(Path(args.workdir))
        dataset, name = build_dataset(cfg.data, args.split, cfg.seed), cfg.data.dataset
    else:
        dataset = load_dataset(args.dataset, split=args.split, root=args.root, resolution=args.resolution)
        name = args.dataset
    if not str(args.out).endswith(".npz"):
        raise ValueError(f"--out must end in .npz, got {args.out!r}")
    num = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    if num < 2 or dataset[0][0].dtype != torch.uint8:
        raise ValueError(f"fid-stats needs at least 2 uint8 images; {name} {args.split} has {num} "
                         f"of dtype {dataset[0][0].dtype}")
    device = resolve_device(args.device)
    extractor = load_inception(args.inception_weights, device)
    acc, feats = StatsAccumulator(), []
    for start in tqdm(range(0, num, args.batch_size), disable=args.quiet, desc="Inception features"):
        batch = torch.stack([dataset[i][0] for i in range(start, min(num, start + args.batch_size))])
        pool = extractor(batch).pool
        acc.update(pool)
        if not args.no_features:
            feats.append(pool)
    meta = {"dataset": name, "split": args.split, "resolution": int(dataset[0][0].shape[-1]),
            "inception_weights": args.inception_weights or "torch-fidelity download (2015-12-05)",
            "code_version": __version__}
    stats = acc.stats(None if args.no_features else torch.cat(feats).numpy(), **meta)
    digest = save_reference_stats(args.out, stats)
    print(f"wrote statistics of {num} {name} {args.split} images to {args.out} (sha256 {digest})")
    return 0
