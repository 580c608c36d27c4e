"""Small-matrix helpers of the phase-space SDEs: per-coordinate ``k x k`` blocks applied to states ``(B, k C, ...)``,
PSD checks and square roots, block Gaussian log-densities, and a ``unique`` that survives forward-mode AD.

A state of ``C`` data channels and ``k`` components (``k = 2``: data ``x`` and momentum ``m``) has ``k C`` channels,
the components concatenated along dimension 1; :func:`state_blocks` views it as ``(B, k, n)`` and
:func:`apply_blocks` multiplies every coordinate by the same ``k x k`` matrix (or one per example).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def as_matrix(name: str, value: Sequence | Tensor, k: int | None = None) -> Tensor:
    """``value`` as a finite square float64 matrix (a scalar becomes ``1 x 1``), ``k x k`` when ``k`` is given;
    ``ValueError`` naming ``name`` otherwise. Checks the matrices of :class:`~scoresde.sdes.RecipeSDE`."""
    m = torch.as_tensor(value, dtype=torch.float64)
    if m.dim() == 0:
        m = m.reshape(1, 1)
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square k x k matrix, got shape {tuple(m.shape)}")
    if k is not None and m.shape[0] != k:
        raise ValueError(f"{name} must be {k} x {k} like D, got {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError(f"{name} must be finite, got {m.tolist()}")
    return m


def check_psd(name: str, m: Tensor, definite: bool = False, tol: float = 1e-12) -> None:
    """``ValueError`` naming ``name`` unless ``m`` is symmetric positive semi-definite (definite with ``definite``),
    to ``tol`` relative to its largest entry."""
    asym = float((m - m.T).abs().max())
    if asym > tol * max(1.0, float(m.abs().max())):
        raise ValueError(f"{name} must be symmetric, got {m.tolist()} (max |{name} - {name}^T| = {asym:.3g})")
    low = float(torch.linalg.eigvalsh(m).min())
    if definite and not low > 0:
        raise ValueError(f"{name} must be positive definite, got {m.tolist()} (smallest eigenvalue {low:.3g})")
    if low < -tol * max(1.0, float(m.abs().max())):
        raise ValueError(f"{name} must be positive semi-definite, got {m.tolist()} (smallest eigenvalue {low:.3g})")


def state_blocks(z: Tensor, k: int) -> Tensor:
    """View a state ``(B, k C, ...)`` as ``(B, k, n)`` with ``n = C * prod(...)``."""
    if z.dim() < 2 or z.shape[1] % k:
        raise ValueError(f"a phase-space state needs a channel dimension divisible by {k}, got shape {tuple(z.shape)}")
    return z.reshape(z.shape[0], k, -1)


def apply_blocks(mat: Tensor, z: Tensor) -> Tensor:
    """Apply a per-coordinate ``k x k`` matrix (shape ``(k, k)`` or per example ``(B, k, k)``) to a state ``z``."""
    k = mat.shape[-1]
    zb = state_blocks(z, k)
    mat = mat.to(dtype=z.dtype, device=z.device)
    out = torch.einsum("ij,bjn->bin", mat, zb) if mat.dim() == 2 else torch.einsum("bij,bjn->bin", mat, zb)
    return out.reshape(z.shape)


def unique_times(t: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.unique(t, return_inverse=True)`` (samplers pass one time per batch: one matrix exponential), or
    ``(t, arange)`` where ``unique`` has no derivative: under forward-mode AD in ``t`` (``torch.func.jvp``, the
    FP-Diffusion time derivative), whose dual tensors ``unique`` does not support."""
    try:
        return torch.unique(t, return_inverse=True)
    except (NotImplementedError, RuntimeError):
        return t, torch.arange(t.shape[0], device=t.device)


def sym_sqrt(cov: Tensor) -> Tensor:
    """Symmetric PSD square root ``U diag(sqrt(max(lam, 0))) U^T`` of a batch of covariances (no Cholesky failure)."""
    lam, U = torch.linalg.eigh(cov)
    return U @ torch.diag_embed(lam.clamp_min(0.0).sqrt()) @ U.transpose(-1, -2)



def block_gaussian_logp(zb: Tensor, cov: Tensor) -> Tensor:
    """``sum_n log N(zb[:, :, n]; 0, cov)`` for ``zb`` of shape ``(B, k, n)``."""
    k, n = zb.shape[1], zb.shape[2]
    prec = torch.linalg.inv(cov).to(zb)
    quad = torch.einsum("bin,ij,bjn->b", zb, prec, zb)
    logdet = float(torch.logdet(cov))
    return -0.5 * quad - 0.5 * n * (k * math.log(2 * math.pi) + logdet)
