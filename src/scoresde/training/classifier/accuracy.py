"""Held-out accuracy of a noise-conditional classifier per bin of the forward time: :func:`accuracy_by_time` and its
Markdown table :func:`format_accuracy_table` (what ``scoresde train-classifier`` prints and saves)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...models.classifier import ClassifierModel
from ...numerics.times import check_eps
from ...sdes.scalar import ScalarSDE
from .objective import noisy_state, perturbation_draws

__all__ = ["accuracy_by_time", "format_accuracy_table"]


@torch.no_grad()
def accuracy_by_time(classifier: ClassifierModel, x: Tensor, y: Tensor, *, num_bins: int = 10, eps: float = 1e-5,
                     batch_size: int = 500, generator: torch.Generator | None = None) -> list[dict[str, float]]:
    """Held-out accuracy and cross-entropy of a noise-conditional classifier per bin of the forward time: bin ``i``
    covers ``[eps + i h, eps + (i + 1) h)``, ``h = (T - eps) / num_bins``, and every example is perturbed once per bin
    at ``t ~ U(bin)`` (:func:`noisy_state`; draws on the CPU from ``generator``, :func:`perturbation_draws`).
    Accuracy must fall from the clean classifier's towards the prior's (the share of the largest class) as ``t``
    grows.

    Returns one row per bin: ``t_lo``, ``t_hi``, ``accuracy``, ``nll`` (mean cross-entropy, nats) and ``n``; for
    scalar SDEs also ``snr`` (``alpha(t) / sigma(t)`` at the bin's middle).
    """
    if num_bins < 1 or batch_size < 1:
        raise ValueError(f"num_bins and batch_size must be positive, got {num_bins}, {batch_size}")
    sde = classifier.sde
    check_eps(eps, sde)
    y = classifier.check_labels(y, x.shape[0])
    edges = torch.linspace(eps, sde.T, num_bins + 1, dtype=torch.float64).tolist()
    rows = []
    for lo, hi in itertools.pairwise(edges):
        correct, nll = 0.0, 0.0
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size].to(x.device)
            draws = {k: (None if v is None else v.to(xb.device, xb.dtype))
                     for k, v in perturbation_draws(sde, xb.shape, (lo, hi), generator).items()}
            t = draws.pop("t")
            logits = classifier(noisy_state(sde, xb, t, **draws), t)
            correct += float((logits.argmax(dim=1) == yb).sum())
            nll += float(F.cross_entropy(logits.double(), yb, reduction="sum"))
        row = {"t_lo": lo, "t_hi": hi, "accuracy": correct / x.shape[0], "nll": nll / x.shape[0], "n": x.shape[0]}
        if isinstance(sde, ScalarSDE):
            mid = torch.tensor([0.5 * (lo + hi)], dtype=torch.float64)
            row["snr"] = float(sde.alpha(mid) / sde.sigma(mid))
        rows.append(row)
    return rows


def format_accuracy_table(rows: Sequence[Mapping[str, float]]) -> str:
    """:func:`accuracy_by_time`'s rows as a Markdown table (t range, alpha/sigma where known, accuracy, NLL)."""
    snr = all("snr" in r for r in rows)
    head = "| t | " + ("alpha/sigma | " if snr else "") + "accuracy | NLL (nats) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['t_lo']:.3f}-{r['t_hi']:.3f} | " + (f"{r['snr']:.3g} | " if snr else "")
                     + f"{r['accuracy']:.3f} | {r['nll']:.3f} |")
    return "\n".join(lines)
