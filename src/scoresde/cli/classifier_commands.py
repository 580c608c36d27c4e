"""``scoresde train-classifier``: a noise-conditional classifier ``p_t(y | x_t)`` for classifier guidance, trained on
a run config's labelled data perturbed by its SDE (the pieces are :mod:`scoresde.training.classifier`'s).

* :func:`add_classifier_commands` registers the sub-command, :func:`cmd_train_classifier` runs it;
* :func:`train_classifier` is the run itself (also called from Python): settings from the run config and
  ``--set classifier.KEY=VALUE``, resume from the output folder, train, then the held-out accuracy per bin of ``t``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import Config, build_sde, load_config
from ..data import preprocess
from ..training.classifier import (
    RUN_CHECKPOINT,
    RUN_SETTINGS,
    ClassifierConfig,
    ClassifierTrainer,
    accuracy_by_time,
    apply_classifier_overrides,
    build_classifier,
    format_accuracy_table,
    labelled_tensors,
    save_classifier,
    sde_config,
)
from ..training.data import build_dataset
from .command_table import COMMAND_HELP
from .common import add_common, positive_int

#: in the output folder: the accuracy table and the training losses (the settings and checkpoint names are
#: :data:`scoresde.training.classifier.RUN_SETTINGS` / ``RUN_CHECKPOINT``)
_ACCURACY, _METRICS = "accuracy_by_time.json", "metrics.jsonl"
#: options that may change when a run resumes (how long and how it is logged and evaluated)
_RESUMABLE = frozenset({"steps", "log_freq", "checkpoint_freq", "eval_bins", "eval_num", "eval_split",
                        "eval_batch_size"})


def add_classifier_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``train-classifier`` on the sub-parsers ``sub`` of ``scoresde``."""
    p = sub.add_parser(
        "train-classifier", help=COMMAND_HELP["train-classifier"],
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
    result = train_classifier(args.config, Path(args.workdir), overrides=args.set, max_steps=args.max_steps,
                              device=args.device, progress=not args.quiet)
    print(f"stopped at step {result['step']}: train loss {result['loss']:.4g}; checkpoint in "
          f"{Path(args.workdir) / 'checkpoint'}")
    print(format_accuracy_table(result["accuracy_by_time"]))
    return 0


def _settings(config: Any, workdir: Path, overrides: Sequence[str]) -> tuple[Config, ClassifierConfig]:
    """The run config and classifier config of a ``train-classifier`` run: from ``config`` (or the workdir's saved
    settings when ``None``) with ``overrides`` (``classifier.*`` keys to the classifier, others to the run config)."""
    clf_over = [o for o in overrides if o.partition("=")[0].startswith("classifier.")]
    run_over = [o for o in overrides if o not in clf_over]
    saved_path = workdir / RUN_SETTINGS
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else None
    if config is None and saved is None:
        raise FileNotFoundError(f"{saved_path} not found: pass --config to start a classifier run in {workdir}")
    run = load_config(saved["run"] if config is None else config, run_over)
    base = ClassifierConfig.from_dict(saved["classifier"]) if config is None else ClassifierConfig()
    clf = apply_classifier_overrides(base, clf_over)
    if saved is not None:
        old = ClassifierConfig.from_dict(saved["classifier"]).to_dict()
        changed = sorted(k for k, v in clf.to_dict().items() if old[k] != v and k not in _RESUMABLE)
        if changed or sde_config(run) != sde_config(saved["run"]) or run.data != load_config(saved["run"]).data:
            what = ", ".join(changed) or "data or SDE"
            raise ValueError(f"{workdir} holds a classifier run with other settings ({what}); use a new --workdir")
    return run, clf


def train_classifier(config: Any, workdir: str | Path, *, overrides: Sequence[str] = (), max_steps: int | None = None,
                     device: str | None = None, progress: bool = False) -> dict[str, Any]:
    """``scoresde train-classifier``: train a noise-conditional classifier on the labelled training split of a run
    config's data, perturbed by its SDE, then measure :func:`~scoresde.training.classifier.accuracy_by_time` on the
    held-out split (EMA weights).

    Args:
        config: the run config (preset name, ``.json``, original ``.py``, dict): ``data`` and the SDE
            (``training.sde`` and the ``model`` section's SDE keys); ``None`` resumes ``workdir`` with its settings.
        workdir: output folder: ``classifier.json`` (settings), ``checkpoint/``
            (:func:`~scoresde.training.classifier.load_classifier`), ``metrics.jsonl`` (the training loss every
            ``log_freq`` steps), ``accuracy_by_time.json``. An existing one resumes (same settings; ``steps`` and
            evaluation options may change).
        overrides: ``classifier.KEY=VALUE`` (:class:`~scoresde.training.classifier.ClassifierConfig`) and
            ``section.key=value`` for the run config.
        max_steps: stop after this many more steps.
        device: ``"cpu"``, ``"cuda"``, ... (default: CPU).
        progress: show a progress bar.

    Returns ``{"step", "loss", "accuracy_by_time"}`` (the table's rows).
    """
    workdir = Path(workdir)
    run, cfg = _settings(config, workdir, overrides)
    sde = build_sde(run.to_dict())
    x, y = labelled_tensors(build_dataset(run.data, "train", run.seed), f"the {run.data.dataset} training split")
    num_classes = cfg.num_classes or int(y.max()) + 1
    classifier = build_classifier(sde, tuple(x.shape[1:]), num_classes, cfg, continuous=run.training.continuous)
    d = run.data
    trainer = ClassifierTrainer(classifier, cfg, x, y, centered=d.centered, random_flip=d.random_flip,
                                uniform_dequantization=d.uniform_dequantization, device=device)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / RUN_SETTINGS).write_text(json.dumps({"run": run.to_dict(), "classifier": cfg.to_dict()}, indent=2)
                                        + "\n")
    if (workdir / RUN_CHECKPOINT / "checkpoint.json").is_file():
        trainer.load(workdir / RUN_CHECKPOINT)
    sde_cfg = sde_config(run)

    def checkpoint(t: ClassifierTrainer) -> None:
        save_classifier(workdir / RUN_CHECKPOINT, t.classifier, cfg, sde_cfg, tuple(x.shape[1:]), step=t.step,
                        ema=t.ema, optimizer=t.optimizer)

    def log(scalars: dict[str, float]) -> None:
        with open(workdir / _METRICS, "a") as handle:
            handle.write(json.dumps(scalars) + "\n")

    loss = trainer.train(max_steps, progress=progress, checkpoint=checkpoint, log=log)
    xe, ye = labelled_tensors(build_dataset(run.data, cfg.eval_split, run.seed), f"the {d.dataset} {cfg.eval_split} "
                              "split")
    xe, ye = xe[:cfg.eval_num], ye[:cfg.eval_num]
    if xe.dtype == torch.uint8:
        xe = preprocess(xe, centered=d.centered)
    rows = accuracy_by_time(trainer.eval_classifier(), xe.to(trainer.device), ye, num_bins=cfg.eval_bins,
                            eps=cfg.eps, batch_size=cfg.eval_batch_size,
                            generator=torch.Generator().manual_seed(cfg.seed))
    report = {"step": trainer.step, "sde": sde_cfg, "split": cfg.eval_split, "accuracy_by_time": rows}
    (workdir / _ACCURACY).write_text(json.dumps(report, indent=2) + "\n")
    return {"step": trainer.step, "loss": loss, "accuracy_by_time": rows}
