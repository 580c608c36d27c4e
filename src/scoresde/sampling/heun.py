"""EDM's Heun sampler (Karras et al. 2022, Algorithm 2) for every scalar SDE: VE, VP and sub-VP.

EDM's variables. With the kernel ``x_t = alpha_t x_0 + sigma_t eps`` of the SDE, the scaled state ``x_hat = x /
alpha_t`` has the marginal ``p_0 * N(0, sigma_hat^2 I)`` with ``sigma_hat = sigma_t / alpha_t = exp(-lambda_t)``:
every scalar SDE is a variance-exploding diffusion in ``(x_hat, sigma_hat)``, whatever its ``alpha`` and ``sigma``
(sub-VP's ``sigma = 1 - alpha^2`` included). Its probability-flow ODE is EDM's eq. 3 with ``s = 1``,

    ``dx_hat / dsigma_hat = (x_hat - D(x_hat; sigma_hat)) / sigma_hat``,  ``D(x_hat; sigma_hat) = model.x0(alpha_t
    x_hat, t)``,

``t = sde.t_from_lambda(-log sigma_hat)`` the time of that noise level and ``D`` the data prediction (the network
output itself for data-predicting networks; k-diffusion's denoiser). Algorithm 2 integrates it with Heun's method
from ``sigma_hat(T)`` down, and with ``s_churn > 0`` first raises the noise level of each step inside ``[s_tmin,
s_tmax]`` from ``sigma_i`` to ``(1 + gamma) sigma_i`` by adding fresh noise of std ``sqrt(sigma_hat^2 -
sigma_i^2)`` (``gamma = min(s_churn / steps, sqrt(2) - 1)``, the noise scaled by ``s_noise``).

Steps and NFE. ``steps`` counts grid intervals, as for every sampler. With ``denoise=True`` (the default, EDM's and
k-diffusion's schedule) the last interval goes to ``sigma = 0`` and is an Euler step, which lands on ``D`` at the
last noise level: the noise levels are ``steps`` times from ``T`` to ``eps`` on ``grid`` (``steps - 1``
intervals; on the ``karras`` grid exactly k-diffusion's ``get_sigmas_karras(steps, sigma_hat(eps),
sigma_hat(T), rho)`` before its appended zero), so the NFE is ``2 steps - 1``. With ``denoise=False`` the ``steps``
intervals of the grid's ``steps + 1`` times are all Heun steps, ending at ``eps``: NFE ``2 steps``. An explicit
``times`` gives the noise levels themselves (``len(times) - 1`` Heun intervals, plus the Euler step to ``sigma =
0`` with ``denoise``).

Differences from k-diffusion's ``sample_heun``, none of which changes a result: the noise of a churned step is drawn
from ``generator`` (batch first) and only on steps that are churned (k-diffusion draws ``randn_like(x)`` from the
global RNG on every step and discards it when ``gamma = 0``); the last step returns ``D`` itself rather than
``x + d (0 - sigma)``, which equals it up to rounding. With churn on the first step the raised noise level lies
above ``sigma_hat(T)``, a time beyond ``T`` (as in EDM): set ``s_tmax`` below ``sigma_hat(T)`` for a model that
cannot be evaluated there (a discrete-time one).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import DiffusionModel
from ..numerics.times import resolve_eps
from ..sdes.base import randn_like
from .common import (
    Callback,
    counting,
    levels_before_zero,
    report,
    require_scalar_schedule,
    sampler_times,
    steps_from_budget,
)


def _check_options(s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> None:
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)

    if not (number(s_churn) and math.isfinite(s_churn) and s_churn >= 0):
        raise ValueError(f"s_churn must be a finite number >= 0, got {s_churn!r}")
    if not (number(s_tmin) and number(s_tmax) and 0 <= s_tmin <= s_tmax):
        raise ValueError(f"s_tmin and s_tmax must satisfy 0 <= s_tmin <= s_tmax, got s_tmin={s_tmin!r}, "
                         f"s_tmax={s_tmax!r}")
    if not (number(s_noise) and math.isfinite(s_noise) and s_noise >= 0):
        raise ValueError(f"s_noise must be a finite number >= 0, got {s_noise!r}")


def _noise_times(sde: Any, steps: int | None, times: Tensor | None, *, grid: str, eps: float, rho: float,
                 denoise: bool, device: torch.device) -> tuple[Tensor, int]:
    """The float64 times of the noise levels (first ``T``, or ``times[0]``) and the number of intervals, the step to
    ``sigma = 0`` included."""
    if times is None and denoise:  # EDM's count on every grid; one step: T then sigma = 0 (get_sigmas_karras(1))
        n = sde.N if steps is None else steps
        return levels_before_zero(sde, n, grid=grid, eps=eps, rho=rho, dtype=torch.float64, device=device), n
    ts = sampler_times(sde, steps, times, grid=grid, eps=eps, rho=rho, dtype=torch.float64, device=device)
    return ts, len(ts) - 1 + int(denoise)


def sample_heun(
    model: DiffusionModel,
    z: Tensor,
    *,
    steps: int | None = None,
    times: Tensor | None = None,
    nfe: int | None = None,
    grid: str = "karras",
    rho: float = 7.0,
    eps: float | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float | None = None,
    s_noise: float = 1.0,
    denoise: bool = True,
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
) -> tuple[Tensor, int]:
    """EDM's Heun sampler (module docstring) from ``z`` at ``T``: ``steps`` intervals, NFE ``2 steps - 1`` (the last
    step, to ``sigma = 0``, is Euler; ``2 steps`` with ``denoise=False``).

    Choose it for second-order accuracy at a few tens of network calls on VE/VP/sub-VP, deterministic (the default)
    or with EDM's stochastic churn; it equals k-diffusion's ``sample_heun`` on the same noise levels.

    Args:
        steps: number of intervals (default ``sde.N``), the last one to ``sigma = 0`` with ``denoise``.
        times: explicit decreasing times of the noise levels ``T >= t_0 > ... > t_n > 0`` (override ``steps``,
            ``grid`` and ``eps``); ``denoise`` appends the step to ``sigma = 0``.
        nfe: a budget of network calls instead of ``steps``: ``(nfe + 1) // 2`` steps with ``denoise`` (``2 steps -
            1`` calls), ``nfe // 2`` without; an even budget leaves one call unspent with ``denoise``.
        grid: a name of :data:`scoresde.numerics.grids.GRIDS`; ``karras`` (EDM's, default) with exponent ``rho``.
        rho: exponent of the ``karras`` grid (7 in EDM).
        eps: the last noise level's time; ``None``: the SDE's ``sampling_eps`` (``1e-3``; EDM: ``sigma_min``).
        s_churn: total stochasticity (EDM's ``S_churn``); ``0`` is the deterministic sampler.
        s_tmin, s_tmax: churn only the noise levels ``sigma_hat`` in ``[s_tmin, s_tmax]`` (EDM's ``S_tmin``,
            ``S_tmax``, in ``sigma / alpha`` units; ``s_tmax=None``: no upper bound, EDM's ``inf``).
        s_noise: scale of the churn noise (EDM's ``S_noise``).
        denoise: finish with the Euler step to ``sigma = 0`` (the data prediction at the last noise level).
        generator: random generator of the churn noise (not used when ``s_churn = 0``).
        callback: ``callback(i, t, x, x0_pred)`` after each step; the step to ``sigma = 0`` reports ``t = 0``.
    """
    sde = model.sde
    require_scalar_schedule(sde, "heun")
    s_tmax = math.inf if s_tmax is None else s_tmax  # None (the default, JSON null in configs): no upper bound
    _check_options(s_churn, s_tmin, s_tmax, s_noise)
    eps = resolve_eps(sde, eps)
    steps = steps_from_budget(nfe, steps, times, sampler="heun", cost=lambda n: 2 * n - int(denoise))
    ts, n_steps = _noise_times(sde, steps, times, grid=grid, eps=eps, rho=rho, denoise=denoise, device=z.device)
    sigmas = torch.exp(-sde.lambda_t(ts))  # sigma_hat = sigma / alpha at each noise level, float64
    alphas = sde.alpha(ts)
    gamma_max = min(s_churn / n_steps, math.sqrt(2.0) - 1.0)
    counted = counting(model, cond)
    B, dtype = z.shape[0], z.dtype

    def denoiser(x_hat: Tensor, t: Tensor, alpha: Tensor) -> Tensor:
        """``D(x_hat; sigma_hat(t)) = model.x0(alpha_t x_hat, t)``."""
        return counted.x0(alpha.to(dtype) * x_hat, t.to(dtype).expand(B))

    x = z / alphas[0].to(dtype)
    with torch.no_grad():
        for i in tqdm(range(n_steps), disable=not progress, desc="Heun sampling"):
            sigma, t, alpha = sigmas[i], ts[i], alphas[i]
            gamma = gamma_max if s_tmin <= float(sigma) <= s_tmax else 0.0
            if gamma > 0:
                sigma_hat = sigma * (gamma + 1.0)
                noise = randn_like(x, generator) * s_noise
                x = x + noise * torch.sqrt(sigma_hat**2 - sigma**2).to(dtype)
                t = sde.t_from_lambda(-torch.log(sigma_hat))
                sigma, alpha = sigma_hat, sde.alpha(t)
            x0 = denoiser(x, t, alpha)
            if i + 1 == len(ts):  # the step to sigma = 0: Euler, x + d (0 - sigma) = D
                x = x0
                report(callback, i, torch.zeros((), dtype=torch.float64, device=ts.device), x, counted)
                continue
            d = (x - x0) / sigma.to(dtype)
            dt = (sigmas[i + 1] - sigma).to(dtype)
            x_2 = x + d * dt
            d_2 = (x_2 - denoiser(x_2, ts[i + 1], alphas[i + 1])) / sigmas[i + 1].to(dtype)
            x = x + (d + d_2) / 2 * dt
            report(callback, i, ts[i + 1], alphas[i + 1].to(dtype) * x, counted)
    if len(ts) == n_steps:  # denoise: x is the data prediction, in data space
        return x, counted.calls
    return alphas[-1].to(dtype) * x, counted.calls
