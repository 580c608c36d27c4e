"""A Gaussian data law whose exact score gives a model density known in closed form under every scalar SDE.

Data ``x_0 ~ N(m, s^2 I)`` has marginals ``p_t = N(alpha_t m, v_t I)``, ``v_t = alpha_t^2 s^2 + sigma_t^2``, and the
exact score ``-(x - alpha_t m) / v_t``. The probability-flow ODE is then linear and keeps the standardised coordinate
fixed: ``x_t = alpha_t m + sqrt(v_t / v_T) (x_T - alpha_T m)``. Started from the *prior* ``N(mu_p, sd_p^2 I)``
instead of ``p_T``, it therefore produces at time ``eps`` exactly the Gaussian

    ``q_eps = N(alpha_eps m + r (mu_p - alpha_T m), r^2 sd_p^2 I)``,  ``r = sqrt(v_eps / v_T)``,

the density the likelihood solver must return, prior mismatch included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde.sdes import ScalarSDE


@dataclass
class GaussianLaw:
    """``N(mean, std^2 I)`` in the model's data space."""

    mean: float
    std: float

    def _schedule(self, sde: ScalarSDE, t: Tensor) -> tuple[Tensor, Tensor]:
        t = t.to(torch.float64)
        alpha = sde.alpha(t)
        return alpha, alpha**2 * self.std**2 + sde.sigma(t) ** 2

    def score_fn(self, sde: ScalarSDE):
        """Exact score ``-(x - alpha_t m) / v_t`` of the perturbed marginals."""

        def score_fn(x: Tensor, t: Tensor) -> Tensor:
            alpha, var = self._schedule(sde, t)
            shape = (-1,) + (1,) * (x.dim() - 1)
            return (-(x - alpha.reshape(shape) * self.mean) / var.reshape(shape)).to(x.dtype)

        return score_fn

    def model_log_prob(self, sde: ScalarSDE, y: Tensor, eps: float) -> Tensor:
        """``log q_eps(y)``: the closed-form density of the prior pulled back by the probability-flow ODE."""
        alpha_eps, v_eps = self._schedule(sde, torch.tensor(eps))
        alpha_T, v_T = self._schedule(sde, torch.tensor(sde.T))
        r = torch.sqrt(v_eps / v_T)
        mean = alpha_eps * self.mean + r * (float(sde.prior_mean) - alpha_T * self.mean)
        var = r**2 * sde.prior_std**2
        y = y.to(torch.float64).flatten(1)
        return (-0.5 * (y - mean) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)).sum(1)
