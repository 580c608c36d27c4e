"""Latent codes: the probability-flow ODE run forward (Song et al. 2021, §4.3, "uniquely identifiable encoding")
and spherical interpolation between codes.

:func:`encode` integrates ``dz = [f - 1/2 G G^T score] dt`` from ``eps`` to ``T``; decoding is the same ODE run back,
``scoresde.sample(model, sampler="ode", x_T=code)`` with the same tolerances and ``eps`` (or ``ddim``/``dpm_solver``
with enough steps). With an exact score the map is a bijection whose inverse is the decoder, so the round-trip error
measures the solver's tolerance (reported in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel, check_cond, model_and_arguments
from ..numerics.checks import DATA_TENSOR, check_choice, check_tensor
from ..numerics.odeint import ADAPTIVE_METHODS, integrate
from ..numerics.times import resolve_eps
from ..sdes.base import SDE
from .common import counting

__all__ = ["EncodeInfo", "encode", "interpolate"]


@dataclass
class EncodeInfo:
    """NFE (model calls) and the solver settings of an :func:`encode` call."""

    nfe: int
    rtol: float
    atol: float
    method: str
    eps: float


def encode(
    sde: SDE | DiffusionModel,
    score_fn: Any = None,
    x: Tensor | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    eps: float | None = None,
    auxiliary: Tensor | None = None,
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, EncodeInfo]:
    """The latent code ``z_T`` of data ``x``: the probability-flow ODE (Song et al. 2021, eq. 13) integrated forward
    from ``x`` at time ``eps`` to ``T``.

    Forms ``encode(sde, score_fn, x, ...)`` and ``encode(model, x, ...)``. Decode with ``scoresde.sample(model,
    sampler="ode", x_T=z, rtol=..., atol=..., eps=...)`` (same settings): it integrates the same ODE back to ``eps``
    and returns the data part. On phase-space SDEs (CLD, PSLD) the code is a state: the auxiliary blocks at ``eps``
    are ``auxiliary`` (shape of ``x`` times ``k - 1`` channel blocks) or, by default, a draw of the SDE's initial law
    (``sde.augment``, from ``generator``), so codes of phase-space models are random unless ``auxiliary`` is fixed.

    Args:
        rtol, atol: tolerances of the adaptive solver (``1e-5`` each, Score SDE's and the ``ode`` sampler's
            defaults; the round trip error scales with them).
        method: an adaptive method of :func:`scoresde.numerics.odeint.integrate` (``dopri5``: RK45 on the tensor's
            device; ``scipy-RK45``: the reference's solver).
        eps: the start time (the data are taken as ``x_eps``); ``None``: the SDE's ``sampling_eps`` (``1e-3``;
            EDM: ``sigma_min``), the ``ode`` sampler's end time.
        auxiliary: phase-space only: the auxiliary blocks of the start state.
        cond: conditioning of the model (``{"class_labels": y}``), batch-first.
        generator: random generator for the auxiliary draw of phase-space SDEs (unused otherwise).
        return_info: also return an :class:`EncodeInfo` (NFE and settings).

    Use it for "uniquely identifiable" codes (interpolation, manipulation); for likelihoods use
    :func:`scoresde.log_likelihood`, which integrates the same ODE with the divergence.
    """
    model, (x,) = model_and_arguments(sde, score_fn, x)
    check_tensor("x", x, DATA_TENSOR, nonempty=True, finite=True)
    sde = model.sde
    eps = resolve_eps(sde, eps)
    check_choice("ODE method", method, ADAPTIVE_METHODS)
    if sde.has_auxiliary:
        if auxiliary is None:
            z = sde.augment(x, generator)
        else:
            z = torch.cat([x, auxiliary.to(x)], dim=1)
            if tuple(z.shape) != sde.state_shape(tuple(x.shape)):
                raise ValueError(f"auxiliary has shape {tuple(auxiliary.shape)}; the state of data {tuple(x.shape)} "
                                 f"needs auxiliary blocks making {sde.state_shape(tuple(x.shape))}")
    elif auxiliary is not None:
        raise ValueError(f"{type(sde).__name__} has no auxiliary variables; auxiliary must be None")
    else:
        z = x
    counted = counting(model, check_cond(cond, x.shape[0]))
    rsde = sde.reverse(counted.score, probability_flow=True)

    def drift(t: float, state: Tensor) -> Tensor:
        return rsde.sde(state, torch.full((state.shape[0],), t, dtype=state.dtype, device=state.device))[0]

    with torch.no_grad():
        code, _ = integrate(drift, z, eps, sde.T, rtol=rtol, atol=atol, method=method)
    if return_info:
        return code, EncodeInfo(nfe=counted.calls, rtol=rtol, atol=atol, method=method, eps=eps)
    return code


def interpolate(z0: Tensor, z1: Tensor, n: int, *, dot_threshold: float = 0.9995) -> Tensor:
    """Spherical linear interpolation (slerp; Shoemake 1985) between codes ``z0`` and ``z1`` at ``n`` evenly spaced
    fractions ``a`` in ``[0, 1]``: ``sin((1 - a) theta) / sin(theta) z0 + sin(a theta) / sin(theta) z1`` with
    ``theta`` the angle between the two codes, per batch row (the angle is taken over all dimensions but the first).

    Gaussian codes of high dimension concentrate on a sphere, where linear interpolation would pass through the
    low-norm interior that the prior never produces (Song, Meng & Ermon 2021 interpolate DDIM codes this way). Rows
    whose cosine exceeds ``dot_threshold`` (nearly parallel) are interpolated linearly. Returns shape
    ``(n, *z0.shape)``: ``out[0] = z0``, ``out[-1] = z1``; decode ``out.flatten(0, 1)`` as one batch.
    """
    check_tensor("z0", z0, finite=True, nonempty=True)  # a NaN code would make every frame NaN (the angle)
    check_tensor("z1", z1, finite=True, nonempty=True)
    if z0.shape != z1.shape or z0.dim() < 2:
        raise ValueError(f"z0 and z1 must have the same shape (B, ...), got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (the two ends included), got {n!r}")
    if not 0.0 < dot_threshold <= 1.0:
        raise ValueError(f"dot_threshold must lie in (0, 1], got {dot_threshold!r}")
    a = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    f0, f1 = z0.reshape(z0.shape[0], -1).to(torch.float64), z1.reshape(z1.shape[0], -1).to(torch.float64)
    cos = (f0 * f1).sum(1) / (f0.norm(dim=1) * f1.norm(dim=1)).clamp_min(torch.finfo(torch.float64).tiny)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))  # (B,)
    sin = torch.sin(theta)
    linear = cos > dot_threshold
    safe = torch.where(linear, torch.ones_like(sin), sin)
    w0 = torch.where(linear[None], 1.0 - a[:, None], torch.sin((1.0 - a[:, None]) * theta[None]) / safe[None])
    w1 = torch.where(linear[None], a[:, None], torch.sin(a[:, None] * theta[None]) / safe[None])
    out = w0[..., None] * f0[None] + w1[..., None] * f1[None]
    out[0], out[-1] = f0, f1
    return out.reshape(n, *z0.shape).to(z0.dtype)


