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
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import SDE
from .linalg import apply_blocks, as_matrix, block_gaussian_logp, check_psd, state_blocks, sym_sqrt, unique_times
from .recipe_solvers import RecipeSolverSteps

SCORE_MATCHING_MODES = ("hsm", "dsm")
DECOMP_MODES = ("lower", "upper")


class RecipeSDE(RecipeSolverSteps, SDE):
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
        D = as_matrix("D", D)
        k = D.shape[0]
        Q = as_matrix("Q", Q, k)
        S = as_matrix("stationary_cov", stationary_cov, k)
        check_psd("D", D)
        if float((D - torch.diag(torch.diagonal(D))).abs().max()) > 0:
            raise ValueError(f"D must be diagonal: the SDE interface has a per-channel diffusion G, got {D.tolist()}")
        if float((Q + Q.T).abs().max()) > 1e-12 * max(1.0, float(Q.abs().max())):
            raise ValueError(f"Q must be skew-symmetric (Q^T = -Q), got {Q.tolist()}")
        check_psd("stationary_cov", S, definite=True)
        S0 = torch.zeros(k, k, dtype=torch.float64) if initial_cov is None else as_matrix("initial_cov",
                                                                                           initial_cov, k)
        check_psd("initial_cov", S0)
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
        state_blocks(z, self.k)
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
            return state_blocks(residual, self.k)[:, -1]
        raise ValueError(f"unknown blocks {blocks!r}; valid values are: all, momentum")

    def initial_logp(self, z: Tensor) -> Tensor:
        """``log q(m_0)``: log-density of the auxiliary blocks of ``z_0`` under ``N(0, Sigma_0[1:, 1:])`` (nats).

        The entropy-correction term of the augmented likelihood bound (Dockhorn et al. 2022, §3.2 and App. B).
        """
        cov = self.initial_cov[1:, 1:]
        if self.k < 2 or not bool((torch.linalg.eigvalsh(cov) > 0).all()):
            raise ValueError("initial_logp needs a positive definite initial covariance of the auxiliary blocks")
        return block_gaussian_logp(state_blocks(z, self.k)[:, 1:], cov)

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
        return block_gaussian_logp(state_blocks(z, self.k), self.stationary_cov)

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


    def noise_std(self, t: Tensor) -> Tensor:
        """Standard deviation of the last (momentum) block of the kernel, the annealed-Langevin step scale."""
        return self.kernel_cov(t)[:, -1, -1].sqrt().to(t.dtype)



def langevin_recipe(d_x: float, d_m: float, q: float, M: float, init_ratio: float) -> dict[str, list]:
    """The position-momentum recipe: ``D = diag(d_x, d_m)``, ``Q = q [[0, -1], [1, 0]]``, ``S = diag(1, M)`` and
    initial covariance ``diag(0, init_ratio M)`` (momentum drawn, data given)."""
    return {"D": [[d_x, 0.0], [0.0, d_m]], "Q": [[0.0, -q], [q, 0.0]], "stationary_cov": [[1.0, 0.0], [0.0, M]],
            "initial_cov": [[0.0, 0.0], [0.0, init_ratio * M]]}
