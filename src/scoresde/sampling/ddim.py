"""DDIM (Song, Meng & Ermon, ICLR 2021) for every SDE with a Gaussian kernel: VE, VP, sub-VP, and PSLD/CLD in phase
space (the matrix form, gDDIM: Zhang et al. 2023).

With the kernel ``x_t = alpha_t x_0 + sigma_t eps`` of the SDE and the model's noise prediction ``eps_hat`` at ``(x_t,
t)`` (the network output itself for noise-predicting networks), one step from ``t`` to ``s < t`` is (DDIM eq. 12 in
``alpha``/``sigma`` form)

    ``x0_hat = (x_t - sigma_t eps_hat) / alpha_t``,
    ``x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z``,  ``c = eta sigma_s sqrt(1 - exp(2 (lambda_t -
    lambda_s)))``

with ``lambda = log(alpha / sigma)``. ``eta = 0`` is the deterministic DDIM, the first-order solver of the
probability-flow ODE in ``lambda`` (DPM-Solver-1, Lu et al. 2022, eq. 3.7: ``x_s = alpha_s/alpha_t x_t - sigma_s
(e^h - 1) eps_hat``, ``h = lambda_s - lambda_t``); ``eta = 1`` draws from the DDPM posterior
``q(x_s | x_t, x0_hat)`` (ancestral sampling). Nothing assumes ``alpha^2 + sigma^2 = 1``: sub-VP's ``sigma = 1 -
alpha^2`` and VE's ``alpha = 1`` are read from the schedule. The step itself is the SDE's (``sde.ddim_step``): for
phase-space SDEs ``alpha_t`` and ``sigma_t`` become the kernel's mean map ``Phi_t`` and factor ``L_t``
(:meth:`scoresde.sdes.RecipeSDE.ddim_step`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import DiffusionModel
from ..numerics.times import resolve_eps
from ..sdes.base import randn_like
from .common import Callback, counting, report, sampler_times, steps_from_budget


def sample_ddim(
    model: DiffusionModel,
    z: Tensor,
    *,
    steps: int | None = None,
    times: Tensor | None = None,
    nfe: int | None = None,
    eta: float = 0.0,
    grid: str = "uniform",
    rho: float = 7.0,
    eps: float | None = None,
    denoise: bool = False,
    flow: str = "kernel",
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
) -> tuple[Tensor, int]:
    """DDIM sampling (module docstring) from ``z`` at ``T`` down to ``eps`` in ``steps`` steps; NFE ``steps``
    (``+ 1`` with ``denoise``).

    Prefer it to the PC sampler when the budget is tens of network calls rather than hundreds; ``eta = 0`` also
    decodes latents deterministically (``scoresde.sample(..., x_T=z)``).

    Args:
        steps: number of steps (default ``sde.N``) on ``grid``.
        times: explicit decreasing times ``T >= t_0 > ... > t_n > 0`` (override ``steps``, ``grid`` and ``eps``).
        nfe: a budget of network calls instead of ``steps``: the most steps that spend at most ``nfe`` calls
            (``nfe - 1`` steps with ``denoise``, ``nfe`` on the ``karras`` grid, whose last step is the denoising).
        eta: ``0`` deterministic; ``1`` the DDPM posterior variance; in ``[0, 1]``.
        grid: a name of :data:`scoresde.numerics.grids.GRIDS` (``uniform`` as in DDIM; ``logSNR`` for few steps).
        rho: exponent of the ``karras`` grid.
        eps: last time; ``None``: the SDE's ``sampling_eps`` (``1e-3``; EDM: ``sigma_min``).
        denoise: finish with the data prediction at the last time (DPM-Solver's ``denoise_to_zero``).
        flow: phase space, ``eta = 0``: ``"kernel"`` (the kernel's Cholesky factors; reaches the 2-D mixture's noise
            floor in 50 NFE on PSLD/CLD) or ``"probability_flow"`` (converges to the ``ode`` sampler's path, for
            decoding its latents); the two coincide for scalar SDEs (:meth:`scoresde.sdes.RecipeSDE.ddim_step`).
        generator: random generator of the ``eta > 0`` noise.
        callback: ``callback(i, t, x, x0_pred)`` after each step.
    """
    sde = model.sde
    if not callable(getattr(sde, "ddim_step", None)):
        raise ValueError(f"ddim needs an SDE with a Gaussian kernel step (ddim_step): VE, VP, sub-VP, PSLD, CLD; "
                         f"{type(sde).__name__} has none (use pc, sscs or ode)")
    if not (isinstance(eta, (int, float)) and 0.0 <= eta <= 1.0):
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    eps = resolve_eps(sde, eps)
    steps = steps_from_budget(nfe, steps, times, sampler="ddim", grid=grid, denoise=denoise)
    ts = sampler_times(sde, steps, times, grid=grid, eps=eps, rho=rho, dtype=torch.float64, device=z.device,
                       denoise=denoise)
    counted = counting(model, cond)
    B, x = z.shape[0], z
    with torch.no_grad():
        for i in tqdm(range(len(ts) - 1), disable=not progress, desc="DDIM sampling"):
            eps_hat = counted.eps(x, ts[i].to(z.dtype).expand(B))
            noise = randn_like(x, generator) if eta > 0 else None
            x = sde.ddim_step(x, ts[i], ts[i + 1], eps_hat, eta, noise, flow)
            report(callback, i, ts[i + 1], x, counted)
        if denoise:
            x = counted.x0(x, ts[-1].to(z.dtype).expand(B))
    return x, counted.calls
