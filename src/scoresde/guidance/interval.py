"""Guidance in a limited interval of noise levels (Kynkäänniemi, Aittala, Karras, Laine, Aila & Lehtinen, "Applying
Guidance in a Limited Interval Improves Sample and Distribution Quality in Diffusion Models", NeurIPS 2024, eq. 5).

Guidance is applied only while the noise level is inside ``(sigma_lo, sigma_hi]``; elsewhere the guided model returns
the plain conditional prediction (the paper's guidance weight 1, Ho & Salimans' ``w = 0``). Guidance at high noise
levels mostly pulls every sample toward the same template (less variety), at low noise levels it is hardly needed;
the paper finds the middle of the range to carry its benefit.

The noise level is EDM's ``sigma`` of the SDE (Karras et al. 2022): a scalar kernel ``x_t = alpha_t x_0 + sigma_t
eps`` is, after dividing by ``alpha_t``, ``x_0`` plus noise of std ``sigma = sigma_t / alpha_t = exp(-lambda_t)``.
That is ``sigma(t)`` itself for VE, ``sqrt(exp(int_0^t beta) - 1)`` for VP, and the ratio of the marginal std to the
marginal mean coefficient for sub-VP: the same number for the same signal-to-noise ratio under every SDE, so an
interval measured with EDM's networks (sigma in data units, data in ``[-1, 1]``) transfers.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from ..models.adapter import DiffusionModel

__all__ = ["check_interval", "in_interval", "noise_level"]


def check_interval(interval: Any) -> tuple[float, float] | None:
    """``interval`` as ``(sigma_lo, sigma_hi)`` floats with ``0 <= sigma_lo < sigma_hi`` (``sigma_hi`` may be
    ``inf``), or ``None``; else one ``ValueError`` naming it."""
    if interval is None:
        return None
    try:
        lo, hi = (float(v) for v in interval)
        ok = not isinstance(interval, str) and 0.0 <= lo < hi and math.isfinite(lo) and not math.isnan(hi)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"interval must be (sigma_lo, sigma_hi) with 0 <= sigma_lo < sigma_hi (EDM noise levels "
                         f"sigma_t / alpha_t; sigma_hi may be inf), got {interval!r}")
    return lo, hi


def noise_level(model: DiffusionModel, t: Tensor) -> Tensor:
    """EDM's noise level ``sigma = sigma_t / alpha_t`` of each row at forward times ``t`` ``(B,)``, from the model's own
    kernel coefficients (``model.alpha_sigma``; the discrete table entry for a discrete-time network)."""
    alpha, sigma = model.alpha_sigma(t)
    return sigma / alpha


def in_interval(model: DiffusionModel, t: Tensor, interval: tuple[float, float]) -> Tensor:
    """Boolean ``(B,)``: which rows' noise level lies in ``(sigma_lo, sigma_hi]`` (Kynkäänniemi et al. 2024, eq. 5:
    guidance where ``sigma in (sigma_lo, sigma_hi]``, the conditional prediction elsewhere)."""
    sigma = noise_level(model, t)
    lo, hi = interval
    return (sigma > lo) & (sigma <= hi)
