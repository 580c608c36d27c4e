"""``scoresde train`` (train or resume a run folder, optionally fine-tuning from other weights) and ``scoresde
configs`` (the presets that ``train --config`` accepts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import apply_overrides, config_from_dict, describe_preset, list_presets, load_config
from ..training import Trainer, TrainingInterrupted
from .command_table import COMMAND_HELP
from .common import add_common, positive_int, saved_config


def add_train_command(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` on the sub-parsers ``sub`` of ``scoresde``."""
    train = sub.add_parser("train", help=COMMAND_HELP["train"],
                           description="Train the config in --workdir. Launch with torchrun for DDP on several "
                                       "GPUs/processes; a plain launch is one process. An existing workdir resumes "
                                       "from its newest valid checkpoint (omit --config to reuse its config).")
    train.add_argument("--config", default=None, help="preset name (see `scoresde configs`), .json file or original "
                                                      "configs/**.py file")
    train.add_argument("--workdir", required=True, help="run folder (config.json, checkpoints/, samples/, tb/)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set training.batch_size=64 (repeatable)")
    train.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many steps")
    train.add_argument("--init-from", default=None, metavar="CKPT",
                       help="fine-tune: start a new run from the weights (online and EMA) of a run folder, a "
                            "checkpoint directory or an original Score SDE .pth; ignored once the workdir has "
                            "checkpoints (it then resumes)")
    add_common(train)
    train.set_defaults(func=cmd_train)


def add_configs_command(sub: argparse._SubParsersAction) -> None:
    """Register ``configs`` on the sub-parsers ``sub`` of ``scoresde``."""
    cfgs = sub.add_parser("configs", help=COMMAND_HELP["configs"])
    cfgs.add_argument("--filter", default=None, help="only names containing this text")
    cfgs.set_defaults(func=cmd_configs)


def cmd_train(args: argparse.Namespace) -> int:
    """``scoresde train``: validate everything, then train (resuming from the workdir's newest checkpoint)."""
    workdir = Path(args.workdir)
    if args.config is None:
        if not (workdir / "config.json").is_file():
            raise FileNotFoundError(f"{workdir} holds no run to resume (no config.json): start one with --config "
                                    "PRESET (see `scoresde configs`)")
        cfg = saved_config(workdir)
        if args.set:
            cfg = config_from_dict(apply_overrides(cfg.to_dict(), args.set))
    else:
        cfg = load_config(args.config, [*args.set, *_kept_schedule(workdir, args.set)])
    trainer = Trainer(cfg, workdir, device=args.device, progress=not args.quiet)  # validates data and model first
    resumed = trainer.resume()
    if resumed and trainer.step >= cfg.training.n_iters:
        if trainer.env.is_main:
            print(f"{workdir} is at step {trainer.step} and training.n_iters is {cfg.training.n_iters}: nothing to "
                  f"train (to continue, --set training.n_iters=N with N > {trainer.step})")
        return 0
    loaded = trainer.init_from(args.init_from) if args.init_from and not resumed else None
    if trainer.env.is_main:
        if loaded:
            print(f"initialised from {loaded}")
        elif args.init_from:
            print(f"--init-from {args.init_from} ignored: {workdir} has checkpoints, resuming the fine-tuning run")
        print(f"{'resuming' if resumed else 'starting'} at step {trainer.step} of {cfg.training.n_iters} in {workdir}")
    try:
        last = trainer.train(max_steps=args.max_steps)
    except TrainingInterrupted as stop:  # SIGTERM/SIGINT: a pre-emption checkpoint was written at stop.step
        if trainer.env.is_main:
            print(f"scoresde train: {stop}: run the same command to continue", file=sys.stderr)
        return stop.exit_code
    if trainer.env.is_main:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
        print(f"stopped at step {trainer.step}: {summary}; checkpoints in {workdir / 'checkpoints'}")
    return 0


def _kept_schedule(workdir: Path, overrides: list[str]) -> list[str]:
    """A resumed run keeps its own ``training.n_iters`` unless ``--set`` changes it: the override that restores the
    saved value (none for a new run folder). Without it, resuming a run trained with ``--set training.n_iters=100``
    from its preset would silently continue to the preset's own ``n_iters``."""
    if not (workdir / "config.json").exists() or any(o.split("=", 1)[0].strip() == "training.n_iters"
                                                     for o in overrides):
        return []
    return [f"training.n_iters={saved_config(workdir).training.n_iters}"]


def cmd_configs(args: argparse.Namespace) -> int:
    """``scoresde configs``: list preset names (optionally those containing ``--filter``), each with its one-line
    description (SDE, network, data, resolution, source)."""
    names = [n for n in list_presets() if args.filter is None or args.filter in n]
    width = max((len(n) for n in names), default=0)
    print("\n".join(f"{n:<{width}}  {describe_preset(n)}" for n in names))
    return 0
