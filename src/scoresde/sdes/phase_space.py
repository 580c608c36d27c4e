"""Phase-space diffusions: the linear "complete recipe" SDE and its instances PSLD and CLD.

The recipe (Ma et al. 2015; Pandey & Mandt 2023, "A Complete Recipe for Diffusion Generative Models",
§3) with a quadratic Hamiltonian ``H(z) = 1/2 z^T S^-1 z`` (``S`` the stationary covariance) is

    ``dz = -beta(t) (D + Q) S^-1 z dt + sqrt(2 beta(t) D) dW``,

``D`` positive semi-definite and ``Q`` skew-symmetric, given per coordinate as small ``k x k`` matrices (``k = 2``:
data ``x`` and momentum ``m``; ``k = 1`` with ``D = 1/2``, ``S = 1`` is VP). Whatever ``D`` and ``Q``, ``N(0, S)`` is
stationary: ``-A S - S A^T + 2 D = 0`` for ``A = (D + Q) S^-1`` because ``Q^T = -Q``.

With ``B(t) = int_0^t beta`` the kernel is linear-Gaussian: ``z_t = Phi(t) z_0 + noise``, ``Phi(t) = exp(-B(t) A)``
and ``Cov(noise) = S - Phi S Phi^T`` (stationarity), so ``Cov(z_t | ...) = S + Phi (Sigma_0 - S) Phi^T`` for an
initial covariance ``Sigma_0``. For small ``B(t) |A|`` the noise covariance is summed from its Taylor series instead
(the subtraction loses the ``O(B^3)`` position variance of CLD to cancellation).

State layout: the ``k`` components are concatenated along dimension 1, ``z = [x, m]``; a state of ``C`` data
channels has ``k C`` channels. The diffusion ``G`` of :meth:`RecipeSDE.sde` is per channel, which is why ``D`` must be
diagonal (the generic reverse SDE multiplies the score by ``G^2`` channel-wise).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import SDE

SCORE_MATCHING_MODES = ("hsm", "dsm")
#: the deterministic DDIM flows of phase-space SDEs (:meth:`RecipeSDE.ddim_step`)
DDIM_FLOWS = ("kernel", "probability_flow")
DECOMP_MODES = ("lower", "upper")


def _as_matrix(name: str, value: Sequence | Tensor, k: int | None = None) -> Tensor:
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


def _check_psd(name: str, m: Tensor, definite: bool = False, tol: float = 1e-12) -> None:
    asym = float((m - m.T).abs().max())
    if asym > tol * max(1.0, float(m.abs().max())):
        raise ValueError(f"{name} must be symmetric, got {m.tolist()} (max |{name} - {name}^T| = {asym:.3g})")
    low = float(torch.linalg.eigvalsh(m).min())
    if definite and not low > 0:
        raise ValueError(f"{name} must be positive definite, got {m.tolist()} (smallest eigenvalue {low:.3g})")
    if low < -tol * max(1.0, float(m.abs().max())):
        raise ValueError(f"{name} must be positive semi-definite, got {m.tolist()} (smallest eigenvalue {low:.3g})")


def _blocks(z: Tensor, k: int) -> Tensor:
    """View a state ``(B, k C, ...)`` as ``(B, k, n)`` with ``n = C * prod(...)``."""
    if z.dim() < 2 or z.shape[1] % k:
        raise ValueError(f"a phase-space state needs a channel dimension divisible by {k}, got shape {tuple(z.shape)}")
    return z.reshape(z.shape[0], k, -1)


def apply_blocks(mat: Tensor, z: Tensor) -> Tensor:
    """Apply a per-coordinate ``k x k`` matrix (shape ``(k, k)`` or per example ``(B, k, k)``) to a state ``z``."""
    k = mat.shape[-1]
    zb = _blocks(z, k)
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


class RecipeSDE(SDE):
    """The linear complete-recipe SDE ``dz = -beta(t) (D + Q) S^-1 z dt + sqrt(2 beta(t) D) dW`` (Pandey & Mandt
    2023, §3; Ma et al. 2015), ``beta(t) = beta_min + t (beta_max - beta_min)``, stationary law ``N(0, S)``.

    Args:
        D: ``k x k`` diffusion matrix, symmetric PSD and diagonal (the SDE interface has a per-channel ``G``).
        Q: ``k x k`` skew-symmetric matrix (the conservative, Hamiltonian part).
        stationary_cov: ``S``, ``k x k`` symmetric positive definite; also the prior ``N(0, S)`` at ``T``.
        beta_min, beta_max: ``beta(0)`` and ``beta(1)``; ``beta_max >= beta_min > 0``.
        initial_cov: ``Sigma_0``, the ``k x k`` covariance of ``z_0`` given the data (e.g. ``diag(0, kappa M)``: the
            momentum drawn as ``N(0, kappa M)``); zero by default.
        score_matching: ``"hsm"`` (hybrid score matching: the perturbation kernel conditions on the data only, so
            its covariance starts at ``Sigma_0``; Dockhorn et al. 2022, §3.2) or ``"dsm"`` (the kernel conditions
            on the whole ``z_0``, covariance starting at ``0``). :meth:`marginal_prob`, the losses and the
            epsilon-to-score conversion all read it, so training and sampling use the same covariance.
        decomp_mode: the factor returned as ``std`` by :meth:`marginal_prob`: ``"lower"`` (Cholesky ``L L^T``)
            or ``"upper"`` (upper-triangular ``U U^T``), as PSLD's ``decomp_mode``.
        N: number of discretisation steps (default sampler grids).
        T: end time.
        series_threshold: below ``B(t) * max|A|`` of this value the noise covariance is summed from its Taylor
            series (exact in every entry) instead of ``S - Phi S Phi^T`` (which cancels); see the module docstring.
    """

    def __init__(
        self,
        D: Sequence | Tensor,
        Q: Sequence | Tensor,
        stationary_cov: Sequence | Tensor,
        *,
        beta_min: float,
        beta_max: float,
        initial_cov: Sequence | Tensor | None = None,
        score_matching: str = "hsm",
        decomp_mode: str = "lower",
        N: int = 1000,
        T: float = 1.0,
        series_threshold: float = 0.5,
    ) -> None:
        super().__init__(N, T)
        D = _as_matrix("D", D)
        k = D.shape[0]
        Q = _as_matrix("Q", Q, k)
        S = _as_matrix("stationary_cov", stationary_cov, k)
        _check_psd("D", D)
        if float((D - torch.diag(torch.diagonal(D))).abs().max()) > 0:
            raise ValueError(f"D must be diagonal: the SDE interface has a per-channel diffusion G, got {D.tolist()}")
        if float((Q + Q.T).abs().max()) > 1e-12 * max(1.0, float(Q.abs().max())):
            raise ValueError(f"Q must be skew-symmetric (Q^T = -Q), got {Q.tolist()}")
        _check_psd("stationary_cov", S, definite=True)
        S0 = torch.zeros(k, k, dtype=torch.float64) if initial_cov is None else _as_matrix("initial_cov",
                                                                                           initial_cov, k)
        _check_psd("initial_cov", S0)
        for name, v in (("beta_min", beta_min), ("beta_max", beta_max)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        if beta_max < beta_min:
            raise ValueError(f"beta_max ({beta_max}) must be >= beta_min ({beta_min})")
        if score_matching not in SCORE_MATCHING_MODES:
            raise ValueError(f"unknown score_matching {score_matching!r}; valid values are: "
                             f"{', '.join(SCORE_MATCHING_MODES)}")
        if decomp_mode not in DECOMP_MODES:
            raise ValueError(f"unknown decomp_mode {decomp_mode!r}; valid values are: {', '.join(DECOMP_MODES)}")
        if not series_threshold > 0:
            raise ValueError(f"series_threshold must be positive, got {series_threshold!r}")
        self.D, self.Q, self.stationary_cov, self.initial_cov = D, Q, S, S0
        self.k = k
        self.beta_0, self.beta_1 = float(beta_min), float(beta_max)
        self.score_matching, self.decomp_mode = score_matching, decomp_mode
        self.series_threshold = float(series_threshold)
        self.stationary_prec = torch.linalg.inv(S)
        self.A = (D + Q) @ self.stationary_prec  # drift matrix: f = -beta(t) A z
        self.A_reverse_linear = (D - Q) @ self.stationary_prec  # linear part of the split reverse SDE (SSCS)
        self._stationary_chol = torch.linalg.cholesky(S)

    # -- schedule -----------------------------------------------------------------------------------
    @property
    def beta_min(self) -> float:
        """``beta(0)``."""
        return self.beta_0

    @property
    def beta_max(self) -> float:
        """``beta(1)``."""
        return self.beta_1

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = beta_min + t (beta_max - beta_min)``."""
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def beta_integral(self, t: Tensor) -> Tensor:
        """``B(t) = int_0^t beta = beta_min t + 1/2 (beta_max - beta_min) t^2``."""
        return self.beta_0 * t + 0.5 * (self.beta_1 - self.beta_0) * t**2

    # -- state layout -------------------------------------------------------------------------------
    def state_shape(self, data_shape: Sequence[int]) -> tuple[int, ...]:
        """``(B, k C, ...)`` for data ``(B, C, ...)``."""
        shape = tuple(int(s) for s in data_shape)
        if len(shape) < 2:
            raise ValueError(f"data shape must be (B, C, ...), got {shape}")
        return (shape[0], self.k * shape[1], *shape[2:])

    def data_part(self, z: Tensor) -> Tensor:
        """The first of the ``k`` channel blocks: the data ``x`` of ``z = [x, m]``."""
        _blocks(z, self.k)
        return z[:, : z.shape[1] // self.k]

    def augment(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``z_0 = [x, 0, ...] + chol(Sigma_0) eps``: a state drawn from the initial law given data ``x``."""
        zeros = torch.zeros_like(x)
        z = torch.cat([x] + [zeros] * (self.k - 1), dim=1)
        eps = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        return z + apply_blocks(sym_sqrt(self.initial_cov), eps)

    # -- auxiliary variables: what losses, likelihoods and metrics ask of every SDE ------------------------
    @property
    def has_auxiliary(self) -> bool:
        """``True`` when the state has blocks besides the data (``k > 1``)."""
        return self.k > 1

    @property
    def fd_min_time(self) -> float:
        """``1e-2``: below it the stiff kernel makes finite differences in ``t`` of even the exact score inaccurate
        (the exact PSLD/CLD mixture score's finite-difference FPE residual is ``1e4`` at ``t = 1e-3``, ``0.6`` at
        ``1e-2``; benchmarks/RESULTS.md)."""
        return 1e-2

    @property
    def random_initial_state(self) -> bool:
        """``True`` in DSM mode (``z_0 = [x, m_0]`` with a drawn momentum), ``False`` for HSM."""
        return self.score_matching == "dsm"

    def initial_state(self, x: Tensor, auxiliary: Tensor | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """``z_0`` of the score-matching mode: ``[x, 0]`` for HSM (the kernel covariance starts at ``Sigma_0``),
        ``[x, m_0]`` with ``m_0 ~ N(0, Sigma_0)`` drawn from ``generator`` (or the given ``auxiliary``) for DSM
        (Dockhorn et al. 2022, §3.2)."""
        if self.score_matching == "hsm":
            if auxiliary is not None:
                raise ValueError("HSM marginalises the initial momentum: z_0 = [x_0, 0]; momentum must be None")
            return torch.cat([x] + [torch.zeros_like(x)] * (self.k - 1), dim=1)
        if auxiliary is None:
            return self.augment(x, generator)
        expected = (x.shape[0], (self.k - 1) * x.shape[1], *x.shape[2:])
        if tuple(auxiliary.shape) != expected:
            raise ValueError(f"momentum must have shape {expected}, got {tuple(auxiliary.shape)}")
        return torch.cat([x, auxiliary], dim=1)

    def auxiliary_logp(self, z: Tensor) -> Tensor:
        """:meth:`initial_logp`: ``log q(m_0)`` of the momentum blocks."""
        return self.initial_logp(z)

    def apply_std(self, std: Tensor, v: Tensor, transpose: bool = False) -> Tensor:
        """``L v`` (or ``L^T v``) with the per-example ``k x k`` kernel factor ``std`` of :meth:`marginal_prob`."""
        return apply_blocks(std.transpose(-1, -2) if transpose else std, v)

    def kernel_factor(self, t: Tensor) -> Tensor:
        """``L_t`` with ``L_t L_t^T`` the kernel covariance of the score-matching mode, ``(B, k, k)`` float64."""
        return self.factor(self.kernel_cov(t))

    def score_to_eps(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """``eps = -L_t^T score`` (the kernel factor of the score-matching mode in the score's dtype; Dockhorn et al.
        2022, §3.2)."""
        return -apply_blocks(self.kernel_factor(t).to(score.dtype).transpose(-1, -2), score)

    def eps_to_score(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """``score = -L_t^-T eps`` with the factor in ``eps``'s dtype (Dockhorn et al. 2022, §3.2; Pandey & Mandt
        2023, §3)."""
        L = self.kernel_factor(t).to(eps.dtype)
        return -apply_blocks(torch.linalg.inv(L).transpose(-1, -2), eps)

    def loss_blocks(self, residual: Tensor, blocks: str) -> Tensor:
        """``"all"``: the whole residual; ``"momentum"``: its last block only (the momentum rows, which with the lower
        factor involve only the momentum score: CLD, PSLD with ``Gamma = 0``)."""
        if blocks == "all":
            return residual
        if blocks == "momentum":
            return _blocks(residual, self.k)[:, -1]
        raise ValueError(f"unknown blocks {blocks!r}; valid values are: all, momentum")

    def initial_logp(self, z: Tensor) -> Tensor:
        """``log q(m_0)``: log-density of the auxiliary blocks of ``z_0`` under ``N(0, Sigma_0[1:, 1:])`` (nats).

        The entropy-correction term of the augmented likelihood bound (Dockhorn et al. 2022, §3.2 and App. B).
        """
        cov = self.initial_cov[1:, 1:]
        if self.k < 2 or not bool((torch.linalg.eigvalsh(cov) > 0).all()):
            raise ValueError("initial_logp needs a positive definite initial covariance of the auxiliary blocks")
        return _gaussian_logp(_blocks(z, self.k)[:, 1:], cov)

    # -- kernel -------------------------------------------------------------------------------------
    def transition(self, t: Tensor, s: Tensor | None = None, reverse_linear: bool = False) -> Tensor:
        """Mean map ``Phi(t, s) = exp(-(B(t) - B(s)) A)`` of ``z_t`` given ``z_s`` (``s = 0`` by default), float64.

        With ``reverse_linear=True`` it is that of the linear part ``A' = (D - Q) S^-1`` of the split reverse SDE.
        """
        tau, inverse = self._tau(t, s)
        A = self.A_reverse_linear if reverse_linear else self.A
        return torch.linalg.matrix_exp(-tau[:, None, None] * A.to(tau.device))[inverse]

    def noise_cov(self, t: Tensor, s: Tensor | None = None, reverse_linear: bool = False) -> Tensor:
        """Covariance ``int_s^t Phi(t, r) 2 beta(r) D Phi(t, r)^T dr`` added between ``s`` and ``t``, float64.

        ``S - Phi S Phi^T`` (stationarity of ``N(0, S)``) for large ``B(t) - B(s)``; the Taylor series
        ``sum_n tau^n / n! L^(n-1)(2 D)``, ``L(X) = -A X - X A^T``, below ``series_threshold`` (see the class).
        """
        tau, inverse = self._tau(t, s)
        A = (self.A_reverse_linear if reverse_linear else self.A).to(tau.device)
        S = self.stationary_cov.to(tau.device)
        phi = torch.linalg.matrix_exp(-tau[:, None, None] * A)
        direct = S - phi @ S @ phi.transpose(-1, -2)
        small = tau * float(A.abs().max()) < self.series_threshold
        if bool(small.any()):
            term = 2.0 * self.D.to(tau.device).expand(tau.shape[0], self.k, self.k)
            total = torch.zeros_like(term)
            ts = tau[:, None, None]
            for n in range(1, 40):
                term = term * ts / n if n == 1 else (-(A @ term) - term @ A.T) * ts / n
                total = total + term
            direct = torch.where(small[:, None, None], total, direct)
        return direct[inverse]

    def kernel_cov(self, t: Tensor, initial_cov: Tensor | None = None) -> Tensor:
        """``Cov(z_t | z_0) = Phi Sigma_0 Phi^T + noise_cov(t)`` for an initial covariance ``Sigma_0`` (float64).

        ``initial_cov=None`` uses the kernel of the score-matching mode: ``Sigma_0`` for HSM, ``0`` for DSM.
        """
        if initial_cov is None:
            initial_cov = self.initial_cov if self.score_matching == "hsm" else torch.zeros_like(self.initial_cov)
        phi = self.transition(t)
        return phi @ initial_cov.to(phi) @ phi.transpose(-1, -2) + self.noise_cov(t)

    def factor(self, cov: Tensor) -> Tensor:
        """``L`` with ``L L^T = cov``: lower Cholesky, or upper-triangular for ``decomp_mode="upper"``."""
        if self.decomp_mode == "lower":
            return torch.linalg.cholesky(cov)
        flip = torch.arange(self.k - 1, -1, -1, device=cov.device)
        rev = cov[..., flip, :][..., :, flip]
        return torch.linalg.cholesky(rev)[..., flip, :][..., :, flip]

    def _tau(self, t: Tensor, s: Tensor | None) -> tuple[Tensor, Tensor]:
        """Distinct ``B(t) - B(s)`` values (samplers pass one time for the whole batch) and the gather index."""
        tau = self.beta_integral(t.to(torch.float64))
        if s is not None:
            tau = tau - self.beta_integral(s.to(torch.float64))
        return unique_times(tau)

    # -- the SDE interface --------------------------------------------------------------------------
    def _per_channel(self, values: Tensor, z: Tensor) -> Tensor:
        """``(B, k)`` per-block values to a per-channel tensor ``(B, k C, 1, ...)`` broadcasting against ``z``."""
        C = z.shape[1] // self.k
        out = values[:, :, None].expand(values.shape[0], self.k, C).reshape(values.shape[0], self.k * C)
        return out.reshape(*out.shape, *([1] * (z.dim() - 2))).to(z.dtype)

    def sde(self, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``-beta(t) A z`` and per-channel diffusion ``sqrt(2 beta(t) D_jj)`` (Pandey & Mandt 2023, §3)."""
        beta = self.beta(t.to(torch.float64))
        drift = -apply_blocks(beta[:, None, None] * self.A.to(beta.device), z)
        g = torch.sqrt(2.0 * beta[:, None] * torch.diagonal(self.D).to(beta.device)[None])
        return drift, self._per_channel(g, z)

    def marginal_prob(self, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``Phi(t) z_0`` and the factor ``L_t`` (shape ``(B, k, k)``) of the kernel covariance.

        The covariance is :meth:`kernel_cov` of the score-matching mode (PSLD, Pandey & Mandt 2023, §3 and
        App.; CLD, Dockhorn et al. 2022, App. B.1, in closed form).
        """
        mean = apply_blocks(self.transition(t), z)
        return mean, self.factor(self.kernel_cov(t)).to(z.dtype)

    def prior_sampling(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw states ``(B, k C, ...)`` from ``N(0, S)`` per coordinate (``N(0, I) x N(0, M I)`` for PSLD/CLD)."""
        eps = torch.randn(*shape, generator=generator, dtype=dtype, device=device)
        return apply_blocks(self._stationary_chol, eps)

    def prior_logp(self, z: Tensor) -> Tensor:
        """``log N(z; 0, S)`` summed over coordinates, shape ``(B,)`` (nats)."""
        return _gaussian_logp(_blocks(z, self.k), self.stationary_cov)

    def denoise(self, z: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Tweedie's formula ``E[z_0 | z_t] = Phi^-1 (z_t + Sigma_t score)`` with the kernel covariance (Efron 2011)."""
        phi = self.transition(t)
        return apply_blocks(torch.linalg.inv(phi), z + apply_blocks(self.kernel_cov(t), score))

    def ancestral_step(
        self, z: Tensor, t: Tensor, t_next: Tensor, score: Tensor, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Exact-transition ancestral step from ``t`` to ``s = t_next`` (the matrix form of the DDPM posterior).

        With ``z_t = Psi z_s + noise(V)``: mean ``Psi^-1 (z_t + V score)`` (Tweedie) and covariance
        ``Sigma_s - Sigma_s Psi^T Sigma_t^-1 Psi Sigma_s`` (Ho et al. 2020, eq. 7, in phase space), with
        ``Sigma`` the kernel covariances.
        """
        psi = self.transition(t, t_next)
        V = self.noise_cov(t, t_next)
        mean = apply_blocks(torch.linalg.inv(psi), z + apply_blocks(V, score))
        cov_s, cov_t = self.kernel_cov(t_next), self.kernel_cov(t)
        gain = cov_s @ psi.transpose(-1, -2) @ torch.linalg.inv(cov_t)
        post = cov_s - gain @ psi @ cov_s
        return mean + apply_blocks(sym_sqrt(0.5 * (post + post.transpose(-1, -2))), noise), mean

    def flow_propagator(self, t: Tensor, s: Tensor, *, rtol: float = 1e-10, atol: float = 1e-12) -> Tensor:
        """``U(s, t) = K_s K_t^-1`` for ``K' = (F + 1/2 G G^T Sigma^-1) K``, ``F = -beta A``, ``G G^T = 2 beta D``,
        ``Sigma`` the kernel covariance (float64, ``k x k``).

        ``z_tau = Phi_tau z_0 + K_tau eps`` with a fixed ``eps`` solves the probability-flow ODE for a point mass at
        ``z_0`` exactly when ``K`` solves this linear ODE (then ``K K^T`` follows ``Sigma``'s Lyapunov equation), which
        is gDDIM's condition for a deterministic DDIM that integrates the probability-flow ODE (Zhang et al. 2023,
        §4). For scalar kernels ``U = sigma_s / sigma_t``; in phase space the Cholesky factor ``L_t`` does not solve it
        (it differs by a rotation), so ``L_s L_t^-1`` would follow another, marginal-preserving flow. Integrated with
        scipy's RK45 at ``rtol``/``atol`` (cheap: ``k x k`` matrices)."""
        from scipy.integrate import solve_ivp

        k = self.k
        D = self.D

        def rhs(tau: float, y: object) -> object:
            tt = torch.tensor([tau], dtype=torch.float64)
            beta = float(self.beta(tt))
            M = -beta * self.A + beta * D @ torch.linalg.inv(self.kernel_cov(tt)[0])
            return (M @ torch.as_tensor(y, dtype=torch.float64).reshape(k, k)).reshape(-1).numpy()

        sol = solve_ivp(rhs, (float(t), float(s)), torch.eye(k, dtype=torch.float64).reshape(-1).numpy(), rtol=rtol,
                        atol=atol, method="RK45")
        if not sol.success:
            raise RuntimeError(f"flow propagator from t={float(t)} to s={float(s)} failed: {sol.message}")
        return torch.as_tensor(sol.y[:, -1], dtype=torch.float64).reshape(k, k)

    def ddim_step(self, z: Tensor, t: Tensor, s: Tensor, eps: Tensor, eta: float = 0.0,
                  noise: Tensor | None = None, flow: str = "kernel") -> Tensor:
        """One DDIM step from ``t`` to ``s < t`` in phase space with the exact kernel (the matrix form of DDIM, gDDIM:
        Zhang et al. 2023).

        With ``z_t = Phi_t z_0 + L_t eps`` (the kernel of the score-matching mode) the data estimate is ``z0 = Phi_t^-1
        (z - L_t eps)``. ``eta = 0``: ``z_s = Phi_s z0 + U(s, t) L_t eps`` with the probability-flow propagator ``U``
        (:meth:`flow_propagator`), the first-order exponential integrator of the probability-flow ODE. ``eta > 0``:
        ``z_s = Phi_s z0 + M eps + C^1/2 noise`` with ``C = eta^2 P``, ``P = Sigma_s - Sigma_s Psi^T Sigma_t^-1 Psi
        Sigma_s`` the posterior covariance of ``z_s`` given ``z_t`` and ``z_0`` (``Psi`` the transition ``s -> t``) and
        ``M`` the kernel factor (:meth:`factor`) of ``Sigma_s - C``. Every ``eta`` keeps the kernel marginals
        ``z_s | z_0 ~ N(Phi_s z_0, Sigma_s)`` (the DDIM family's property); with ``eta = 1`` the noise has the DDPM
        posterior covariance, while the mean uses ``M L_t^-1`` in place of the posterior gain ``Sigma_s Psi^T
        Sigma_t^-1`` (equal for scalar kernels; :meth:`ancestral_step` is the exact posterior).

        ``flow`` (``eta = 0``): ``"kernel"`` uses ``U = L_s L_t^-1`` (the Cholesky factors: another deterministic flow
        with the same marginals, since it only rotates the whitened noise of each Gaussian conditional; measured closer
        to the data in few steps), ``"probability_flow"`` the propagator of the probability-flow ODE (converges to the
        ``ode`` sampler's path: use it to decode latents of ``scoresde.sample(..., "ode")``)."""
        tt, ss = (torch.as_tensor(v, dtype=torch.float64).reshape(1) for v in (t, s))
        phi_t, phi_s, L_t = self.transition(tt)[0], self.transition(ss)[0], self.kernel_factor(tt)[0]
        z0 = apply_blocks(torch.linalg.inv(phi_t), z - apply_blocks(L_t, eps))
        if flow not in DDIM_FLOWS:
            raise ValueError(f"unknown flow {flow!r}; valid values are: {', '.join(DDIM_FLOWS)}")
        if eta <= 0:
            K_s = self.kernel_factor(ss)[0] if flow == "kernel" else self.flow_propagator(tt[0], ss[0]) @ L_t
            return apply_blocks(phi_s, z0) + apply_blocks(K_s, eps)
        psi, cov_t, cov_s = self.transition(tt, ss)[0], self.kernel_cov(tt)[0], self.kernel_cov(ss)[0]
        post = cov_s - cov_s @ psi.T @ torch.linalg.inv(cov_t) @ psi @ cov_s
        C = eta**2 * 0.5 * (post + post.T)
        rest = cov_s - C
        return (apply_blocks(phi_s, z0) + apply_blocks(self.factor(0.5 * (rest + rest.T)), eps)
                + apply_blocks(sym_sqrt(C), noise))

    # -- the matrix exponential integrator (DDIM of higher order; sampling/dpm_solver.py) -------------------------
    def lambda_t(self, t: Tensor) -> Tensor:
        """Half log-SNR of the matrix kernel, ``lambda_t = (1/k) log |det(L_t^-1 Phi_t)| = (1/k) (-B(t) tr A - 1/2
        log det Sigma_t)`` (float64; ``Sigma_t = L_t L_t^T`` the kernel covariance of the score-matching mode).

        For ``k = 1`` it is the scalar ``log(alpha_t / sigma_t)``; it decreases in ``t`` (``det Phi`` shrinks, ``det
        Sigma`` grows), so it serves as the integration variable of :meth:`exp_integrator` and the ``logSNR`` and
        ``karras`` grids (``scoresde.numerics.grids``) on PSLD/CLD."""
        t64 = torch.as_tensor(t, dtype=torch.float64)
        flat = t64.reshape(-1)
        logdet_phi = -self.beta_integral(flat) * float(torch.trace(self.A))
        lam = (logdet_phi - 0.5 * torch.logdet(self.kernel_cov(flat))) / self.k
        return lam.reshape(t64.shape)

    def dlambda_dt(self, t: Tensor) -> Tensor:
        """``d lambda / dt = -beta(t) tr(Sigma_t^-1 D) / k``, float64 (differentiate :meth:`lambda_t` with the Lyapunov
        equation ``Sigma' = beta (2 D - A Sigma - Sigma A^T)``; for VP it is ``-beta / (2 sigma^2)``)."""
        t64 = torch.as_tensor(t, dtype=torch.float64)
        flat = t64.reshape(-1)
        cov = self.kernel_cov(flat)
        tr = torch.linalg.solve(cov, self.D.to(cov).expand_as(cov)).diagonal(dim1=-2, dim2=-1).sum(-1)
        return (-self.beta(flat) * tr / self.k).reshape(t64.shape)

    def t_from_lambda(self, lam: Tensor, *, tol: float = 1e-15, max_iter: int = 100) -> Tensor:
        """Inverse of :meth:`lambda_t` on ``(0, T]`` (float64; ``T`` for ``lam <= lambda_T``): Newton's method in
        ``log t`` with :meth:`dlambda_dt` (``lambda ~ -1/2 log t`` near 0, so a few steps), safeguarded by bisection
        of a bracket, until every step is below ``tol`` relative to ``t``."""
        lam64 = torch.as_tensor(lam, dtype=torch.float64)
        target = lam64.reshape(-1)
        T = float(self.T)
        at_end = target <= self.lambda_t(torch.tensor([T], dtype=torch.float64))
        lo, hi = torch.zeros_like(target), torch.full_like(target, T)
        t = torch.full_like(target, 0.5 * T)
        for _ in range(max_iter):
            f = self.lambda_t(t) - target  # lambda decreases in t
            lo, hi = torch.where(f > 0, t, lo), torch.where(f > 0, hi, t)
            newton = t * torch.exp(-f / (self.dlambda_dt(t) * t))
            inside = (newton >= lo) & (newton <= hi) & torch.isfinite(newton)
            t_new = torch.where(at_end, T, torch.where(inside, newton, 0.5 * (lo + hi)))
            done = bool(((t_new - t).abs() <= tol * t_new).all())
            t = t_new
            if done:
                break
        return t.reshape(lam64.shape)

    def exp_integrator(self, s: Tensor, t: Tensor, order: int, prediction: str = "x0",
                       nodes: int = 16) -> tuple[Tensor, list[Tensor]]:
        """Coefficients of the exponential integrator of the kernel flow from ``s`` to ``t`` (``k x k``, float64).

        The kernel ``z_t = Phi_t z_0 + L_t eps`` defines the deterministic flow ``dz/dt = Phi'_t x0_hat + L'_t
        eps_hat`` (the conditional expectation of ``d/dt (Phi_t z_0 + L_t eps)`` given ``z_t``: it keeps every
        marginal, and for scalar kernels it is the probability-flow ODE). Its linear part is exact in the variables
        ``y = L^-1 z`` (``dy = (d G) x0_hat``, ``G = L^-1 Phi``) or ``u = Phi^-1 z`` (``du = (d H) eps_hat``, ``H =
        Phi^-1 L``), the matrix form of DPM-Solver(++) (Lu et al. 2022; gDDIM, Zhang et al. 2023). With the
        prediction ``m`` expanded in ``lambda`` (:meth:`lambda_t`, ``h = lambda_t - lambda_s``) as ``sum_k D_k p_k``,
        ``p_k = ((lambda - lambda_s) / h)^(k-1) / (k-1)!`` (``D_k ~ h^(k-1) m^(k-1)``),

            ``z_t = A z_s + sum_k C_k D_k``,  ``A = L_t L_s^-1`` (``x0``) or ``Phi_t Phi_s^-1`` (``eps``),
            ``C_k = L_t int G'(lambda) p_k(lambda) d lambda`` (or ``Phi_t int H' p_k``),

        integrated by parts (``C_1 = L_t (G_t - G_s)``) and by ``nodes``-point Gauss-Legendre quadrature in
        ``lambda`` for ``k = 2, 3``. For a scalar kernel ``C_k = -alpha_t phi_k(-h)`` (data) and ``-sigma_t phi_k(h)``
        (noise), DPM-Solver's coefficients; ``order = 1`` is the phase-space DDIM step with ``flow="kernel"``
        (:meth:`ddim_step`).

        Args:
            s, t: times ``s > t`` (0-d).
            order: number of coefficients ``C_1..C_order`` (1 to 3).
            prediction: ``"x0"`` (data prediction, DPM-Solver++) or ``"eps"`` (noise prediction, DPM-Solver).
            nodes: Gauss-Legendre nodes in ``lambda`` (16: float64-exact for the steps of a 5-step grid on PSLD).
        """
        if prediction not in ("x0", "eps"):
            raise ValueError(f"unknown prediction {prediction!r}; valid values are: x0, eps")
        if order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
        st = torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(()) for v in (s, t)])

        def pair(times: Tensor) -> tuple[Tensor, Tensor]:
            """(outer, inner) matrices at each time: (L, L^-1 Phi) for x0, (Phi, Phi^-1 L) for eps."""
            L, phi = self.kernel_factor(times), self.transition(times)
            if prediction == "x0":
                return L, torch.linalg.solve(L, phi)
            return phi, torch.linalg.solve(phi, L)

        outer, inner = pair(st)
        A = outer[1] @ torch.linalg.inv(outer[0])
        coefs = [outer[1] @ (inner[1] - inner[0])]
        if order > 1:
            lam_s, lam_t = self.lambda_t(st)
            h = lam_t - lam_s
            x, w = (torch.as_tensor(v, dtype=torch.float64) for v in _gauss_legendre(nodes))
            u = 0.5 * (x + 1.0)  # nodes on [0, 1]: lambda = lambda_s + u h
            G = pair(self.t_from_lambda(lam_s + u * h))[1]
            wq = (0.5 * w)[:, None, None]  # int_0^1 f du
            # int_s^t G' p_k dlambda = p_k(1) G_t - int_0^1 G(u) p_k'(u) du  (p_k as a function of u)
            coefs.append(outer[1] @ (inner[1] - (wq * G).sum(0)))
            if order > 2:
                coefs.append(outer[1] @ (0.5 * inner[1] - (wq * u[:, None, None] * G).sum(0)))
        return A, coefs

    def noise_std(self, t: Tensor) -> Tensor:
        """Standard deviation of the last (momentum) block of the kernel, the annealed-Langevin step scale."""
        return self.kernel_cov(t)[:, -1, -1].sqrt().to(t.dtype)

    # -- the split of the reverse SDE used by SSCS ----------------------------------------------------
    def reverse_linear_step(self, z: Tensor, t: Tensor, t_next: Tensor, noise: Tensor) -> Tensor:
        """Exact solution of the linear part of the reverse SDE from ``t`` down to ``t_next`` (Dockhorn et al. 2022,
        §3.3, in recipe form): ``dz = -beta (D - Q) S^-1 z ds + sqrt(2 beta D) dW`` in reverse time ``s``.

        It is again a recipe SDE (``Q -> -Q``), so ``z <- Phi' z + sqrt(S - Phi' S Phi'^T) noise``.
        """
        phi = self.transition(t, t_next, reverse_linear=True)
        cov = self.noise_cov(t, t_next, reverse_linear=True)
        return apply_blocks(phi, z) + apply_blocks(sym_sqrt(cov), noise)

    def reverse_score_drift(self, z: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """The remaining, score part of the reverse drift: ``2 beta(t) D (score + S^-1 z)`` (Dockhorn et al. 2022,
        §3.3, in recipe form), integrated by Euler in SSCS."""
        beta = self.beta(t.to(torch.float64))
        resid = score + apply_blocks(self.stationary_prec, z)
        return apply_blocks(2.0 * beta[:, None, None] * self.D.to(beta.device), resid)


def _gauss_legendre(n: int) -> tuple[list[float], list[float]]:
    """Gauss-Legendre nodes and weights on ``[-1, 1]`` (numpy's ``leggauss``)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return x.tolist(), w.tolist()


def _gaussian_logp(zb: Tensor, cov: Tensor) -> Tensor:
    """``sum_n log N(zb[:, :, n]; 0, cov)`` for ``zb`` of shape ``(B, k, n)``."""
    k, n = zb.shape[1], zb.shape[2]
    prec = torch.linalg.inv(cov).to(zb)
    quad = torch.einsum("bin,ij,bjn->b", zb, prec, zb)
    logdet = float(torch.logdet(cov))
    return -0.5 * quad - 0.5 * n * (k * math.log(2 * math.pi) + logdet)


def _langevin_recipe(d_x: float, d_m: float, q: float, M: float, init_ratio: float) -> dict[str, list]:
    """The position-momentum recipe: ``D = diag(d_x, d_m)``, ``Q = q [[0, -1], [1, 0]]``, ``S = diag(1, M)`` and
    initial covariance ``diag(0, init_ratio M)`` (momentum drawn, data given)."""
    return {"D": [[d_x, 0.0], [0.0, d_m]], "Q": [[0.0, -q], [q, 0.0]], "stationary_cov": [[1.0, 0.0], [0.0, M]],
            "initial_cov": [[0.0, 0.0], [0.0, init_ratio * M]]}


class PSLD(RecipeSDE):
    """Phase-space Langevin diffusion (Pandey & Mandt 2023, §3.2):

        ``dx = beta/2 (M^-1 m - Gamma x) dt + sqrt(beta Gamma) dW_x``,
        ``dm = beta/2 (-x - nu m) dt + sqrt(M nu beta) dW_m``,

    i.e. the recipe with ``D = 1/2 diag(Gamma, M nu)``, ``Q = 1/2 [[0, -1], [1, 0]]``, ``S = diag(1, M)`` and critical
    damping ``M^-1 = (Gamma - nu)^2 / 4``. ``Gamma = 0`` is CLD with ``beta_CLD = beta / 2`` and ``M^-1 = nu^2 / 4``.

    Args:
        beta_min, beta_max: ``beta(0)``, ``beta(1)`` (8 and 8 in PSLD's CIFAR-10 setup).
        nu: momentum damping (4.01 in PSLD).
        gamma: position damping ``Gamma`` (0.01 in PSLD), ``>= 0``.
        kappa: initial momentum variance ratio: ``m_0 ~ N(0, kappa M I)`` (0.04 in PSLD).
        decomp_mode, score_matching, N, T: see :class:`RecipeSDE`.
    """

    config_name = "psld"
    config_keys = ("beta_min", "beta_max")
    config_options = ("nu", "gamma", "kappa", "decomp_mode", "score_matching")
    phase_space = True

    def __init__(
        self,
        beta_min: float = 8.0,
        beta_max: float = 8.0,
        nu: float = 4.01,
        gamma: float = 0.01,
        kappa: float = 0.04,
        decomp_mode: str = "lower",
        score_matching: str = "hsm",
        N: int = 1000,
        T: float = 1.0,
    ) -> None:
        if not (math.isfinite(gamma) and gamma >= 0 and math.isfinite(nu) and nu >= 0 and gamma != nu):
            raise ValueError(f"PSLD needs finite gamma >= 0, nu >= 0 and gamma != nu, got gamma={gamma}, nu={nu}")
        if not (math.isfinite(kappa) and kappa >= 0):
            raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}")
        self.nu, self.gamma, self.kappa = float(nu), float(gamma), float(kappa)
        self.m_inv = (gamma - nu) ** 2 / 4.0
        M = 1.0 / self.m_inv
        super().__init__(**_langevin_recipe(gamma / 2.0, M * nu / 2.0, 0.5, M, kappa), beta_min=beta_min,
                         beta_max=beta_max, score_matching=score_matching, decomp_mode=decomp_mode, N=N, T=T)

    @property
    def M(self) -> float:
        """Mass ``M = 4 / (Gamma - nu)^2``."""
        return 1.0 / self.m_inv


class CLD(RecipeSDE):
    """Critically-damped Langevin diffusion (Dockhorn et al. 2022, §3, eq. 5):

        ``dx = M^-1 v beta dt``,  ``dv = (-x - Gamma M^-1 v) beta dt + sqrt(2 Gamma beta) dW``,

    i.e. the recipe with ``D = diag(0, Gamma)``, ``Q = [[0, -1], [1, 0]]``, ``S = diag(1, M)``; ``beta(t)`` linear.

    Args:
        m_inv: inverse mass ``M^-1`` (4 in CLD).
        beta_min, beta_max: ``beta(0)``, ``beta(1)`` (CLD: ``beta0 = 4``, ``beta1 = 0`` i.e. constant 4).
        kappa: initial velocity variance ratio: ``v_0 ~ N(0, kappa M I)`` (CLD's ``gamma = 0.04``; named as PSLD's
            ``kappa``, the same quantity, so that ``gamma`` means position damping on both classes).
        friction: ``Gamma``; ``None`` gives critical damping ``Gamma = 2 sqrt(M)``.
        decomp_mode, score_matching, N, T: see :class:`RecipeSDE`.
        gamma: deprecated name of ``kappa`` (accepted with a ``DeprecationWarning``).

    Attributes: ``kappa``, ``friction``, ``m_inv``; ``gamma = 0`` is the position damping (PSLD's ``Gamma``), which CLD
    does not have.
    """

    config_name = "cld"
    config_keys = ("beta_min", "beta_max")
    #: ``gamma``: the deprecated name of ``kappa``, read from old configs (never written by :meth:`model_config`)
    config_options = ("m_inv", "kappa", "gamma", "friction", "decomp_mode", "score_matching")
    phase_space = True

    def __init__(
        self,
        m_inv: float = 4.0,
        beta_min: float = 4.0,
        beta_max: float = 4.0,
        kappa: float = 0.04,
        friction: float | None = None,
        decomp_mode: str = "lower",
        score_matching: str = "hsm",
        N: int = 1000,
        T: float = 1.0,
        *,
        gamma: float | None = None,
    ) -> None:
        if gamma is not None:
            warnings.warn("CLD(gamma=...) is deprecated: the initial velocity variance ratio is CLD(kappa=...), as in "
                          "PSLD (whose gamma is the position damping)", DeprecationWarning, stacklevel=2)
            kappa = gamma
        if not (math.isfinite(m_inv) and m_inv > 0):
            raise ValueError(f"m_inv must be a positive finite number, got {m_inv!r}")
        if not (math.isfinite(kappa) and kappa >= 0):
            raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}")
        M = 1.0 / m_inv
        friction = 2.0 * math.sqrt(M) if friction is None else float(friction)
        if not (math.isfinite(friction) and friction > 0):
            raise ValueError(f"friction must be a positive finite number, got {friction!r}")
        self.m_inv, self.kappa, self.friction, self.gamma = float(m_inv), float(kappa), friction, 0.0
        super().__init__(**_langevin_recipe(0.0, friction, 1.0, M, kappa), beta_min=beta_min, beta_max=beta_max,
                         score_matching=score_matching, decomp_mode=decomp_mode, N=N, T=T)

    def model_config(self) -> dict[str, Any]:
        """:meth:`SDE.model_config` without ``gamma`` (``CLD(gamma=...)`` would set ``kappa``)."""
        out = super().model_config()
        del out["gamma"]
        return out

    @property
    def M(self) -> float:
        """Mass ``M = 1 / m_inv``."""
        return 1.0 / self.m_inv
