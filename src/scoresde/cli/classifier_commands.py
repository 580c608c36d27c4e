"""``scoresde train-classifier``: a noise-conditional classifier ``p_t(y | x_t)`` for classifier guidance, trained on
a run config's labelled data perturbed by its SDE (:mod:`scoresde.training.classifier`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def add_classifier_commands(sub, positive_int: Callable[[str], int],
                            add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``train-classifier`` on the sub-parsers ``sub`` of ``scoresde`` (``--device``, ``--quiet`` and
    ``--threads`` come from ``add_common``)."""
    p = sub.add_parser(
        "train-classifier", help="train a noise-conditional classifier p_t(y | x_t) for classifier guidance",
        description="Train a time-conditional classifier on the labelled data of --config, perturbed by its SDE "
                    "(training.sde; for PSLD/CLD the classifier sees the whole state [x, m]): cross-entropy at "
                    "t ~ U(eps, T), Adam, optional EMA. Writes DIR/classifier.json (the resolved settings), "
                    "DIR/checkpoint/ (resumable; load it with scoresde.training.classifier.load_classifier) and "
                    "DIR/accuracy_by_time.json (held-out accuracy per bin of t). An existing DIR resumes.")
    p.add_argument("--config", default=None,
                   help="preset name (see `scoresde configs`), .json file or original configs/**.py file: its data "
                        "and SDE are used (omit it to resume DIR with its saved settings)")
    p.add_argument("--workdir", required=True, help="output folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a classifier option, e.g. --set classifier.steps=2000 (see "
                        "scoresde.training.classifier.ClassifierConfig), or a run-config value, e.g. --set "
                        "training.sde=psld (repeatable)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many steps")
    add_common(p)
    p.set_defaults(func=cmd_train_classifier)


def cmd_train_classifier(args: argparse.Namespace) -> int:
    """``scoresde train-classifier``: train (or resume), then print the accuracy-by-noise-level table."""
    from ..training.classifier import format_accuracy_table, train_classifier

    result = train_classifier(args.config, Path(args.workdir), overrides=args.set, max_steps=args.max_steps,
                              device=args.device, progress=not args.quiet)
    print(f"stopped at step {result['step']}: train loss {result['loss']:.4g}; checkpoint in "
          f"{Path(args.workdir) / 'checkpoint'}")
    print(format_accuracy_table(result["accuracy_by_time"]))
    return 0
