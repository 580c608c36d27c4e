"""VE, VP and sub-VP SDEs of Score SDE (Song et al. 2021, eqs. 9, 11, 29–33 and App. B).

Each is a *scalar* linear SDE: its perturbation kernel is ``x_t = alpha(t) x_0 + sigma(t) eps``, so it is also
a noise schedule (``alpha``, ``sigma``, the half log-SNR ``lambda_t = log(alpha / sigma)`` and its inverse) that
fast solvers read, as DPM-Solver's ``NoiseScheduleVP`` does.

Numerics follow the reference Score SDE PyTorch code op for op so that ``../shared/reference/sde_*.pt``
reproduce; the discrete tables (``discrete_sigmas``, ``discrete_betas``, ...) are float32 like the reference's.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import SDE, batch_broadcast


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


class ScalarSDE(SDE):
    """A linear SDE with scalar coefficients, viewed as the noise schedule ``x_t = alpha(t) x_0 + sigma(t) eps``.

    Provides the schedule queries (``log_alpha``, ``alpha``, ``sigma``, ``lambda_t``, ``t_from_lambda``), the
    Gaussian prior ``N(prior_mean, prior_std^2 I)``, Tweedie denoising and the generic ancestral step.

    Args:
        N: number of discretisation steps.
        T: end time.
        prior_mean: mean of the Gaussian prior, a float or a tensor broadcastable to one example (e.g. a
            per-pixel data mean of shape ``(C, H, W)``). Score SDE uses ``0``; for VE the data mean is the
            exact mean of ``p_T``, for VP/sub-VP the exact mean is ``alpha(T) * data_mean``, close to ``0``.
    """

    scalar_schedule: ClassVar[bool] = True

    def __init__(self, N: int, T: float = 1.0, prior_mean: float | Tensor = 0.0) -> None:
        super().__init__(N, T)
        if isinstance(prior_mean, Tensor):
            if not torch.isfinite(prior_mean).all():
                raise ValueError("prior_mean contains non-finite values")
        elif not (isinstance(prior_mean, (int, float)) and math.isfinite(prior_mean)):
            raise ValueError(f"prior_mean must be a finite float or a tensor, got {prior_mean!r}")
        self.prior_mean = prior_mean

    def model_config(self) -> dict[str, Any]:
        """:meth:`SDE.model_config`; ``ValueError`` also for a nonzero or tensor ``prior_mean`` (no config key)."""
        if isinstance(self.prior_mean, Tensor) or self.prior_mean != 0.0:
            mean = "a tensor" if isinstance(self.prior_mean, Tensor) else self.prior_mean
            raise ValueError(f"{type(self).__name__} has prior_mean={mean}: a run config has no place for a prior "
                             "mean other than 0")
        return super().model_config()

    # -- the noise schedule ------------------------------------------------------------------------
    @abc.abstractmethod
    def log_alpha(self, t: Tensor) -> Tensor:
        """``log alpha(t)``, the log of the mean coefficient of the perturbation kernel."""

    @abc.abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t)``, the standard deviation of the perturbation kernel (the ``std`` of ``marginal_prob``)."""

    @abc.abstractmethod
    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """Inverse of :meth:`lambda_t`: the time at which ``log(alpha / sigma)`` equals ``lam``."""

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior ``p_T``."""

    def alpha(self, t: Tensor) -> Tensor:
        """``alpha(t) = exp(log_alpha(t))``, the mean coefficient of ``x_t`` given ``x_0``."""
        return torch.exp(self.log_alpha(t))

    def lambda_t(self, t: Tensor) -> Tensor:
        """Half log-SNR ``lambda(t) = log alpha(t) - log sigma(t)`` (DPM-Solver, Lu et al. 2022, eq. 3.3)."""
        return self.log_alpha(t) - torch.log(self.sigma(t))

    # -- generic pieces built from the schedule ---------------------------------------------------
    def marginal_prob(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``alpha(t) x`` and std ``sigma(t)`` of ``p_0t(x(t) | x(0) = x)`` (Song et al. 2021, eq. 29)."""
        return batch_broadcast(self.alpha(t), x) * x, self.sigma(t)

    def noise_std(self, t: Tensor) -> Tensor:
        """The marginal standard deviation ``sigma(t)``."""
        return self.sigma(t)

    def score_to_eps(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """``eps = -sigma_t score`` (Song et al. 2021, eq. 29), from ``sigma(t)`` alone."""
        return -batch_broadcast(self.sigma(t), score) * score

    def eps_to_score(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """``score = -eps / sigma_t``, from ``sigma(t)`` alone."""
        return -eps / batch_broadcast(self.sigma(t), eps)

    def prior_sampling(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw from ``N(prior_mean, prior_std^2 I)``; with ``generator=None`` from torch's global RNG."""
        z = torch.randn(*shape, generator=generator, dtype=dtype, device=device) * self.prior_std
        if isinstance(self.prior_mean, Tensor) or self.prior_mean != 0.0:
            z = z + torch.as_tensor(self.prior_mean, dtype=z.dtype, device=z.device)
        return z

    def prior_logp(self, z: Tensor) -> Tensor:
        """``log N(z; prior_mean, prior_std^2 I)`` summed over all but the batch dimension (nats)."""
        if isinstance(self.prior_mean, Tensor) or self.prior_mean != 0.0:
            z = z - torch.as_tensor(self.prior_mean, dtype=z.dtype, device=z.device)
        D = math.prod(z.shape[1:])
        var = self.prior_std**2
        dims = tuple(range(1, z.dim()))
        if var == 1.0:
            return -D / 2.0 * math.log(2 * math.pi) - torch.sum(z**2, dim=dims) / 2.0
        return -D / 2.0 * math.log(2 * math.pi * var) - torch.sum(z**2, dim=dims) / (2 * var)

    def denoise(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Tweedie's formula ``E[x_0 | x_t] = (x_t + sigma(t)^2 score) / alpha(t)`` (Efron 2011)."""
        sigma = batch_broadcast(self.sigma(t), x)
        return (x + sigma**2 * score) / batch_broadcast(self.alpha(t), x)

    def ancestral_step(
        self, x: Tensor, t: Tensor, t_next: Tensor, score: Tensor, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Ancestral step through the exact Gaussian transition between ``t_next = s`` and ``t``.

        With ``a = alpha_t / alpha_s`` and ``v = sigma_t^2 - a^2 sigma_s^2`` the forward transition is
        ``x_t = a x_s + sqrt(v) eps``. The step draws ``x_s ~ N((x_t + v score) / a, v sigma_s^2 / sigma_t^2)``:
        the Tweedie mean of ``x_s`` given ``x_t`` and the DDPM posterior variance (Ho et al. 2020, eq. 7).
        """
        a = torch.exp(self.log_alpha(t) - self.log_alpha(t_next))
        sigma_t, sigma_s = self.sigma(t), self.sigma(t_next)
        v = sigma_t**2 - a**2 * sigma_s**2
        x_mean = (x + batch_broadcast(v, x) * score) / batch_broadcast(a, x)
        std = torch.sqrt((v * sigma_s**2 / sigma_t**2).clamp_min(0.0))
        return x_mean + batch_broadcast(std, x) * noise, x_mean

    def ddim_step(self, x: Tensor, t: Tensor, s: Tensor, eps: Tensor, eta: float = 0.0,
                  noise: Tensor | None = None, flow: str = "kernel") -> Tensor:
        """One DDIM step from ``t`` to ``s < t`` (Song, Meng & Ermon 2021, eq. 12) with the noise prediction ``eps``:
        ``x0 = (x - sigma_t eps) / alpha_t``, ``x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c noise`` with
        ``c = eta sigma_s sqrt(1 - exp(2 (lambda_t - lambda_s)))`` (``eta = 1``: the DDPM posterior std). ``t``, ``s``
        are 0-d times; the coefficients are computed in float64 and cast to ``x``'s dtype. ``flow`` is accepted for the
        phase-space signature: for a scalar kernel both flows are this one (``sigma_s / sigma_t`` is the
        probability-flow propagator)."""
        if flow not in ("kernel", "probability_flow"):
            raise ValueError(f"unknown flow {flow!r}; valid values are: kernel, probability_flow")
        t64, s64 = (torch.as_tensor(v, dtype=torch.float64).reshape(()) for v in (t, s))
        a_t, s_t, a_s, s_s = (v.to(x.dtype) for v in (self.alpha(t64), self.sigma(t64), self.alpha(s64),
                                                       self.sigma(s64)))
        x0 = (x - s_t * eps) / a_t
        if eta <= 0:
            return a_s * x0 + s_s * eps
        shrink = -torch.expm1(2.0 * (self.lambda_t(t64) - self.lambda_t(s64)))  # 1 - (a_t s_s / (a_s s_t))^2
        c = (eta * self.sigma(s64) * torch.sqrt(shrink)).to(x.dtype)
        return a_s * x0 + torch.sqrt((s_s**2 - c**2).clamp_min(0.0)) * eps + c * noise

    def timestep_index(self, t: Tensor) -> Tensor:
        """Index ``i = floor(t (N - 1) / T)`` of the discrete table entry used at time ``t`` (reference rule)."""
        return (t * (self.N - 1) / self.T).long()


class VESDE(ScalarSDE):
    """Variance-exploding SDE ``dx = sqrt(d[sigma^2(t)]/dt) dW`` with ``sigma(t) = sigma_min (sigma_max/sigma_min)^t``.

    Song et al. 2021, eq. 9 and App. B; the SMLD noise conditional model of Song & Ermon 2019 in continuous time.

    Args:
        sigma_min: smallest noise level ``sigma(0)``.
        sigma_max: largest noise level ``sigma(T)``; the prior is ``N(prior_mean, sigma_max^2 I)``.
        N: number of discrete noise levels (SMLD discretisation).
        T: end time.
        prior_mean: see :class:`ScalarSDE`.
    """

    config_name = "vesde"
    config_keys = ("sigma_min", "sigma_max")

    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        N: int = 1000,
        T: float = 1.0,
        prior_mean: float | Tensor = 0.0,
    ) -> None:
        super().__init__(N, T, prior_mean)
        self.sigma_min = _check_positive("sigma_min", sigma_min)
        self.sigma_max = _check_positive("sigma_max", sigma_max)
        if not self.sigma_max > self.sigma_min:
            raise ValueError(f"sigma_max ({sigma_max}) must exceed sigma_min ({sigma_min})")
        self._build_discrete_tables()

    def _build_discrete_tables(self) -> None:
        """The SMLD noise levels ``discrete_sigmas`` (geometric, ``N`` of them, ascending)."""
        self.discrete_sigmas = torch.exp(torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), self.N))

    def original_conventions(self, continuous: bool) -> tuple[str, str]:
        """``('sigma', 'score')`` continuous, ``('sigma_index', 'score')`` discrete (SMLD's noise index)."""
        return ("sigma" if continuous else "sigma_index"), "score"

    @property
    def prior_std(self) -> float:
        """``sigma_max``."""
        return self.sigma_max

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = sigma_min (sigma_max / sigma_min)^(t / T)``."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** (t / self.T)

    def log_alpha(self, t: Tensor) -> Tensor:
        """``0``: the VE SDE has no drift."""
        return torch.zeros_like(t)

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """``t = T (-lambda - log sigma_min) / log(sigma_max / sigma_min)`` since ``lambda = -log sigma(t)``."""
        return self.T * (-lam - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``0`` and diffusion ``sigma(t) sqrt(2 log(sigma_max / sigma_min) / T)`` (eq. 30)."""
        diffusion = self.sigma(t) * math.sqrt(2 * (math.log(self.sigma_max) - math.log(self.sigma_min)) / self.T)
        return torch.zeros_like(x), diffusion

    def marginal_prob(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``x`` and std ``sigma(t)`` (eq. 31)."""
        return x, self.sigma(t)

    def _adjacent_sigmas(self, t: Tensor) -> tuple[Tensor, Tensor]:
        i = self.timestep_index(t)
        sigmas = self.discrete_sigmas.to(t.device)
        sigma = sigmas[i]
        adjacent = torch.where(i == 0, torch.zeros_like(t), sigmas[(i - 1).clamp_min(0)])
        return sigma, adjacent

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """SMLD rule: ``f_i = 0``, ``G_i = sqrt(sigma_i^2 - sigma_{i-1}^2)`` with ``sigma_{-1} = 0`` (App. B)."""
        sigma, adjacent = self._adjacent_sigmas(t)
        return torch.zeros_like(x), torch.sqrt(sigma**2 - adjacent**2)

    def ancestral_step(
        self, x: Tensor, t: Tensor, t_next: Tensor, score: Tensor, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """SMLD ancestral step on the discrete noise levels (Song et al. 2021, eq. 47).

        ``x_mean = x + (sigma_i^2 - sigma_{i-1}^2) score``, std ``sqrt(sigma_{i-1}^2 (sigma_i^2 -
        sigma_{i-1}^2) / sigma_i^2)``; ``t_next`` is not used (the level below ``t`` on the table is).
        """
        sigma, adjacent = self._adjacent_sigmas(t)
        x_mean = x + score * batch_broadcast(sigma**2 - adjacent**2, x)
        std = torch.sqrt((adjacent**2 * (sigma**2 - adjacent**2)) / (sigma**2))
        return x_mean + batch_broadcast(std, x) * noise, x_mean


class _BetaLinearSDE(ScalarSDE):
    """Shared part of VP and sub-VP: ``beta(t) = beta_min + t (beta_max - beta_min)`` and the DDPM tables."""

    def __init__(
        self, beta_min: float, beta_max: float, N: int, T: float, prior_mean: float | Tensor
    ) -> None:
        super().__init__(N, T, prior_mean)
        self.beta_0 = _check_positive("beta_min", beta_min)
        self.beta_1 = _check_positive("beta_max", beta_max)
        if self.beta_1 < self.beta_0:
            raise ValueError(f"beta_max ({beta_max}) must be >= beta_min ({beta_min})")
        self._build_discrete_tables()

    def _build_discrete_tables(self) -> None:
        """The DDPM chain of ``N`` steps: ``beta_i = linspace(beta_min / N, beta_max / N, N)`` and its products."""
        N = self.N
        self.discrete_betas = torch.linspace(self.beta_0 / N, self.beta_1 / N, N)
        self.alphas = 1.0 - self.discrete_betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.sqrt_alphas_cumprod = torch.sqrt(self.alphas_cumprod)
        self.sqrt_1m_alphas_cumprod = torch.sqrt(1.0 - self.alphas_cumprod)

    @property
    def beta_min(self) -> float:
        """``beta(0)``."""
        return self.beta_0

    @property
    def beta_max(self) -> float:
        """``beta(1)``."""
        return self.beta_1

    @property
    def prior_std(self) -> float:
        """``1``."""
        return 1.0

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = beta_min + t (beta_max - beta_min)``."""
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def log_alpha(self, t: Tensor) -> Tensor:
        """``log alpha(t) = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min = -1/2 int_0^t beta``."""
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def _t_from_log_alpha(self, log_alpha: Tensor) -> Tensor:
        # Solve 1/4 (b1-b0) t^2 + 1/2 b0 t + log_alpha = 0 for t >= 0, in the cancellation-free form.
        s = -2.0 * log_alpha
        return 2.0 * s / (torch.sqrt(self.beta_0**2 + 2.0 * (self.beta_1 - self.beta_0) * s) + self.beta_0)

    def require_discrete_chain(self, what: str) -> None:
        """Raise if the DDPM tables are undefined: they need ``beta_max / N < 1`` (``alpha_i = 1 - beta_i > 0``).

        Continuous-time use (Euler–Maruyama, the ODE, DSM) works for any ``N``; only the discrete rules read the
        tables, and they call this first so that a too-small ``N`` is an error instead of NaN samples.
        """
        if self.beta_1 / self.N >= 1.0:
            raise ValueError(f"{what} uses the discrete DDPM chain, which needs beta_max / N < 1 (got "
                             f"{self.beta_1:g} / {self.N} = {self.beta_1 / self.N:.3g}); use N > {self.beta_1:g} (when "
                             "sampling: steps > beta_max, or a predictor that steps in continuous time, e.g. "
                             "euler_maruyama, or the ddim sampler)")

    def langevin_alpha(self, t: Tensor) -> Tensor:
        """The discrete ``alpha_i = 1 - beta_i`` at ``t`` (Song et al. 2021, Alg. 5)."""
        self.require_discrete_chain("the Langevin corrector")
        return self.alphas.to(t.device)[self.timestep_index(t)].to(t.dtype)


class VPSDE(_BetaLinearSDE):
    """Variance-preserving SDE ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW`` (Song et al. 2021, eq. 11).

    The continuous limit of DDPM (Ho et al. 2020). ``discretize`` is the DDPM rule
    ``x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z`` with ``beta_i = linspace(beta_min/N, beta_max/N, N)``.

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        N: number of discrete steps of the DDPM chain.
        T: end time.
        prior_mean: see :class:`ScalarSDE`.
    """

    config_name = "vpsde"
    config_keys = ("beta_min", "beta_max")

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        N: int = 1000,
        T: float = 1.0,
        prior_mean: float | Tensor = 0.0,
    ) -> None:
        super().__init__(beta_min, beta_max, N, T, prior_mean)

    def original_conventions(self, continuous: bool) -> tuple[str, str]:
        """``('time', 'eps')`` continuous (``999 t``), ``('timestep', 'eps')`` discrete (DDPM's ``t (N - 1)``)."""
        return ("time" if continuous else "timestep"), "eps"

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = sqrt(1 - exp(-int_0^t beta))`` (eq. 32)."""
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(t)))

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """Inverse half log-SNR: ``log alpha = -1/2 log(1 + exp(-2 lambda))``, then invert ``log_alpha``."""
        return self._t_from_log_alpha(-0.5 * torch.nn.functional.softplus(-2.0 * lam))

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``-1/2 beta(t) x`` and diffusion ``sqrt(beta(t))`` (eq. 11)."""
        beta_t = self.beta(t)
        return -0.5 * batch_broadcast(beta_t, x) * x, torch.sqrt(beta_t)

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """DDPM rule: ``f_i = (sqrt(alpha_i) - 1) x``, ``G_i = sqrt(beta_i)`` (Song et al. 2021, App. B)."""
        self.require_discrete_chain("VPSDE.discretize (reverse_diffusion)")
        i = self.timestep_index(t)
        beta = self.discrete_betas.to(x.device)[i]
        alpha = self.alphas.to(x.device)[i]
        f = batch_broadcast(torch.sqrt(alpha), x) * x - x
        return f, torch.sqrt(beta)

    def ancestral_step(
        self, x: Tensor, t: Tensor, t_next: Tensor, score: Tensor, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """DDPM ancestral step on the discrete chain (Ho et al. 2020, Alg. 2; Song et al. 2021, eq. 47).

        ``x_mean = (x + beta_i score) / sqrt(1 - beta_i)``, noise std ``sqrt(beta_i)``; ``t_next`` is unused.
        """
        self.require_discrete_chain("VPSDE.ancestral_step")
        beta = self.discrete_betas.to(t.device)[self.timestep_index(t)]
        x_mean = (x + batch_broadcast(beta, x) * score) / batch_broadcast(torch.sqrt(1.0 - beta), x)
        return x_mean + batch_broadcast(torch.sqrt(beta), x) * noise, x_mean


class SubVPSDE(_BetaLinearSDE):
    """Sub-VP SDE ``dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dW`` (Song et al. 2021, eq. 33).

    Its marginal variance ``(1 - exp(-int_0^t beta))^2`` is bounded by the VP one. The standard deviation is
    therefore ``1 - exp(-int beta)`` **without** a square root: the reference computes it that way, and it is
    the exact value (the variance is the square), not an approximation. ``discretize`` is Euler–Maruyama; the
    Langevin corrector uses the VP table ``alpha_i = 1 - beta_i`` (the reference crashes there), and ancestral
    sampling uses the exact Gaussian transition between grid times (the reference has none).

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        N: number of discretisation steps.
        T: end time.
        prior_mean: see :class:`ScalarSDE`.
    """

    config_name = "subvpsde"
    config_keys = ("beta_min", "beta_max")

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        N: int = 1000,
        T: float = 1.0,
        prior_mean: float | Tensor = 0.0,
    ) -> None:
        super().__init__(beta_min, beta_max, N, T, prior_mean)

    def original_conventions(self, continuous: bool) -> tuple[str, str]:
        """``('time', 'eps')`` whatever ``continuous`` (the original ignores it for sub-VP)."""
        return "time", "eps"

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``-1/2 beta(t) x`` and diffusion ``sqrt(beta(t) (1 - exp(-2 int_0^t beta)))`` (eq. 33)."""
        beta_t = self.beta(t)
        discount = 1.0 - torch.exp(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t**2)
        return -0.5 * batch_broadcast(beta_t, x) * x, torch.sqrt(beta_t * discount)

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = 1 - exp(-int_0^t beta)``."""
        return 1.0 - torch.exp(2.0 * self.log_alpha(t))

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """Inverse half log-SNR.

        ``alpha / (1 - alpha^2) = e^lambda`` gives ``log alpha = -asinh(e^-lambda / 2)``.
        """
        # 1/alpha - alpha = e^-lambda, i.e. 2 sinh(-log alpha) = e^-lambda: no cancellation at small noise levels
        # (the form 2 e^lambda / (1 + sqrt(1 + 4 e^(2 lambda))) lost 6e-12 relative accuracy there)
        return self._t_from_log_alpha(-torch.asinh(0.5 * torch.exp(-lam)))


class DiscreteVPSDE(VPSDE):
    """The noise schedule of the discrete DDPM chain itself, as a VP SDE: use it for networks trained on the DDPM
    table ``alphas_cumprod`` (diffusers' ``DDPMScheduler``, Ho et al.'s checkpoints) so that every sampler steps on
    the schedule the network was trained on, not on the continuous VP limit.

    DDPM's chain of ``N`` steps (Ho et al. 2020, eq. 4) has ``beta_k = linspace(beta_min / N, beta_max / N, N)`` and
    ``alphas_cumprod[k] = prod_{j <= k} (1 - beta_j)``, exactly :class:`VPSDE`'s discrete tables. Timestep ``k`` sits
    at the time ``t_k = k T / (N - 1)`` at which :class:`~scoresde.models.ScoreModel` feeds a discrete network the
    label ``t (N - 1) = k`` (``label_type='timestep'``). The schedule is the discrete ``NoiseScheduleVP`` of
    DPM-Solver (Lu et al. 2022, App. D; ``schedule='discrete'``) on those times:

    * ``log alpha(t)`` is piecewise linear in ``t`` through ``(t_k, 1/2 log alphas_cumprod[k])`` (linear
      extrapolation of the end segments outside ``[0, T]``); ``sigma(t) = sqrt(1 - alpha(t)^2)``, ``lambda_t`` from
      them, and ``t_from_lambda`` the inverse interpolation of ``log alpha = -1/2 log(1 + e^(-2 lambda))``. At the
      timesteps these are the table's values: ``alpha(t_k)^2 = alphas_cumprod[k]``.
    * ``marginal_prob`` (mean ``alpha(t) x``, std ``sigma(t)``), ``denoise``, ``ddim_step`` and the schedule queries all
      read this schedule; ``sde`` is the VP SDE ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW`` whose marginals it is:
      ``beta(t) = -2 d log alpha / dt``, constant on each segment, ``-(N - 1) / T log(1 - beta_{k+1})`` on
      ``[t_k, t_{k+1})``. So the probability-flow ODE, Euler-Maruyama and the likelihood use the same schedule.
    * Unlike the continuous VP, ``t = 0`` is timestep 0, which already carries the chain's first noise:
      ``alpha(0)^2 = 1 - beta_0`` and ``sigma(0) = sqrt(beta_0)`` (the data is one chain step before the grid).
      ``marginal_prob`` is the kernel from the data for every ``t``.
    * A discrete-time :class:`~scoresde.models.ScoreModel` on it converts between noise, score and data predictions
      with ``alpha(t)``, ``sigma(t)`` (``table_schedule``): the table entry at a timestep, the interpolation between
      (where the network is fed a fractional label ``t (N - 1)``, as on DPM-Solver's logSNR grid), so conversions and
      solver steps use one kernel.
    * ``discretize``, ``ancestral_step`` and ``langevin_alpha`` are :class:`VPSDE`'s DDPM rules on the discrete
      tables. The schedule keeps its ``N``-entry table whatever the step count: ``with_steps(n)`` (fixed-step
      samplers) rebuilds the tables as the chain of this schedule at ``n`` equally spaced times (``alphas_cumprod[i]
      = alpha(i T / (n - 1))^2``), which is the training table again for ``n = N``.

    The table's length is ``num_train_timesteps`` (the ``N`` given to the constructor), recorded by :meth:`describe`;
    ``with_steps`` copies keep it. Use :class:`VPSDE` for models trained in continuous time.

    Args:
        beta_min: ``N beta_start`` (diffusers' ``beta_start`` times ``num_train_timesteps``).
        beta_max: ``N beta_end``; must be below ``N`` (``beta_k < 1``).
        N: number of timesteps of the chain (diffusers' ``num_train_timesteps``).
        T: end time (timestep ``N - 1``).
        prior_mean: see :class:`ScalarSDE`.
    """

    #: the schedule *is* the discrete table (equal at the timesteps, interpolated between): discrete-time models
    #: (:meth:`scoresde.models.ScoreModel.alpha_sigma`) convert their outputs with ``alpha(t)``, ``sigma(t)``
    table_schedule = True
    #: the DDPM table's own schedule (diffusers DDPM folders read in discrete time: ``scoresde.load_diffusers``)
    config_name = "discrete_vpsde"

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        N: int = 1000,
        T: float = 1.0,
        prior_mean: float | Tensor = 0.0,
    ) -> None:
        if isinstance(N, int) and not isinstance(N, bool) and N < 2:
            raise ValueError(f"DiscreteVPSDE needs a chain of N >= 2 timesteps, got N={N!r}")
        if isinstance(N, int) and isinstance(beta_max, (int, float)) and beta_max / N >= 1.0:
            raise ValueError(f"DiscreteVPSDE needs beta_max / N < 1 (the last DDPM beta), got {beta_max!r} / {N}")
        self.num_train_timesteps = N
        super().__init__(beta_min, beta_max, N, T, prior_mean)

    def model_config(self) -> dict[str, Any]:
        """:meth:`SDE.model_config` with ``num_scales`` the table's length; ``ValueError`` for a ``with_steps`` copy
        (``N != num_train_timesteps``: a config rebuilds the table from ``num_scales`` alone)."""
        if self.N != self.num_train_timesteps:
            raise ValueError(f"DiscreteVPSDE with N={self.N} steps on a table of num_train_timesteps="
                             f"{self.num_train_timesteps}: a run config has no place for both (use the SDE it was "
                             "copied from by with_steps)")
        return super().model_config()

    def _build_discrete_tables(self) -> None:
        """The DDPM tables: the training chain for ``N = num_train_timesteps`` (the schedule's table, built on the
        first call), else the chain of the schedule at ``N`` equally spaced times (class docstring)."""
        if self.N == self.num_train_timesteps:
            super()._build_discrete_tables()
            if not hasattr(self, "_log_alpha_table"):  # the schedule: float64 half log of the training table
                self._log_alpha_table = 0.5 * torch.log(self.alphas_cumprod.to(torch.float64))
            return
        dtype = torch.get_default_dtype()
        abar = torch.exp(2.0 * self.log_alpha(torch.linspace(0.0, self.T, self.N, dtype=torch.float64)))
        alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])  # 1 - beta_i of the chain at those times
        self.alphas = alphas.to(dtype)
        self.discrete_betas = (1.0 - alphas).to(dtype)
        self.alphas_cumprod = abar.to(dtype)
        self.sqrt_alphas_cumprod = torch.sqrt(abar).to(dtype)
        self.sqrt_1m_alphas_cumprod = torch.sqrt(1.0 - abar).to(dtype)

    def describe(self) -> dict:
        """:meth:`SDE.describe` without the schedule table (derived from ``beta_min``, ``beta_max`` and
        ``num_train_timesteps``, which it records)."""
        out = super().describe()
        out.pop("_log_alpha_table", None)
        return out

    def _segment(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(k, w, table)``: the segment ``[t_k, t_{k+1}]`` holding ``t`` (end segments extended), the position
        ``w = (t - t_k) / (t_{k+1} - t_k)`` in it, and the float64 table on ``t``'s device."""
        table = self._log_alpha_table.to(t.device)
        u = t.to(torch.float64) * ((self.num_train_timesteps - 1) / self.T)
        k = torch.floor(u).clamp(0, self.num_train_timesteps - 2).long()
        return k, u - k, table

    def log_alpha(self, t: Tensor) -> Tensor:
        """``log alpha(t)``: linear interpolation of ``1/2 log alphas_cumprod`` between the timesteps' times
        ``t_k = k T / (N - 1)`` (DPM-Solver's discrete ``marginal_log_mean_coeff``), computed in float64."""
        k, w, table = self._segment(t)
        return (table[k] + w * (table[k + 1] - table[k])).to(t.dtype)

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = sqrt(1 - alpha(t)^2)`` (as ``sqrt(-expm1(2 log alpha))``: exact at small noise levels)."""
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = -2 d log alpha / dt``, constant on each segment: ``-2 (N - 1) / T (l_{k+1} - l_k)`` on
        ``[t_k, t_{k+1})`` with ``l_k = 1/2 log alphas_cumprod[k]`` (the segment's right end at a knot)."""
        k, _, table = self._segment(t)
        return (-2.0 * (self.num_train_timesteps - 1) / self.T * (table[k + 1] - table[k])).to(t.dtype)

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """Inverse half log-SNR: ``log alpha = -1/2 softplus(-2 lambda)``, then the inverse of the piecewise-linear
        ``log alpha`` (DPM-Solver's discrete ``inverse_lambda``; linear extrapolation outside the table)."""
        target = (-0.5 * torch.nn.functional.softplus(-2.0 * lam.to(torch.float64)))
        table = self._log_alpha_table.to(lam.device)
        # the table decreases strictly (beta_k > 0): search the increasing -table
        flat = target.reshape(-1)
        k = (torch.searchsorted(-table, -flat) - 1).clamp(0, self.num_train_timesteps - 2)
        w = (flat - table[k]) / (table[k + 1] - table[k])
        return ((k + w) * (self.T / (self.num_train_timesteps - 1))).reshape(lam.shape).to(lam.dtype)

    def require_discrete_chain(self, what: str) -> None:
        """Nothing to check: the tables of this schedule are defined for every step count (``beta_max / N < 1`` was
        checked on construction, and ``with_steps`` tables come from the schedule)."""
        return None
