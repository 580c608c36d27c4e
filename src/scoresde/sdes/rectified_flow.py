"""The linear interpolant of rectified flow / flow matching as an SDE (Liu et al. 2023, "Flow Straight and Fast",
eq. 1; Lipman et al. 2023, "Flow Matching for Generative Modeling", eq. 20 with ``sigma_min = 0``)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .schedule import ScheduleSDE, _check_finite

__all__ = ["RectifiedFlow"]


class RectifiedFlow(ScheduleSDE):
    """``x_t = (1 - t) x_0 + t eps``: ``alpha(t) = 1 - t``, ``sigma(t) = t``, the straight path from the data to
    ``N(0, I)`` at ``t = 1``.

    The SDE is ``dx = -x / (1 - t) dt + sqrt(2 t / (1 - t)) dW`` (``f = -1 / (1 - t)``, ``g^2 = 2 t + 2 t^2 / (1 -
    t)``); its probability-flow ODE is the flow-matching velocity ``dx/dt = E[eps - x_0 | x_t]``, which
    ``v``-predicting networks output. ``lambda(t) = log((1 - t) / t)``, ``t_from_lambda(lam) = sigmoid(-lam)``.

    **The end time** (the choice made here): at ``t = 1`` the law is exactly ``N(0, I)``, but ``alpha(1) = 0``, so
    ``lambda(1) = -inf`` (no logSNR or Karras grid reaches it), ``f`` and ``g^2`` diverge (Euler–Maruyama and the
    ODE drift are ``inf * 0``), and every conversion to the data prediction divides by ``alpha`` (DDIM, DPM-Solver,
    UniPC and Heun's ``sigma / alpha`` are undefined there). The SDE therefore ends at ``T = 1 - 1e-3`` by default,
    where ``alpha(T) = 1e-3``, ``lambda(T) = -6.91``, and the prior ``N(0, I)`` (the law at ``t = 1``) stands for
    ``p_T``: the samplers start there and the likelihood ends there, with no special case anywhere. This is
    diffusers' choice for flow schedules in DPM-Solver++ / UniPC (``use_flow_sigmas``: the largest ``sigma`` is ``1 -
    1/1000``), and DPM-Solver's for the cosine schedule (:class:`~scoresde.sdes.CosineVP`). The cost is the gap
    between ``p_T`` and ``N(0, I)``: for a coordinate of mean ``m`` (and any variance) with a Gaussian law,
    ``KL(p_T || N(0, I)) = (1 - T)^2 (1 + m^2 / 2) + O((1 - T)^3)``, i.e. ``1e-6`` nats per coordinate and about
    ``3e-3`` nats for 3072 coordinates at the default: far below what a sampler or a likelihood estimate resolves.

    Use it for rectified-flow / flow-matching models and the flow-matching velocity loss; the samplers, likelihood,
    guidance and inverse methods run on it like on any scalar schedule.

    Args:
        T: end time, in ``(0, 1)``; ``1 - 1e-3`` by default (see above).
        N: number of discretisation steps.
    """

    config_name: ClassVar[str | None] = "rectified_flow"

    def __init__(self, T: float = 1.0 - 1e-3, N: int = 1000) -> None:
        T = _check_finite("T", T, low=0.0, high=1.0, allowed="in (0, 1): at t = 1 alpha = 0 and lambda = -inf "
                          "(the default 1 - 1e-3 is diffusers' largest flow sigma)")
        super().__init__(T=T, N=N, prior_std=1.0)

    def log_alpha(self, t: Tensor) -> Tensor:
        """``log(1 - t)`` (as ``log1p(-t)``)."""
        return torch.log1p(-t)

    def alpha(self, t: Tensor) -> Tensor:
        """``1 - t``."""
        return 1.0 - t

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = t``."""
        return t.clone()

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        """``f = -1 / (1 - t)``."""
        return -1.0 / (1.0 - t)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        """``d t^2 / dt = 2 t``."""
        return 2.0 * t

    def g2(self, t: Tensor) -> Tensor:
        """``g^2 = 2 t / (1 - t)`` (``2 t + 2 t^2 / (1 - t)``)."""
        return 2.0 * t / (1.0 - t)

    def lambda_t(self, t: Tensor) -> Tensor:
        """``lambda(t) = log((1 - t) / t)``."""
        return torch.log1p(-t) - torch.log(t)

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """``t = sigmoid(-lambda)`` (closed form)."""
        return torch.sigmoid(-lam)
