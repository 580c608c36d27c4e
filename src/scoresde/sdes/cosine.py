"""The cosine noise schedule of improved DDPM as a continuous-time VP SDE (Nichol & Dhariwal 2021, eq. 17; in
continuous time as DPM-Solver's ``NoiseScheduleVP(schedule='cosine')``, Lu et al. 2022, App. D)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from .schedule import ScheduleSDE, _check_finite

__all__ = ["CosineVP"]


class CosineVP(ScheduleSDE):
    """Variance-preserving SDE of the cosine schedule: with ``phi(t) = (t + s) / (1 + s) pi / 2``,
    ``alpha(t) = cos(phi(t)) / cos(phi(0))`` and ``sigma(t) = sqrt(1 - alpha(t)^2)`` (Nichol & Dhariwal 2021, eq. 17:
    ``alpha^2`` is their ``alpha_bar``).

    The SDE is ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW`` with ``beta(t) = -2 d log alpha / dt = pi tan(phi(t)) /
    (1 + s)`` (``g^2 = beta`` because ``alpha^2 + sigma^2 = 1``). ``alpha`` reaches ``0`` at ``t = 1``, where
    ``lambda = -inf`` and ``beta`` diverges, so the SDE ends before: ``T = 0.9946`` by default, DPM-Solver's end time
    for this schedule (its ``NoiseScheduleVP``; ``alpha(T) = 8.4e-3``, ``lambda(T) = -4.78``), with the prior
    ``N(0, I)`` standing for ``p_T`` as in VP. ``t_from_lambda`` is the closed form ``log alpha = -1/2 softplus(-2
    lambda)``, ``t = 2 (1 + s) / pi arccos(alpha cos(phi(0))) - s`` (DPM-Solver's ``inverse_lambda``, with ``arccos``
    written in a form that keeps its accuracy near ``t = 0``).

    Use it for networks trained on the cosine schedule (improved DDPM, guided diffusion, GLIDE in continuous time)
    and for training with it; :class:`~scoresde.sdes.VPSDE` is Score SDE's linear-``beta`` VP.

    Args:
        s: offset that keeps ``beta`` small near ``t = 0`` (``0.008``, Nichol & Dhariwal 2021, Sec. 3.2); ``>= 0``.
            Its run-config key is ``model.cosine_s``.
        T: end time, in ``(0, 1)`` (``alpha(1) = 0``); ``0.9946`` by default (DPM-Solver).
        N: number of discretisation steps.
    """

    config_name: ClassVar[str | None] = "cosine"
    #: the ``model`` key of ``s`` (a bare ``s`` would be ambiguous among a network's keys)
    config_keys: ClassVar[tuple[str, ...]] = ("cosine_s",)

    def __init__(self, s: float = 0.008, T: float = 0.9946, N: int = 1000) -> None:
        self.s = _check_finite("s", s, allowed="a finite number >= 0")
        if self.s < 0:
            raise ValueError(f"s must be a finite number >= 0, got {s!r}")
        T = _check_finite("T", T, low=0.0, high=1.0, allowed="in (0, 1): alpha(1) = 0, where lambda = -inf")
        self._phi0 = self.s / (1.0 + self.s) * math.pi / 2.0
        self._log_cos_phi0 = math.log(math.cos(self._phi0))
        super().__init__(T=T, N=N, prior_std=1.0)

    @property
    def cosine_s(self) -> float:
        """``s`` under its run-config key."""
        return self.s

    @classmethod
    def from_model_config(cls, model: Mapping[str, Any]) -> CosineVP:
        """``CosineVP(s=model["cosine_s"], N=model["num_scales"])`` (``T`` the default)."""
        return cls(s=float(model["cosine_s"]), N=int(model["num_scales"]))

    def _phi(self, t: Tensor) -> Tensor:
        return (t + self.s) * (math.pi / (2.0 * (1.0 + self.s)))

    def log_alpha(self, t: Tensor) -> Tensor:
        """``log cos(phi(t)) - log cos(phi(0))``."""
        return torch.log(torch.cos(self._phi(t))) - self._log_cos_phi0

    def sigma(self, t: Tensor) -> Tensor:
        """``sqrt(1 - alpha^2)``, as ``sqrt(sin(phi - phi(0)) sin(phi + phi(0))) / cos(phi(0))`` (the same, since
        ``cos^2 a - cos^2 b = sin(b - a) sin(b + a)``; exact at small noise levels, where ``1 - alpha^2`` cancels, and
        ``0`` at ``t = 0``)."""
        phi = self._phi(t)
        rise = t * (math.pi / (2.0 * (1.0 + self.s)))  # phi(t) - phi(0) without cancellation
        return torch.sqrt(torch.sin(rise) * torch.sin(phi + self._phi0)) / math.cos(self._phi0)

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = pi tan(phi(t)) / (1 + s)``."""
        return torch.tan(self._phi(t)) * (math.pi / (1.0 + self.s))

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        """``f = -beta / 2 = -pi tan(phi(t)) / (2 (1 + s))``."""
        return -0.5 * self.beta(t)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        """``d sigma^2 / dt = -d alpha^2 / dt = beta alpha^2``."""
        return self.beta(t) * torch.exp(2.0 * self.log_alpha(t))

    def g2(self, t: Tensor) -> Tensor:
        """``g^2 = beta(t)`` (variance preserving)."""
        return self.beta(t)

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """Closed form (class docstring)."""
        log_alpha = -0.5 * torch.nn.functional.softplus(-2.0 * lam)
        # phi = arccos(c) with c = alpha cos(phi(0)), as 2 asin(sqrt((1 - c) / 2)) and 1 - c = -expm1(log c): arccos
        # near 1 lost 2.5e-6 relative accuracy at t = 1e-6 (s = 0)
        phi = 2.0 * torch.asin(torch.sqrt(-torch.expm1(log_alpha + self._log_cos_phi0) / 2.0))
        return phi * (2.0 * (1.0 + self.s) / math.pi) - self.s
