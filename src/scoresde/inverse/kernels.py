"""Per-coordinate Gaussian transitions of a linear SDE, for the inverse-problem samplers that jump between arbitrary
times (RePaint's forward re-noising, the SMC sampler's reverse kernel and observation path), and their default grid.

Every SDE of scoresde has a linear-Gaussian kernel that acts on each coordinate alike: a scalar one (``k = 1``: VE,
VP, sub-VP, ``x_t = alpha_t x_0 + sigma_t eps``) or a ``k x k`` block on the ``k`` channel blocks of a phase-space
state (CLD, PSLD). :class:`LinearKernel` answers, for ``s < t``, the transition ``z_t = Psi(t, s) z_s + N(0, V(t, s))``
and the kernel covariance ``Sigma_t`` as ``k x k`` float64 matrices, from the SDE's own schedule queries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..sdes.base import SDE
from ..sdes.linalg import apply_blocks, sym_sqrt

__all__ = ["LinearKernel", "default_grid"]


class LinearKernel:
    """The ``k x k`` per-coordinate Gaussian transitions of ``sde`` (module docstring); ``k = 1`` for scalar SDEs.

    Raises ``ValueError`` for an SDE that exposes neither a scalar schedule (``alpha``, ``sigma``) nor the phase-space
    kernel (``transition``, ``noise_cov``, ``kernel_cov``).
    """

    def __init__(self, sde: SDE) -> None:
        self.sde = sde
        if callable(getattr(sde, "alpha", None)) and callable(getattr(sde, "sigma", None)):
            self.k = 1
            self.scalar = True
        elif all(callable(getattr(sde, name, None)) for name in ("transition", "noise_cov", "kernel_cov")):
            self.k = int(sde.k)
            self.scalar = False
        else:
            raise ValueError(f"{type(sde).__name__} has no linear-Gaussian kernel (alpha/sigma or transition/noise_cov)"
                             "; RePaint and SMC inpainting need one (VE, VP, sub-VP, CLD, PSLD)")

    @staticmethod
    def _time(t: Tensor | float) -> Tensor:
        return torch.as_tensor(t, dtype=torch.float64).reshape(1).cpu()

    def cov(self, t: Tensor | float) -> Tensor:
        """``Sigma_t``: covariance of ``z_t`` given the data under the kernel of the SDE's score-matching mode."""
        tt = self._time(t)
        if self.scalar:
            return (self.sde.sigma(tt) ** 2).reshape(1, 1)
        return self.sde.kernel_cov(tt)[0]

    def transition(self, t: Tensor | float, s: Tensor | float) -> tuple[Tensor, Tensor]:
        """``(Psi, V)`` of ``z_t = Psi z_s + N(0, V)`` for ``s <= t`` (scalar: ``Psi = alpha_t / alpha_s``,
        ``V = sigma_t^2 - Psi^2 sigma_s^2``; phase space: ``exp(-(B(t) - B(s)) A)`` and its noise covariance)."""
        tt, ss = self._time(t), self._time(s)
        if self.scalar:
            psi = torch.exp(self.sde.log_alpha(tt) - self.sde.log_alpha(ss))
            v = self.sde.sigma(tt) ** 2 - psi**2 * self.sde.sigma(ss) ** 2
            return psi.reshape(1, 1), v.clamp_min(0.0).reshape(1, 1)
        return self.sde.transition(tt, ss)[0], self.sde.noise_cov(tt, ss)[0]

    def forward(self, z: Tensor, t: Tensor | float, s: Tensor | float, noise: Tensor) -> Tensor:
        """Re-noise a state from time ``s`` up to ``t >= s``: ``Psi z + V^1/2 noise`` (exact forward transition)."""
        psi, v = self.transition(t, s)
        return apply_blocks(psi, z) + apply_blocks(sym_sqrt(v), noise)

    def bridge(self, t: Tensor | float, s: Tensor | float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The law of ``z_s`` given ``z_t`` and the data (``s < t``; Ho et al. 2020, eq. 7, in matrix form):
        ``N(Phi_s z_0 + K (z_t - Phi_t z_0), P)`` with ``K = Sigma_s Psi^T Sigma_t^-1`` and the posterior covariance
        ``P`` of :meth:`reverse`. Returns ``(Phi_t, Phi_s, K, P)`` (``Phi_t = Psi(t, 0)``, the kernel's mean map)."""
        psi, _ = self.transition(t, s)
        cov_s, cov_t = self.cov(s), self.cov(t)
        gain = torch.linalg.solve(cov_t, psi @ cov_s).T  # Sigma_s Psi^T Sigma_t^-1 (covariances are symmetric)
        post = cov_s - gain @ psi @ cov_s
        return self.transition(t, 0.0)[0], self.transition(s, 0.0)[0], gain, 0.5 * (post + post.T)

    def reverse(self, t: Tensor | float, s: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        """The Gaussian reverse step from ``t`` to ``s < t`` given the score at ``z_t``:
        ``z_s ~ N(Psi^-1 (z_t + V score), P)`` with the posterior covariance
        ``P = Sigma_s - Sigma_s Psi^T Sigma_t^-1 Psi Sigma_s`` (Ho et al. 2020, eq. 7, in matrix form; the mean is
        Tweedie's formula for ``z_s`` given ``z_t``). Returns ``(Psi^-1, V, P)``."""
        psi, v = self.transition(t, s)
        cov_s, cov_t = self.cov(s), self.cov(t)
        post = cov_s - cov_s @ psi.T @ torch.linalg.solve(cov_t, psi @ cov_s)
        return torch.linalg.inv(psi), v, 0.5 * (post + post.T)


def default_grid(sde: SDE, grid: str | None) -> str:
    """``grid``, or by default ``logSNR`` for scalar schedules and ``quadratic`` for phase-space SDEs: both put small
    steps near ``eps``, where the Gaussian reverse kernel :meth:`LinearKernel.reverse` is least accurate (on the
    0.85/0.15 mixture the SMC weight error at 100 VP steps is 0.16 on the uniform grid, 0.02 on logSNR)."""
    if grid is not None:
        return grid
    return "logSNR" if callable(getattr(sde, "lambda_t", None)) else "quadratic"
