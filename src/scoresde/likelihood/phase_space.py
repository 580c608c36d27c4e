"""The augmented likelihood bound of phase-space SDEs (CLD's entropy correction; Dockhorn et al. 2022, §3.2 and
App. B.4).

A phase-space model gives the density ``p(x, m_0)`` of the data together with the initial momentum. Since the
momentum is drawn independently from ``q(m_0) = N(0, Sigma_0)``, Jensen's inequality gives

    ``log p(x) >= E_{m_0 ~ q} [log p(x, m_0) - log q(m_0)]``,

with equality for the true model (then ``p(x, m_0) = p(x) q(m_0)`` for every draw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..sdes.base import ScoreFn
from ..sdes.phase_space import RecipeSDE
from .ode import LikelihoodInfo, _to_integer_levels, log_likelihood


@dataclass
class AugmentedLikelihoodInfo:
    """Diagnostics of :func:`augmented_log_likelihood`.

    Attributes:
        stderr: per-example standard error of the bound over the ``n_momentum`` momentum draws (each with its own
            Hutchinson probes); NaN for a single draw.
        joint_logp: per-example ``log p(x, m_0)``, averaged over the draws.
        momentum_logp: per-example ``log q(m_0)``, averaged over the draws (minus the entropy correction).
        ode: the :class:`~scoresde.likelihood.LikelihoodInfo` of the single solve over all draws.
    """

    stderr: Tensor
    joint_logp: Tensor
    momentum_logp: Tensor
    ode: LikelihoodInfo


def augmented_log_likelihood(
    sde: RecipeSDE,
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
    """Lower bound ``E_{m_0 ~ q}[log p_eps(x, m_0) - log q(m_0)] <= log p(x)`` (nats, per example) of data ``x``
    under a phase-space model (Dockhorn et al. 2022, §3.2 and App. B.4: the entropy-corrected augmented bound).

    ``log p_eps(x, m_0)`` comes from :func:`scoresde.log_likelihood` on the state ``[x, m_0]``; one ODE solve
    covers all ``n_momentum`` draws per example.

    Args:
        sde: a :class:`~scoresde.sdes.RecipeSDE` (PSLD, CLD) with a positive-definite momentum covariance.
        score_fn: ``score_fn(z, t)`` of the full state.
        x: data ``(B, C, ...)``.
        n_momentum: momentum draws per example; their spread gives ``info.stderr``.
        trace, rtol, atol, eps, method: as for :func:`scoresde.log_likelihood`.
        generator: random generator for the momenta and the probes.
    """
    if not (isinstance(n_momentum, int) and not isinstance(n_momentum, bool) and n_momentum >= 1):
        raise ValueError(f"n_momentum must be a positive integer, got {n_momentum!r}")
    B = x.shape[0]
    z = sde.augment(x.repeat(n_momentum, *([1] * (x.dim() - 1))), generator)  # draw-major: row d*B + b
    joint, info = log_likelihood(sde, score_fn, z, trace=trace, n_probes=1, rtol=rtol, atol=atol, eps=eps,
                                 method=method, generator=generator)
    momentum = sde.initial_logp(z)
    values = (joint - momentum).reshape(n_momentum, B)
    if n_momentum == 1:
        stderr = torch.full_like(values[0], float("nan"))
    else:
        stderr = values.std(0, unbiased=True) / math.sqrt(n_momentum)
    aug = AugmentedLikelihoodInfo(stderr=stderr, joint_logp=joint.reshape(n_momentum, B).mean(0),
                                  momentum_logp=momentum.reshape(n_momentum, B).mean(0), ode=info)
    return values.mean(0), aug


def augmented_bits_per_dim(
    sde: RecipeSDE,
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
    """Bits/dim upper bound of discrete data under a phase-space model: the dequantised (Theis et al. 2016)
    entropy-corrected bound ``bpd = -bound / (D ln 2) - log2(hi - lo) + bits`` (Dockhorn et al. 2022, App. B.4;
    conventions of :func:`scoresde.bits_per_dim`, whose arguments these are).

    Args:
        dequantization: ``"uniform"`` (``delta ~ U[0, 1)``, one draw per example shared by its momentum draws) or
            ``"midpoint"`` (``delta = 1/2``).
        n_momentum: momentum draws per example; ``info.stderr`` (their spread) is in bits/dim.
        Other arguments: as for :func:`scoresde.bits_per_dim` and :func:`augmented_log_likelihood`.
    """
    if dequantization not in ("uniform", "midpoint"):
        raise ValueError(f"unknown dequantization {dequantization!r}; valid values are: uniform, midpoint")
    lo, hi = data_range
    if not hi > lo:
        raise ValueError(f"data_range must be (lo, hi) with hi > lo, got {data_range!r}")
    levels = _to_integer_levels(x, bits).to(dtype)
    D = levels[0].numel()
    delta = (torch.rand(levels.shape, generator=generator, dtype=dtype, device=levels.device)
             if dequantization == "uniform" else torch.full_like(levels, 0.5))
    y = lo + (hi - lo) * (levels + delta) / 2**bits
    bound, info = augmented_log_likelihood(sde, score_fn, y, n_momentum=n_momentum, trace=trace, rtol=rtol,
                                           atol=atol, eps=eps, method=method, generator=generator)
    scale = 1.0 / (D * math.log(2))
    info.stderr = info.stderr * scale
    return -bound * scale + bits - math.log2(hi - lo), info
