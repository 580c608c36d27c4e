"""``scoresde optimize-grid``: fit a fixed-step sampler's time grid to a run's model
(:func:`scoresde.sampling.optimize_grid`) and store it in the run folder, as a ``sampling`` section with ``times``,
where ``scoresde sample --grid fitted`` finds it (:func:`apply_grid`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..checkpoint.atomic import atomic_write
from ..numerics.grids import GRIDS
from ..sampling import SAMPLERS
from ..sampling.grid_fit import optimize_grid
from .command_table import COMMAND_HELP
from .common import add_common, add_step, load_run_model, positive_int, resolve_device, resolve_sampler, saved_config

#: folder of a run that holds its fitted grids, one ``<sampler>_nfe<N>.json`` each
GRIDS_FOLDER = "grids"
#: sampler options that a fitted grid replaces (they do not have to match between the fit and its use)
REPLACED = ("steps", "nfe", "times", "grid")


def grid_file(workdir: Path, sampler: str, nfe: int) -> Path:
    """Where ``optimize-grid`` stores the grid of ``sampler`` at ``nfe`` network calls in the run folder ``workdir``."""
    return Path(workdir) / GRIDS_FOLDER / f"{sampler}_nfe{nfe}.json"


def add_grid_command(sub: argparse._SubParsersAction) -> None:
    """Register ``optimize-grid`` on the sub-parsers ``sub`` of ``scoresde``."""
    fixed = [name for name, spec in SAMPLERS.items() if spec.fixed_steps]
    p = sub.add_parser("optimize-grid", help=COMMAND_HELP["optimize-grid"],
                       description="Fit the time grid of a fixed-step sampler at a budget of network calls to a run's "
                                   "model: minimise its error against a fine solve of the same model from prior draws "
                                   "(path error; energy distance for stochastic samplers). Writes "
                                   "RUN/grids/<sampler>_nfe<N>.json; `scoresde sample --sampler S --nfe N --grid "
                                   "fitted` uses it.")
    p.add_argument("--workdir", required=True, help="run folder (its config and checkpoints)")
    add_step(p)
    p.add_argument("--sampler", choices=fixed, default=None,
                   help="fixed-step sampler (default: the run's sampling.method); options: --set sampling.KEY=VALUE")
    p.add_argument("--nfe", type=positive_int, required=True, metavar="N", help="budget of network calls")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampling option of the fit, e.g. --set sampling.order=3 (repeatable; sampling.* only)")
    p.add_argument("--probes", type=positive_int, default=64,
                   help="prior draws the grid is fitted on (default: %(default)s)")
    p.add_argument("--max-evals", type=positive_int, default=300,
                   help="most sampler runs of the search, N calls each on the probes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe draws (default: %(default)s)")
    p.add_argument("--no-ema", action="store_true", help="use the online weights instead of the EMA")
    add_common(p)
    p.set_defaults(func=cmd_optimize_grid)


def cmd_optimize_grid(args: argparse.Namespace) -> int:
    """``scoresde optimize-grid``: fit the grid and write it to ``RUN/grids/<sampler>_nfe<N>.json``."""
    workdir = Path(args.workdir)
    args.steps = None  # resolve_sampler's --steps: the fit chooses the times
    cfg, name, options = resolve_sampler(saved_config(workdir), args, "optimize-grid")
    options = {k: v for k, v in options.items() if k not in ("steps", "nfe", "times")}
    device = resolve_device(args.device)
    model, step, _ = load_run_model(workdir, args.checkpoint, not args.no_ema, device)
    toy = cfg.model["name"] == "toy_mlp"
    shape = (args.probes, 2) if toy else (args.probes, cfg.data.num_channels, cfg.data.image_size,
                                          cfg.data.image_size)
    g = torch.Generator(device).manual_seed(args.seed)
    times, info = optimize_grid(model, shape, sampler=name, nfe=args.nfe, generator=g, device=device,
                                max_evals=args.max_evals, return_info=True, **options)
    record = {"sampler": name, "nfe": args.nfe, "calls": info.nfe, "options": options,
              "sampling": {"method": name, "times": times.tolist()}, "criterion": info.criterion,
              "start_grid": info.start_grid, "start_value": info.start_value, "value": info.value,
              "evaluations": info.evaluations, "network_calls": info.network_calls, "probes": info.probes,
              "seed": args.seed, "checkpoint_step": step, "seconds": round(info.seconds, 2)}
    out = grid_file(workdir, name, args.nfe)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    print(f"wrote the {name} grid for --nfe {args.nfe} ({len(times)} times, {info.nfe} calls; {info.criterion} on "
          f"{info.probes} probe draws {info.start_value:.4g} ({info.start_grid}) -> {info.value:.4g}; "
          f"{info.evaluations} runs, {info.network_calls} network calls, {info.seconds:.1f} s) to {out}; use it with "
          f"scoresde sample --workdir {workdir} --sampler {name} --nfe {args.nfe} --grid fitted")
    return 0


def add_grid_option(p: argparse.ArgumentParser) -> None:
    """``--grid NAME|fitted`` of ``scoresde sample``."""
    p.add_argument("--grid", choices=(*GRIDS, "fitted"), default=None,
                   help="time grid of a fixed-step sampler: a built-in grid, or 'fitted': the grid `scoresde "
                        "optimize-grid` fitted for this --sampler and --nfe (default: the run's sampling.grid)")


def apply_grid(grid: str | None, workdir: Path, sampler: str, nfe: int | None, options: dict[str, Any]
               ) -> dict[str, Any]:
    """``options`` with ``--grid`` applied: a built-in grid name sets ``grid``; ``fitted`` replaces ``steps``,
    ``nfe`` and ``grid`` by the stored ``times`` of :func:`grid_file` (``sampler``, ``nfe``). A missing grid, a
    sampler without a grid and options other than the fit's are one ``ValueError`` line."""
    if grid is None:
        return options
    if not SAMPLERS[sampler].fixed_steps:
        raise ValueError(f"--grid needs a fixed-step sampler; {sampler} chooses its own steps")
    if grid != "fitted":
        if "grid" not in SAMPLERS[sampler].options():
            raise ValueError(f"--grid {grid}: sampler {sampler} takes no grid")
        return {**options, "grid": grid}
    if nfe is None:
        raise ValueError("--grid fitted needs --nfe N, the budget the grid was fitted for")
    path = grid_file(workdir, sampler, nfe)
    if not path.is_file():
        found = sorted(p.stem for p in (Path(workdir) / GRIDS_FOLDER).glob("*.json"))
        raise ValueError(f"no fitted grid for sampler {sampler} at --nfe {nfe} in {path.parent} (fitted: "
                         f"{', '.join(found) or 'none'}); run scoresde optimize-grid --workdir {workdir} --sampler "
                         f"{sampler} --nfe {nfe}")
    record = json.loads(path.read_text())
    fitted = record.get("options", {})
    for key in sorted(set(fitted) | set(options)):
        if key not in REPLACED and key in options and key in fitted and options[key] != fitted[key]:
            raise ValueError(f"the grid in {path} was fitted with {key}={fitted[key]!r}, this sampling has "
                             f"{key}={options[key]!r}: pass --set sampling.{key}={fitted[key]} or fit again")
    out = {k: v for k, v in options.items() if k not in REPLACED}
    out["times"] = [float(t) for t in record["sampling"]["times"]]  # a list: sample() reads it, the .npz records it
    return out
