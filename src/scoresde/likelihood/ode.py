"""Exact likelihood through the probability-flow ODE (Song et al. 2021, App. D.2).

``log p_eps(x(eps)) = log p_T(x(T)) + int_eps^T div f_pf(x(t), t) dt`` where ``f_pf = f - 1/2 g^2 score`` is the
probability-flow drift (eq. 13) and the divergence is exact (``D`` backward passes) or a Hutchinson–Skilling
estimate ``v^T (d f_pf / d x) v`` with a probe ``v`` fixed along the trajectory (eq. 40).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..sampling.odeint import integrate
from ..sdes.base import SDE, ScoreFn

TRACE_ESTIMATORS = ("hutchinson-rademacher", "hutchinson-gaussian", "exact")
DEQUANTIZATIONS = ("uniform", "midpoint", "none")


@dataclass
class LikelihoodInfo:
    """Diagnostics of a likelihood computation.

    Attributes:
        nfe: number of evaluations of the ODE right-hand side (each one score evaluation plus its divergence).
        stderr: per-example Monte-Carlo standard error of the returned value over the ``n_probes`` independent
            probes (and dequantisation draws for :func:`bits_per_dim`); zero for the exact trace with no
            random dequantisation, NaN when a single random draw gives no error estimate.
        prior_logp: per-example ``log p_T(x(T))``, averaged over probes.
        delta_logp: per-example ``int_eps^T div f_pf dt``, averaged over probes.
        latent: ``x(T)`` of the first probe, the encoding of the data under the ODE.
    """

    nfe: int
    stderr: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    latent: Tensor


def _divergence(out: Tensor, x: Tensor, probe: Tensor | None) -> Tensor:
    """Per-example ``div out`` w.r.t. ``x``: exact when ``probe`` is None, else ``probe^T J probe``."""
    if probe is not None:
        (vjp,) = torch.autograd.grad(out, x, probe)
        return (vjp * probe).flatten(1).sum(1)
    flat = out.flatten(1)
    div = torch.zeros(flat.shape[0], dtype=out.dtype, device=out.device)
    for i in range(flat.shape[1]):
        (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i + 1 < flat.shape[1])
        div = div + grad.flatten(1)[:, i]
    return div


def _probes(x: Tensor, trace: str, generator: torch.Generator | None) -> Tensor | None:
    if trace == "exact":
        return None
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return v.sign() if trace == "hutchinson-rademacher" else v


def log_likelihood(
    sde: SDE,
    score_fn: ScoreFn,
    x: Tensor,
    *,
    trace: str = "hutchinson-rademacher",
    n_probes: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    method: str = "dopri5",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, LikelihoodInfo]:
    """Log-likelihood ``log p_eps(x)`` (nats, per example) by the instantaneous change of variables.

    Solves the probability-flow ODE with the augmented state ``[x, delta_logp]`` from ``eps`` to ``T``
    (Song et al. 2021, App. D.2, eqs. 39–40; Chen et al. 2018, Thm. 1) and adds the prior log-density.

    Args:
        sde: the forward SDE; ``x`` lives in its state space.
        score_fn: ``score_fn(x, t)``.
        x: batch of states at time ``eps``.
        trace: ``"hutchinson-rademacher"`` or ``"hutchinson-gaussian"`` (unbiased single-probe estimates of the
            divergence, one probe per example fixed along the path) or ``"exact"`` (one backward pass per
            dimension: exact, ``D`` times the cost).
        n_probes: independent Hutchinson probes per example; their estimates are averaged and their spread
            gives ``info.stderr``. Must be 1 for the exact trace.
        rtol, atol: tolerances of the adaptive solver (1e-5 as in Score SDE). The solver controls the RMS error
            of the whole batch, as the reference does, so one example's error may exceed the tolerance up to
            ``sqrt(B (D + 1))`` times (measured on the 2-D mixture, B=400: mean 1e-4, worst 6e-3 nats; 10-25x
            less for the worst example solved alone).
        eps: starting time of the ODE (the likelihood is that of ``p_eps``; 1e-5 as in Score SDE).
        method: see :func:`scoresde.sampling.odeint.integrate`.
        generator: random generator for the probes.

    Returns:
        ``(logp, info)`` with ``logp`` of shape ``(B,)`` and a :class:`LikelihoodInfo`.
    """
    _check_trace(trace, n_probes)
    if trace == "exact" and n_probes != 1:
        raise ValueError(f"the exact trace is deterministic: n_probes must be 1, got {n_probes}")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    B = x.shape[0]
    xr = x.detach().repeat(n_probes, *([1] * (x.dim() - 1)))  # probe-major: row p*B + b
    probe = _probes(xr, trace, generator)
    rsde = sde.reverse(score_fn, probability_flow=True)
    D = xr[0].numel()

    def rhs(t: float, state: Tensor) -> Tensor:
        with torch.enable_grad():
            xt = state[:, :D].reshape(xr.shape).detach().requires_grad_(True)
            vec_t = torch.full((xt.shape[0],), t, dtype=xt.dtype, device=xt.device)
            drift = rsde.sde(xt, vec_t)[0]
            div = _divergence(drift, xt, probe)
        return torch.cat([drift.detach().flatten(1), div.detach()[:, None]], dim=1)

    state0 = torch.cat([xr.flatten(1), torch.zeros(xr.shape[0], 1, dtype=xr.dtype, device=xr.device)], dim=1)
    state_T, nfe = integrate(rhs, state0, eps, sde.T, rtol=rtol, atol=atol, method=method)
    latent = state_T[:, :D].reshape(xr.shape)
    delta = state_T[:, D]
    prior = sde.prior_logp(latent)
    logp = (prior + delta).reshape(n_probes, B)
    stderr = _stderr(logp, random=trace != "exact")
    info = LikelihoodInfo(
        nfe=nfe,
        stderr=stderr,
        prior_logp=prior.reshape(n_probes, B).mean(0),
        delta_logp=delta.reshape(n_probes, B).mean(0),
        latent=latent[:B],
    )
    return logp.mean(0), info


def _check_trace(trace: str, n_probes: int) -> None:
    """Reject an unknown trace estimator or a probe count that is not a positive integer."""
    if trace not in TRACE_ESTIMATORS:
        raise ValueError(f"unknown trace estimator {trace!r}; valid estimators are: {', '.join(TRACE_ESTIMATORS)}")
    if not (isinstance(n_probes, int) and not isinstance(n_probes, bool) and n_probes >= 1):
        raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")


def _stderr(values: Tensor, random: bool) -> Tensor:
    """Standard error of the mean over the first dimension (NaN for one random draw, 0 if not random)."""
    n = values.shape[0]
    if not random:
        return torch.zeros_like(values[0])
    if n == 1:
        return torch.full_like(values[0], float("nan"))
    return values.std(0, unbiased=True) / math.sqrt(n)


def _to_integer_levels(x: Tensor, bits: int) -> Tensor:
    """Integer levels ``k in {0, ..., 2^bits - 1}`` from an integer tensor or a float tensor ``k / (2^bits - 1)``."""
    levels = 2**bits - 1
    if not x.is_floating_point():
        k = x.to(torch.int64)
    else:
        if not torch.isfinite(x).all():
            raise ValueError("data for bits_per_dim contain NaN or infinite values")
        scaled = x.to(torch.float64) * levels
        k = torch.round(scaled)
        # Off-grid by more than the rounding error of x's dtype (at least 1e-3 of a level, at most 1/4): not levels.
        tol = min(0.25, max(1e-3, 4 * levels * torch.finfo(x.dtype).eps))
        off = float((k - scaled).abs().max())
        if off > tol:
            raise ValueError(f"float data for bits_per_dim must be {bits}-bit levels k/{levels} in [0, 1] (a value "
                             f"is {off:.3g} levels off the grid); pass the integer pixel values instead")
        k = k.to(torch.int64)
    if k.min() < 0 or k.max() > levels:
        raise ValueError(f"data levels must lie in [0, {levels}] for bits={bits}, got [{int(k.min())}, {int(k.max())}]")
    return k


def bits_per_dim(
    sde: SDE,
    score_fn: ScoreFn,
    x: Tensor,
    *,
    bits: int = 8,
    data_range: tuple[float, float] = (0.0, 1.0),
    dequantization: str = "uniform",
    trace: str = "hutchinson-rademacher",
    n_probes: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    method: str = "dopri5",
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, LikelihoodInfo]:
    """Bits per dimension of discrete ``bits``-bit data under the model (Song et al. 2021, App. D.2; Theis 2016).

    Pixel levels ``k`` are dequantised to ``u = (k + delta) / 2^bits`` in ``[0, 1]`` and mapped to the model's
    range ``y = lo + (hi - lo) u``. Then ``-log2 P(k) <= -log2 p_model(y) - D log2(hi - lo) + D bits``, so

        ``bpd = -log p_model(y) / (D ln 2) - log2(hi - lo) + bits``.

    For ``data_range=(-1, 1)`` and 8 bits the offset is 7, for ``(0, 1)`` it is 8 (the reference's
    ``offset = 7 - inverse_scaler(-1)``).

    Args:
        x: integer pixel levels (e.g. ``uint8``) or floats ``k / (2^bits - 1)`` as from ``ToTensor``.
        bits: bits per pixel value (8 for standard images).
        data_range: ``(lo, hi)``, the interval the model's data live in (``(-1, 1)`` for centered data).
        dequantization: ``"uniform"`` (``delta ~ U[0, 1)``, a variational bound; Theis et al. 2016),
            ``"midpoint"`` (``delta = 1/2``) or ``"none"`` (``u = k / (2^bits - 1)``, the reference's
            evaluation without dequantisation).
        dtype: dtype of the model input.
        Other arguments: as for :func:`log_likelihood`. Each probe gets its own dequantisation draw, so
            ``info.stderr`` (in bits/dim) covers both sources of randomness.

    Returns:
        ``(bpd, info)`` with per-example ``bpd`` of shape ``(B,)``.
    """
    if dequantization not in DEQUANTIZATIONS:
        raise ValueError(f"unknown dequantization {dequantization!r}; valid values are: {', '.join(DEQUANTIZATIONS)}")
    _check_trace(trace, n_probes)
    if not (isinstance(bits, int) and not isinstance(bits, bool) and bits >= 1):
        raise ValueError(f"bits must be a positive integer, got {bits!r}")
    lo, hi = data_range
    if not hi > lo:
        raise ValueError(f"data_range must be (lo, hi) with hi > lo, got {data_range!r}")
    k = _to_integer_levels(x, bits).to(dtype)
    B, D = k.shape[0], k[0].numel()
    kr = k.repeat(n_probes, *([1] * (k.dim() - 1)))
    if dequantization == "uniform":
        u = (kr + torch.rand(kr.shape, generator=generator, dtype=dtype, device=kr.device)) / 2**bits
    elif dequantization == "midpoint":
        u = (kr + 0.5) / 2**bits
    else:
        u = kr / (2**bits - 1)
    y = lo + (hi - lo) * u
    # One likelihood solve over all probes; each row carries its own dequantisation and probe.
    logp, info = log_likelihood(sde, score_fn, y, trace=trace, n_probes=1, rtol=rtol, atol=atol, eps=eps,
                                method=method, generator=generator)
    offset = bits - math.log2(hi - lo)
    bpd = (-logp / (D * math.log(2)) + offset).reshape(n_probes, B)
    random = dequantization == "uniform" or trace != "exact"
    info.stderr = _stderr(bpd, random=random)
    info.prior_logp = info.prior_logp.reshape(n_probes, B).mean(0)
    info.delta_logp = info.delta_logp.reshape(n_probes, B).mean(0)
    info.latent = info.latent[:B]
    return bpd.mean(0), info
