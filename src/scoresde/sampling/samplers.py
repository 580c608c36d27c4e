"""Reference samplers: predictor–corrector and the probability-flow ODE (Song et al. 2021, §4.2–4.3).

Both are pure functions ``sample_x(model, z, ...) -> (x, nfe)`` of a model adapter (which carries its SDE) that start
from a state ``z`` at ``T`` and return the final state and the number of network evaluations; ``cond`` is passed to
every model call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import DiffusionModel
from ..numerics.checks import check_count
from ..numerics.grids import GRIDS, check_times, time_steps
from ..numerics.odeint import ADAPTIVE_METHODS, integrate
from ..numerics.times import resolve_eps
from .common import Callback, counting, report, steps_from_budget
from .steps import CORRECTORS, PREDICTORS, lookup


def sample_pc(
    model: DiffusionModel,
    z: Tensor,
    *,
    steps: int | None = None,
    times: Tensor | None = None,
    nfe: int | None = None,
    predictor: str | Callable = "reverse_diffusion",
    corrector: str | Callable = "langevin",
    snr: float = 0.16,
    n_steps_each: int = 1,
    probability_flow: bool = False,
    eps: float | None = None,
    denoise: bool = True,
    grid: str = "uniform",
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
) -> tuple[Tensor, int]:
    """Predictor–corrector sampling (Song et al. 2021, Alg. 1) with ``steps`` predictor steps (default ``sde.N``).

    The model is evaluated at ``steps`` times ``T = t_0 > ... > t_{steps-1} = eps`` of ``grid`` (``uniform``:
    Score SDE's ``linspace(T, eps, N)``; ``quadratic``: CLD/PSLD's striding; any name of
    :data:`scoresde.numerics.grids.GRIDS`), or at the explicit decreasing ``times``. At each ``t_i`` the corrector
    runs ``n_steps_each`` Langevin steps, then the predictor moves to ``t_{i+1}`` (``0`` after the last time, as in
    the reference). With ``denoise=True`` the last step's noise-free mean is returned (the reference's
    ``noise_removal``). With ``steps != sde.N`` the discrete rules (reverse diffusion, the DDPM/SMLD ancestral steps,
    the Langevin ``alpha_i``) use the tables of ``sde.with_steps(steps)``, as the reference does when
    ``num_scales`` changes; the model keeps its own time labels. NFE: ``steps * (1 + n_steps_each)`` (fewer
    with ``predictor='none'``/``corrector='none'``).

    Args:
        predictor: ``euler_maruyama``, ``reverse_diffusion``, ``ancestral_sampling`` or ``none`` (or a callable
            with the signature of :func:`scoresde.sampling.steps.euler_maruyama`).
        corrector: ``langevin``, ``ald`` (annealed Langevin) or ``none`` (or a callable).
        snr: signal-to-noise ratio of the corrector steps (0.16 in Score SDE for CIFAR-10 VE).
        n_steps_each: corrector steps per noise level.
        nfe: a budget of network calls instead of ``steps``: ``nfe // (1 + n_steps_each)`` steps (the predictor's
            call and the corrector's per level; named predictor and corrector only, whose cost is known).
        probability_flow: predict with the probability-flow ODE instead of the reverse SDE.
        eps: smallest time of the grid; avoids the singular score at ``t = 0``. ``None``: the SDE's
            ``sampling_eps`` (``1e-3``; EDM: ``sigma_min``).
        denoise: return the noise-free mean of the last step.
        grid: the time grid; grids other than ``uniform`` (and explicit ``times``) need a predictor that steps from
            ``t`` to ``t_next`` (``euler_maruyama``, ``ancestral_sampling``, ``none``): ``reverse_diffusion``
            follows the SDE's uniform discretisation.
        callback: ``callback(i, t, x, x0_pred)`` after each step (:data:`scoresde.sampling.common.Callback`).
    """
    sde = model.sde
    predictor_fn = lookup("predictor", predictor, PREDICTORS)
    if grid not in GRIDS:
        raise ValueError(f"unknown time grid {grid!r}; valid time grids are: {', '.join(GRIDS)}")
    uniform = grid in ("uniform", "time_uniform") and times is None
    if not uniform and predictor_fn is PREDICTORS["reverse_diffusion"]:
        raise ValueError(f"grid={grid!r} (or explicit times) needs a predictor that steps from t to t_next "
                         "(euler_maruyama, ancestral_sampling, none); reverse_diffusion uses the SDE's uniform "
                         "N-step discretisation")
    corrector_fn = lookup("corrector", corrector, CORRECTORS)
    if predictor_fn is PREDICTORS["none"] and corrector_fn is CORRECTORS["none"]:
        raise ValueError("predictor='none' with corrector='none' would return the prior draw unchanged")
    if not (isinstance(n_steps_each, int) and n_steps_each >= 1):
        raise ValueError(f"n_steps_each must be a positive integer, got {n_steps_each!r}")
    if not snr > 0:
        raise ValueError(f"snr must be positive, got {snr!r}")
    eps = resolve_eps(sde, eps)
    if nfe is not None:
        if callable(predictor) or callable(corrector):
            raise ValueError("nfe= needs a named predictor and corrector (the network calls of a callable are "
                             "unknown); pass steps instead")
        per_level = (int(predictor_fn is not PREDICTORS["none"])
                     + n_steps_each * int(corrector_fn is not CORRECTORS["none"]))
        steps = steps_from_budget(nfe, steps, times, sampler="pc", cost=lambda n: n * per_level)
    if times is not None:
        if steps is not None:
            raise ValueError("pass steps (with grid) or an explicit times grid, not both")
        grid_t = check_times(times, sde)
    else:
        n = sde.N if steps is None else steps
        check_count("steps", n)
        grid_t = (torch.linspace(sde.T, eps, n, dtype=torch.float64) if uniform or n == 1
                  else time_steps(sde, n - 1, grid=grid, eps=eps))
    step_sde = sde.with_steps(len(grid_t))
    counted = counting(model, cond)
    rsde = step_sde.reverse(counted.score, probability_flow)
    ts = torch.cat([grid_t, torch.zeros(1, dtype=torch.float64)]).to(device=z.device, dtype=z.dtype)
    x, x_mean = z, z
    with torch.no_grad():
        for i in tqdm(range(len(grid_t)), disable=not progress, desc="PC sampling"):
            t = ts[i].expand(z.shape[0])
            t_next = ts[i + 1].expand(z.shape[0])
            x, x_mean = corrector_fn(step_sde, counted.score, x, t, snr, n_steps_each, generator)
            x, x_mean = predictor_fn(rsde, x, t, t_next, generator)
            report(callback, i, ts[i + 1], x, counted)
    return (x_mean if denoise else x), counted.calls


def sample_ode(
    model: DiffusionModel,
    z: Tensor,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    eps: float | None = None,
    denoise: bool = False,
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[Tensor, int]:
    """Integrate the probability-flow ODE (Song et al. 2021, eq. 13) from ``T`` to ``eps`` adaptively.

    Args:
        rtol, atol: tolerances of the adaptive solver (1e-5 in Score SDE).
        method: see :func:`scoresde.numerics.odeint.integrate` (``dopri5`` is RK45 on the tensor's device).
        eps: end time of the integration; ``None``: the SDE's ``sampling_eps`` (``1e-3``; EDM: ``sigma_min``).
        denoise: finish with one Tweedie denoising step at ``eps`` (``sde.denoise``).
        generator: unused (the ODE is deterministic); accepted so every sampler has the same signature.
        progress: unused (adaptive solvers have no fixed step count).

    Use it for likelihood-consistent deterministic samples and encodings at a chosen tolerance; for a fixed,
    small budget of network calls prefer a fixed-step sampler (``ddim``).
    """
    sde = model.sde
    eps = resolve_eps(sde, eps)
    if method not in ADAPTIVE_METHODS:  # fixed-step solvers of this ODE are the fixed-step samplers (ddim, heun, ...)
        raise ValueError(f"unknown ODE method {method!r}; valid methods are: {', '.join(ADAPTIVE_METHODS)}")
    counted = counting(model, cond)
    rsde = sde.reverse(counted.score, probability_flow=True)

    def drift(t: float, x: Tensor) -> Tensor:
        return rsde.sde(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))[0]

    with torch.no_grad():
        x, _ = integrate(drift, z, sde.T, eps, rtol=rtol, atol=atol, method=method)
        if denoise:
            t_eps = torch.full((x.shape[0],), eps, dtype=x.dtype, device=x.device)
            x = sde.denoise(x, t_eps, counted.score(x, t_eps))
    return x, counted.calls
