"""Reference samplers: predictor–corrector and the probability-flow ODE (Song et al. 2021, §4.2–4.3).

Both are pure functions ``sample_x(sde, score_fn, z, ...) -> (x, nfe)`` that start from a prior draw ``z`` and
return the final state and the number of score evaluations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..sdes.base import SDE, ScoreFn
from .odeint import integrate
from .phase_space import TIME_GRIDS, sample_sscs, time_grid
from .steps import CORRECTORS, PREDICTORS, lookup


class CountingScore:
    """Wrap ``score_fn`` and count its evaluations (the NFE of a sampler)."""

    def __init__(self, score_fn: ScoreFn) -> None:
        self.score_fn = score_fn
        self.calls = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        return self.score_fn(x, t)


def _check_eps(eps: float, sde: SDE) -> None:
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")


def sample_pc(
    sde: SDE,
    score_fn: ScoreFn,
    z: Tensor,
    *,
    predictor: str | Callable = "reverse_diffusion",
    corrector: str | Callable = "langevin",
    snr: float = 0.16,
    n_steps_each: int = 1,
    probability_flow: bool = False,
    eps: float = 1e-3,
    denoise: bool = True,
    grid: str = "uniform",
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[Tensor, int]:
    """Predictor–corrector sampling (Song et al. 2021, Alg. 1) on the grid ``t_i = linspace(T, eps, N)``
    (``grid="uniform"``) or the quadratic grid ``t_i = eps + (T - eps)(1 - i/(N-1))^2`` (CLD/PSLD's striding).

    At each ``t_i`` the corrector runs ``n_steps_each`` Langevin steps, then the predictor moves to
    ``t_{i+1}`` (``t_N = 0`` after the last grid point). With ``denoise=True`` the last step's noise-free
    mean is returned (the reference's ``noise_removal``).

    Args:
        predictor: ``euler_maruyama``, ``reverse_diffusion``, ``ancestral_sampling`` or ``none`` (or a callable
            with the signature of :func:`scoresde.sampling.steps.euler_maruyama`).
        corrector: ``langevin``, ``ald`` (annealed Langevin) or ``none`` (or a callable).
        snr: signal-to-noise ratio of the corrector steps (0.16 in Score SDE for CIFAR-10 VE).
        n_steps_each: corrector steps per noise level.
        probability_flow: predict with the probability-flow ODE instead of the reverse SDE.
        eps: smallest time of the grid; avoids the singular score at ``t = 0``.
        denoise: return the noise-free mean of the last step.
        grid: ``"uniform"`` or ``"quadratic"`` (:func:`scoresde.sampling.phase_space.time_grid`); the quadratic
            grid needs a predictor that steps from ``t`` to ``t_next`` (``euler_maruyama``, ``ancestral_sampling``,
            ``none``): ``reverse_diffusion`` follows the SDE's uniform ``N``-step discretisation.
    """
    predictor_fn = lookup("predictor", predictor, PREDICTORS)
    if grid not in TIME_GRIDS:
        raise ValueError(f"unknown time grid {grid!r}; valid time grids are: {', '.join(TIME_GRIDS)}")
    if grid != "uniform" and predictor_fn is PREDICTORS["reverse_diffusion"]:
        raise ValueError(f"grid={grid!r} needs a predictor that steps from t to t_next (euler_maruyama, "
                         "ancestral_sampling, none); reverse_diffusion uses the SDE's uniform N-step discretisation")
    corrector_fn = lookup("corrector", corrector, CORRECTORS)
    if predictor_fn is PREDICTORS["none"] and corrector_fn is CORRECTORS["none"]:
        raise ValueError("predictor='none' with corrector='none' would return the prior draw unchanged")
    if not (isinstance(n_steps_each, int) and n_steps_each >= 1):
        raise ValueError(f"n_steps_each must be a positive integer, got {n_steps_each!r}")
    if not snr > 0:
        raise ValueError(f"snr must be positive, got {snr!r}")
    _check_eps(eps, sde)
    counted = CountingScore(score_fn)
    rsde = sde.reverse(counted, probability_flow)
    times = (torch.linspace(sde.T, eps, sde.N, dtype=torch.float64) if grid == "uniform" or sde.N == 1
             else time_grid(grid, sde.T, eps, sde.N - 1))
    times = torch.cat([times, torch.zeros(1, dtype=torch.float64)]).to(device=z.device, dtype=z.dtype)
    x, x_mean = z, z
    with torch.no_grad():
        for i in tqdm(range(sde.N), disable=not progress, desc="PC sampling"):
            t = times[i].expand(z.shape[0])
            t_next = times[i + 1].expand(z.shape[0])
            x, x_mean = corrector_fn(sde, counted, x, t, snr, n_steps_each, generator)
            x, x_mean = predictor_fn(rsde, x, t, t_next, generator)
    return (x_mean if denoise else x), counted.calls


def sample_ode(
    sde: SDE,
    score_fn: ScoreFn,
    z: Tensor,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    eps: float = 1e-3,
    denoise: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[Tensor, int]:
    """Integrate the probability-flow ODE (Song et al. 2021, eq. 13) from ``T`` to ``eps`` adaptively.

    Args:
        rtol, atol: tolerances of the adaptive solver (1e-5 in Score SDE).
        method: see :func:`scoresde.sampling.odeint.integrate` (``dopri5`` is RK45 on the tensor's device).
        eps: end time of the integration.
        denoise: finish with one Tweedie denoising step at ``eps`` (``sde.denoise``).
        generator: unused (the ODE is deterministic); accepted so every sampler has the same signature.
        progress: unused (adaptive solvers have no fixed step count).
    """
    _check_eps(eps, sde)
    counted = CountingScore(score_fn)
    rsde = sde.reverse(counted, probability_flow=True)

    def drift(t: float, x: Tensor) -> Tensor:
        return rsde.sde(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))[0]

    with torch.no_grad():
        x, _ = integrate(drift, z, sde.T, eps, rtol=rtol, atol=atol, method=method)
        if denoise:
            t_eps = torch.full((x.shape[0],), eps, dtype=x.dtype, device=x.device)
            x = sde.denoise(x, t_eps, counted(x, t_eps))
    return x, counted.calls


SAMPLERS: dict[str, Callable[..., tuple[Tensor, int]]] = {"pc": sample_pc, "ode": sample_ode, "sscs": sample_sscs}
