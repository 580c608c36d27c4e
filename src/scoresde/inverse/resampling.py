"""Resampling helpers of the particle samplers (:mod:`scoresde.inverse.smc`): the effective sample size of a set of
log-weights and multinomial resampling (Doucet & Johansen 2009, "A tutorial on particle filtering and smoothing: fifteen
years later": resample when the ESS falls below a fraction of the particle count).

Log-weights have shape ``(B, P)``: ``B`` independent filters (one per returned sample) of ``P`` particles each.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ess", "multinomial"]


def ess(log_w: Tensor) -> Tensor:
    """The effective sample size ``1 / sum_i w_i^2`` of the normalised weights, per row: shape ``(B,)``, between 1
    (one particle holds all the weight) and ``P`` (equal weights)."""
    w = torch.softmax(log_w, dim=1)
    return 1.0 / (w**2).sum(1)


def multinomial(log_w: Tensor, generator: torch.Generator | None, draws: int | None = None) -> Tensor:
    """Particle indices drawn ``draws`` times (default: as many as particles) per row, with replacement, from the
    normalised weights: shape ``(B, draws)``. Unbiased: each index is expected ``draws * w_i``
    times."""
    w = torch.softmax(log_w, dim=1)
    return torch.multinomial(w, draws or w.shape[1], replacement=True, generator=generator)
