"""The EDM noise schedule as an SDE (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", eq. 6 and Table 1 with ``s(t) = 1``, ``sigma(t) = t``)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .schedule import ScheduleSDE, _check_finite

__all__ = ["EDM"]


class EDM(ScheduleSDE):
    """EDM's variance-exploding schedule ``x_t = x_0 + t eps``: ``alpha = 1``, ``sigma(t) = t``, so that **times are
    noise levels** (Karras et al. 2022, eq. 6 with ``s = 1``; their ``sigma`` is our ``t``).

    The SDE is ``dx = sqrt(2 t) dW`` (``f = 0``, ``g^2 = d sigma^2 / dt = 2 t``) on ``[0, T]`` with ``T =
    sigma_max``; its prior is ``N(0, sigma_max^2 I)`` (EDM's ``latents * sigma_max``). ``lambda(t) = -log t``, so
    ``t_from_lambda(lam) = exp(-lam)``, and the ``karras`` grid on it is EDM's time discretisation (eq. 5) exactly.

    Use it for EDM-trained networks and the EDM recipe; use :class:`~scoresde.sdes.VESDE` for Score SDE's VE models
    (geometric ``sigma(t)``, times in ``[0, 1]``). ``sigma_min`` is the lowest noise level EDM samples at
    (:attr:`sampling_eps`); a run config holds ``sigma_min`` and ``sigma_max`` as ``model`` keys (``T = sigma_max``
    follows from them).

    Args:
        sigma_min: smallest noise level (EDM: ``0.002``), where EDM's sampler stops.
        sigma_max: largest noise level (EDM: ``80``), the end time ``T`` and the prior's standard deviation.
        N: number of discretisation steps (the fixed-step samplers' default step count; EDM samples in 18 with
            ``heun`` on the ``karras`` grid).
    """

    config_name: ClassVar[str | None] = "edm"
    config_keys: ClassVar[tuple[str, ...]] = ("sigma_min", "sigma_max")

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, N: int = 1000) -> None:
        self.sigma_min = _check_finite("sigma_min", sigma_min, low=0.0, allowed="a positive finite noise level")
        self.sigma_max = _check_finite("sigma_max", sigma_max, low=0.0, allowed="a positive finite noise level")
        if not self.sigma_max > self.sigma_min:
            raise ValueError(f"sigma_max ({sigma_max!r}) must exceed sigma_min ({sigma_min!r})")
        super().__init__(T=self.sigma_max, N=N, prior_std=self.sigma_max)

    @property
    def sampling_eps(self) -> float:
        """``sigma_min``: the end time of EDM's sampler (its lowest noise level)."""
        return self.sigma_min

    @property
    def likelihood_eps(self) -> float:
        """``sigma_min`` as well: the likelihood is that of ``p_{sigma_min}``, the distribution the sampler ends at.
        Score SDE's ``1e-5`` is a time, not a noise level: on its VE SDE it is the noise level ``~sigma_min``
        (``0.01 (50/0.01)^1e-5``), while here it would be the level ``1e-5``, far below any level EDM trains at
        (``ln sigma ~ N(-1.2, 1.2^2)``)."""
        return self.sigma_min

    def log_alpha(self, t: Tensor) -> Tensor:
        """``0`` (``alpha = 1``)."""
        return torch.zeros_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = t``."""
        return t.clone()

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        """``f = 0``."""
        return torch.zeros_like(t)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        """``d t^2 / dt = 2 t``."""
        return 2.0 * t

    def g2(self, t: Tensor) -> Tensor:
        """``g^2 = 2 t``."""
        return 2.0 * t

    def lambda_t(self, t: Tensor) -> Tensor:
        """``lambda(t) = -log t``."""
        return -torch.log(t)

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """``t = exp(-lambda)`` (closed form)."""
        return torch.exp(-lam)

    def marginal_prob(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``x`` and std ``t``."""
        return x, self.sigma(t)
