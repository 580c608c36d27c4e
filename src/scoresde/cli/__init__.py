"""The ``scoresde`` command line (also ``python -m scoresde``).

:func:`build_parser` registers the sub-commands, each from the module of its concept: ``train``/``configs``
(:mod:`.train_commands`), ``sample`` (:mod:`.sample_commands`), ``likelihood``/``eval``/``fid-stats``
(:mod:`.eval_commands`), ``import``/``export`` (:mod:`.interop_commands`), ``demo`` (:mod:`.demo_commands`),
``train-classifier`` (:mod:`.classifier_commands`), ``inpaint``/``colorize`` (:mod:`.inverse_commands`) and
``encode``/``interpolate`` (:mod:`.latent_commands`). What they share is :mod:`.common`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

import torch

from .classifier_commands import add_classifier_commands
from .demo_commands import add_demo_command
from .eval_commands import add_eval_commands, add_likelihood_command
from .interop_commands import add_interop_commands
from .inverse_commands import add_inverse_commands
from .latent_commands import add_latent_commands
from .sample_commands import add_sample_command
from .train_commands import add_configs_command, add_train_command


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scoresde`` command and its sub-commands."""
    parser = argparse.ArgumentParser(prog="scoresde", description="Score-based diffusion models in PyTorch.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('scoresde')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_command(sub)
    add_sample_command(sub)
    add_likelihood_command(sub)
    add_configs_command(sub)
    add_interop_commands(sub)  # import, export
    add_demo_command(sub)
    add_eval_commands(sub)  # eval, fid-stats
    add_classifier_commands(sub)  # train-classifier
    add_inverse_commands(sub)  # inpaint, colorize
    add_latent_commands(sub)  # encode, interpolate
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scoresde``: parse ``argv`` and run the sub-command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError, TypeError, ImportError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"scoresde {args.command}: error: {message}", file=sys.stderr)
        return 3 if isinstance(err, FloatingPointError) else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
