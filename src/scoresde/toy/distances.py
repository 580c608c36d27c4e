"""Two-sample distances used to check samplers against a known distribution."""

from __future__ import annotations

import torch
from torch import Tensor


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Squared energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Székely & Rizzo 2013, eq. 2), V-statistic.

    ``x`` and ``y`` are sample sets of shape ``(n, d)`` and ``(m, d)``. The V-statistic (diagonal terms included)
    is non-negative and equals zero only for identical sets; for two independent draws of the same law it is
    of order ``1/n``, which is the yardstick a sampler's distance is compared with.
    """
    x, y = _as_sample_sets(x, y)
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).mean()
    yy = torch.cdist(y, y).mean()
    return float(2 * xy - xx - yy)


def sliced_wasserstein(
    x: Tensor, y: Tensor, n_projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced 2-Wasserstein distance ``(E_theta W_2^2(theta^T X, theta^T Y))^(1/2)`` (Bonneel et al. 2015).

    One-dimensional ``W_2`` between projections is computed from matched quantiles (both sets are sorted; for
    unequal sizes the larger is interpolated at the smaller's quantile levels).
    """
    x, y = _as_sample_sets(x, y)
    if not (isinstance(n_projections, int) and n_projections >= 1):
        raise ValueError(f"n_projections must be a positive integer, got {n_projections!r}")
    # Drawn on the CPU (where a default generator lives), then moved: the result does not depend on the device.
    theta = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64).to(x.device)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ theta, dim=0)
    py, _ = torch.sort(y @ theta, dim=0)
    if px.shape[0] != py.shape[0]:
        n = min(px.shape[0], py.shape[0])
        levels = (torch.arange(n, dtype=torch.float64, device=x.device) + 0.5) / n
        px, py = _quantiles(px, levels), _quantiles(py, levels)
    return float(((px - py) ** 2).mean().sqrt())


def _as_sample_sets(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten two sample sets to float64 matrices ``(n, d)``, ``(m, d)`` on ``x``'s device; check their shapes."""
    if x.dim() == 0 or y.dim() == 0 or x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError(f"sample sets must be non-empty batches, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    y = y.reshape(y.shape[0], -1).to(device=x.device, dtype=torch.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"sample sets have different dimensions: {x.shape[1]} and {y.shape[1]}")
    return x, y


def _quantiles(sorted_values: Tensor, levels: Tensor) -> Tensor:
    """Linear interpolation of the empirical quantile function, value ``i`` sitting at level ``(i + 1/2) / n``."""
    n = sorted_values.shape[0]
    pos = levels * n - 0.5
    lo = pos.floor().clamp(0, n - 1).long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo).clamp(0, 1)[:, None]
    return sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac
