"""The main demo: train DDPM++ on the built-in 16×16 digits, sample a grid, measure bits/dim and digit quality.

Everything runs through the library's own pieces (:class:`~scoresde.training.Trainer`, the samplers, the ODE
likelihood), on 2 CPU cores in a few minutes. Sample quality is measured without Inception: a logistic-regression
digit classifier trained on the real digits (about 97% test accuracy) labels the samples; recognisable digits
get confident predictions spread over all ten classes.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import load_config
from ..data import load_digits16, preprocess
from ..data.image_grid import save_image_grid
from ..likelihood import bits_per_dim
from ..training import Trainer

PRESET = "digits/vp_ddpmpp"


def digit_classifier(seed: int = 0):
    """A multinomial logistic regression on the 16×16 training digits (pixels in ``[0, 1]``), with its test accuracy."""
    from sklearn.linear_model import LogisticRegression  # deferred: start-up time (scikit-learn takes ~1 s)

    train, test = load_digits16("train"), load_digits16("test")
    flat = lambda ds: ds.images.flatten(1).numpy() / 255.0  # noqa: E731
    clf = LogisticRegression(max_iter=2000, C=0.5, random_state=seed).fit(flat(train), train.labels.numpy())
    return clf, float(clf.score(flat(test), test.labels.numpy()))


def digit_quality(samples: torch.Tensor, clf) -> dict[str, float]:
    """Mean classifier confidence, fraction of confident samples (max p > 0.9), and the class-histogram entropy
    in bits (``log2 10 = 3.32`` when the ten digits are equally frequent)."""
    probs = clf.predict_proba(samples.flatten(1).numpy())
    counts = np.bincount(probs.argmax(1), minlength=10) / len(probs)
    entropy = -sum(p * math.log2(p) for p in counts if p > 0)
    return {"mean_confidence": float(probs.max(1).mean()), "confident_fraction": float((probs.max(1) > 0.9).mean()),
            "class_entropy_bits": entropy}


def train_or_resume(preset: str, overrides: tuple[str, ...], run_dir: Path,
                    progress: bool) -> tuple[Any, Trainer, dict[str, float], float]:
    """Train ``preset`` (with ``overrides``) in ``run_dir``, resuming from its newest checkpoint; returns the config,
    the trainer, the last logged scalars and the seconds spent training in this call."""
    cfg = load_config(preset, list(overrides))
    trainer = Trainer(cfg, run_dir, progress=progress)
    trainer.resume()
    tic = time.perf_counter()
    last = trainer.train()
    return cfg, trainer, last, time.perf_counter() - tic


def run_digits_demo(out_dir: str | Path, *, overrides: tuple[str, ...] = (), num_samples: int = 64,
                    num_bpd: int = 64, bpd_tolerance: float = 1e-4, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) ``digits/vp_ddpmpp`` (with ``overrides``) in ``out_dir/run``, then write
    ``out_dir/digits.png`` and ``out_dir/metrics.json``; returns the metrics, with the seconds of each phase under
    ``"seconds"`` (``train`` includes the run's snapshot grid at its last step, which is the demo's sample grid).

    ``bpd_tolerance`` is the relative and absolute tolerance of the dopri5 likelihood ODE (the library's default
    is 1e-5): on the trained demo model 1e-4 gives the same test bits/dim to 1e-4 with a third of the network
    evaluations (134 vs 392 NFE); 1e-3 moves it by 2e-3.
    """
    out = Path(out_dir)
    start = time.perf_counter()
    cfg, trainer, last, train_s = train_or_resume(PRESET, overrides, out / "run", progress)
    tic = time.perf_counter()
    if trainer.last_snapshot is not None and trainer.last_snapshot[0] == trainer.step \
            and len(trainer.last_snapshot[1]) == num_samples:
        samples = trainer.last_snapshot[1]  # the run's final snapshot grid: no need to sample twice
    else:
        samples = trainer.snapshot_samples(num_samples).cpu()
    sample_s = time.perf_counter() - tic
    png = save_image_grid(samples, out / "digits.png")
    clf, accuracy = digit_classifier(cfg.seed)
    model = trainer.ema_model()
    test = load_digits16("test")
    x = test.images[:num_bpd]
    tic = time.perf_counter()
    bpd, info = bits_per_dim(model.sde, model.score, x, data_range=(-1.0, 1.0) if cfg.data.centered else (0, 1),
                             generator=torch.Generator().manual_seed(cfg.seed), rtol=bpd_tolerance,
                             atol=bpd_tolerance, return_info=True)
    bpd_s = time.perf_counter() - tic
    real = preprocess(test.images[:num_samples])
    metrics = {
        "preset": PRESET, "overrides": list(overrides), "steps": trainer.step, "train_seconds_this_run": train_s,
        "final_train_loss": last.get("train/loss"), "eval_loss_ema": trainer.eval_loss() if trainer.eval_set else None,
        "test_bits_per_dim": float(bpd.mean()), "bpd_stderr_over_images": float(bpd.std() / math.sqrt(len(bpd))),
        "bpd_nfe": info.nfe, "classifier_test_accuracy": accuracy,
        "samples": digit_quality(samples, clf), "real_test_digits": digit_quality(real, clf),
        "files": {"png": str(png), "metrics": str(out / "metrics.json"), "run": str(out / "run")},
        "seconds": {"train": train_s, "final_samples": sample_s, "bits_per_dim": bpd_s,
                    "total": time.perf_counter() - start},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def format_digits_summary(m: dict[str, Any]) -> str:
    """A short report of :func:`run_digits_demo`'s metrics."""
    s, r = m["samples"], m["real_test_digits"]
    return "\n".join([
        f"trained {m['preset']} to step {m['steps']} ({m['train_seconds_this_run']:.0f}s in this run), "
        f"final loss {m['final_train_loss']:.4f}; {m['seconds']['total']:.0f}s in all",
        f"test bits/dim {m['test_bits_per_dim']:.3f} ± {m['bpd_stderr_over_images']:.3f} (ODE, NFE {m['bpd_nfe']})",
        f"digit classifier (test accuracy {m['classifier_test_accuracy']:.3f}): samples confident "
        f"{s['confident_fraction']:.2f}, class entropy {s['class_entropy_bits']:.2f} bits; real digits "
        f"{r['confident_fraction']:.2f}, {r['class_entropy_bits']:.2f} bits",
        f"wrote {m['files']['png']} and {m['files']['metrics']} (run folder {m['files']['run']})",
    ])
