"""The ``scoresde`` command line (also ``python -m scoresde``).

:func:`build_parser` registers the sub-commands of :data:`~.command_table.COMMANDS`, each from the module of its
concept: ``train``/``configs`` (:mod:`.train_commands`), ``sample`` (:mod:`.sample_commands`),
``likelihood``/``eval``/``fid-stats`` (:mod:`.eval_commands`), ``import``/``export`` (:mod:`.interop_commands`),
``demo`` (:mod:`.demo_commands`), ``train-classifier`` (:mod:`.classifier_commands`), ``inpaint``/``colorize``
(:mod:`.inverse_commands`) and ``encode``/``interpolate`` (:mod:`.latent_commands`). What they share is
:mod:`.common`.

Start-up time: this package imports no command module at import time. :func:`main` imports only the module of the
command on its command line, so ``scoresde --help`` and ``scoresde --version`` never load torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
import warnings
from collections.abc import Sequence

from .command_table import COMMANDS


def build_parser(command: str | None = None, *, all_commands: bool = True) -> argparse.ArgumentParser:
    """The argument parser of the ``scoresde`` command and its sub-commands.

    With ``all_commands`` (the default) every sub-command is registered with its options, importing every command
    module. Otherwise only ``command``'s module is imported and the other sub-commands are bare entries (their
    summary, no options): what :func:`main` uses, so that a command line loads only the code it runs."""
    parser = argparse.ArgumentParser(prog="scoresde", description="Score-based diffusion models in PyTorch.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('scoresde')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registered: set[tuple[str, str]] = set()
    groups = {(module, fn): {n for n, m, f, _ in COMMANDS if (m, f) == (module, fn)} for _, module, fn, _ in COMMANDS}
    for name, module, fn, summary in COMMANDS:
        group = (module, fn)
        if all_commands or command in groups[group]:
            if group not in registered:  # one call registers every command of the group
                registered.add(group)
                getattr(importlib.import_module(f"{__name__}.{module}"), fn)(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scoresde``: parse ``argv`` and run the sub-command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)  # the top level has no option with a value
    args = build_parser(command, all_commands=False).parse_args(argv)
    if getattr(args, "threads", None):
        import torch  # deferred: start-up time (--help and --version do not need torch)

        torch.set_num_threads(args.threads)
    try:
        with warnings.catch_warnings():  # a warning is one line naming the command, like the errors below
            warnings.showwarning = lambda message, category, *_, **__: print(
                f"scoresde {args.command}: warning: {message}", file=sys.stderr)
            return args.func(args)
    except (ValueError, OSError, FloatingPointError, TypeError, ImportError) as err:
        # OSError: storage faults (disk full, file too large, read-only, permission) are one line naming the path
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"scoresde {args.command}: error: {message}", file=sys.stderr)
        return 3 if isinstance(err, FloatingPointError) else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
