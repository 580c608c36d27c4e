"""``scoresde demo``: train on the built-in digits (or a 2-D toy), sample and evaluate in a few CPU minutes; the
demos themselves are :mod:`.digits_demo`, :mod:`.demo` (the toy) and :mod:`.conditional_demo`."""

from __future__ import annotations

import argparse

from .command_table import COMMAND_HELP
from .common import positive_int
from .conditional_demo import cmd_conditional_demo
from .demo import DemoConfig, format_summary, run_demo
from .digits_demo import format_digits_summary, run_digits_demo


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    """Register ``demo`` on the sub-parsers ``sub`` of ``scoresde``."""
    demo = sub.add_parser(
        "demo", help=COMMAND_HELP["demo"],
        description="Train DDPM++ on the built-in 16x16 digits (no download) for a few CPU minutes, sample a grid "
                    "(digits.png), and measure test bits/dim and digit-classifier confidence (metrics.json). "
                    "Re-running resumes the run in OUT/run. With --toy: a 2-D Gaussian mixture whose exact score "
                    "checks every sampler and the likelihood (samples.png, metrics.json).")
    demo.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    demo.add_argument("--toy", action="store_true", help="the 2-D Gaussian-mixture demo instead of the digits")
    demo.add_argument("--conditional", action="store_true",
                      help="the class-conditional digits demo: classifier-free and classifier guidance, inpainting, "
                           "interpolation (grid.png, inpainting.png, interpolation.png, metrics.json)")
    demo.add_argument("--classifier", default=None, metavar="DIR",
                      help="--conditional: a `scoresde train-classifier` folder for the digits' VP SDE (default: "
                           "train one in OUT/classifier)")
    demo.add_argument("--steps", type=positive_int, default=None,
                      help="training steps (default: the preset's, 1000 for digits, 5000 for the toy)")
    demo.add_argument("--num-samples", type=positive_int, default=None,
                      help="samples drawn (default: 64 digits, 2000 toy points; --conditional: per digit and guidance "
                           "setting, 20)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """``scoresde demo``: the digits demo, or with ``--toy`` / ``--conditional`` the toy or conditional demo."""
    if args.conditional:
        return cmd_conditional_demo(args)
    if args.classifier is not None:
        raise ValueError("--classifier is an option of the conditional demo; add --conditional")
    if args.toy:
        cfg = DemoConfig(steps=args.steps or DemoConfig.steps, seed=args.seed,
                         num_samples=args.num_samples or DemoConfig.num_samples)
        print(format_summary(run_demo(args.out, cfg, progress=not args.quiet)))
        return 0
    overrides = [f"seed={args.seed}"] + ([f"training.n_iters={args.steps}"] if args.steps else [])
    metrics = run_digits_demo(args.out, overrides=tuple(overrides), num_samples=args.num_samples or 64,
                              progress=not args.quiet)
    print(format_digits_summary(metrics))
    return 0
