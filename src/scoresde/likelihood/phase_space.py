"""Deprecated entry points of the augmented likelihood bound of phase-space SDEs: :func:`scoresde.log_likelihood`
and :func:`scoresde.bits_per_dim` now take data for every SDE and return the entropy-corrected bound (Dockhorn et
al. 2022, §3.2 and App. B.4) for PSLD/CLD themselves.

A phase-space model gives the density ``p(x, m_0)`` of the data together with the initial momentum. Since the
momentum is drawn independently from ``q(m_0) = N(0, Sigma_0)``, Jensen's inequality gives

    ``log p(x) >= E_{m_0 ~ q} [log p(x, m_0) - log q(m_0)]``,

with equality for the true model (then ``p(x, m_0) = p(x) q(m_0)`` for every draw).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.adapter import as_model
from ..numerics.checks import check_count
from ..numerics.times import check_eps
from ..sdes.base import SDE, ScoreFn
from .ode import (
    Draws,
    LikelihoodInfo,
    _check_trace,
    _stderr,
    _to_integer_levels,
    check_levels_args,
    repeat_rows,
    solve,
)


@dataclass
class AugmentedLikelihoodInfo:
    """Diagnostics of :func:`augmented_log_likelihood`.

    Attributes:
        stderr: per-example standard error of the bound over the ``n_momentum`` momentum draws (each with its own
            Hutchinson probes); NaN for a single draw.
        joint_logp: per-example ``log p(x, m_0)``, averaged over the draws.
        momentum_logp: per-example ``log q(m_0)``, averaged over the draws (minus the entropy correction).
        ode: the :class:`~scoresde.likelihood.LikelihoodInfo` of the solve (averaged over the draws; ``latent`` of
            the first draw).
    """

    stderr: Tensor
    joint_logp: Tensor
    momentum_logp: Tensor
    ode: LikelihoodInfo


def augmented_log_likelihood(
    sde: SDE,
    score_fn: ScoreFn,
    x: Tensor,
    *,
    n_momentum: int = 1,
    trace: str = "hutchinson-rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    method: str = "dopri5",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, AugmentedLikelihoodInfo]:
    """Deprecated: ``log_likelihood(sde, score_fn, x, n_probes=n_momentum, ...)`` gives the same bound
    ``E_{m_0 ~ q}[log p_eps(x, m_0) - log q(m_0)] <= log p(x)`` (Dockhorn et al. 2022, App. B.4) from the same
    draws; this alias keeps its old info record (``ode`` has the solve's per-row diagnostics)."""
    warnings.warn("augmented_log_likelihood is deprecated: log_likelihood takes data for PSLD/CLD and returns the "
                  "same bound (n_momentum is n_probes)", DeprecationWarning, stacklevel=2)
    return _augmented(sde, score_fn, x, n_momentum=n_momentum, trace=trace, rtol=rtol, atol=atol, eps=eps,
                      method=method, generator=generator)


def _augmented(sde: SDE, score_fn: ScoreFn, x: Tensor, *, n_momentum: int, trace: str, rtol: float, atol: float,
               eps: float, method: str, generator: torch.Generator | None) -> tuple[Tensor, AugmentedLikelihoodInfo]:
    """The bound and the old info record (``ode``: the solve's per-row diagnostics, ``n_momentum B`` rows)."""
    check_count("n_momentum", n_momentum)
    estimator = _check_trace(trace, 1)
    check_eps(eps, sde)
    rows, draws = repeat_rows(x.detach(), n_momentum), Draws(generator, x.shape[0])
    res = solve(sde, as_model(sde, score_fn), rows, n_momentum, draws, estimator=estimator, augment=True, cond={},
                rtol=rtol, atol=atol, eps=eps, method=method, divergence_ad="reverse")
    joint = res.joint.reshape(1, -1)
    ode = LikelihoodInfo(nfe=res.nfe, stderr=_stderr(joint, random=estimator != "exact"),
                         prior_logp=res.prior.flatten(), delta_logp=res.delta.flatten(), latent=res.latent)
    info = AugmentedLikelihoodInfo(stderr=_stderr(res.value, random=True), joint_logp=res.joint.mean(0),
                                   momentum_logp=res.auxiliary.mean(0), ode=ode)
    return res.value.mean(0), info


def augmented_bits_per_dim(
    sde: SDE,
    score_fn: ScoreFn,
    x: Tensor,
    *,
    bits: int = 8,
    data_range: tuple[float, float] = (0.0, 1.0),
    dequantization: str = "uniform",
    n_momentum: int = 1,
    trace: str = "hutchinson-rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    method: str = "dopri5",
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, AugmentedLikelihoodInfo]:
    """Deprecated: :func:`scoresde.bits_per_dim` gives the bits/dim upper bound of a phase-space model
    (``bpd = -bound / (D ln 2) - log2(hi - lo) + bits``, Dockhorn et al. 2022, App. B.4) with one dequantisation per
    draw. This alias keeps its own draws (one dequantisation per example, shared by its ``n_momentum`` momentum
    draws, then the momenta and probes), so its numbers are those it always gave."""
    warnings.warn("augmented_bits_per_dim is deprecated: bits_per_dim takes PSLD/CLD models and returns the "
                  "augmented bound (n_momentum is n_probes)", DeprecationWarning, stacklevel=2)
    if dequantization not in ("uniform", "midpoint"):
        raise ValueError(f"unknown dequantization {dequantization!r}; valid values are: uniform, midpoint")
    lo, hi = check_levels_args(bits, data_range)
    levels = _to_integer_levels(x, bits).to(dtype)
    D = levels[0].numel()
    delta = (torch.rand(levels.shape, generator=generator, dtype=dtype, device=levels.device)
             if dequantization == "uniform" else torch.full_like(levels, 0.5))
    y = lo + (hi - lo) * (levels + delta) / 2**bits
    bound, info = _augmented(sde, score_fn, y, n_momentum=n_momentum, trace=trace, rtol=rtol, atol=atol, eps=eps,
                             method=method, generator=generator)
    scale = 1.0 / (D * math.log(2))
    info.stderr = info.stderr * scale
    return -bound * scale + bits - math.log2(hi - lo), info
