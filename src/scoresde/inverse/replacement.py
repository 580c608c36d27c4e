"""The replacement method: ``method="replacement"``, the default of :func:`scoresde.inpaint` and
:func:`scoresde.colorize`.

Paper: Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole, "Score-Based Generative Modeling through
Stochastic Differential Equations", ICLR 2021, App. I (controllable generation: imputation and colorization), on top of
the predictor-corrector sampler of its Alg. 1; the original code's ``get_pc_inpainter`` / ``get_pc_colorizer``.

After every corrector and every predictor update of the PC sampler, the observed coordinates of the state (in the
observation basis) are replaced by a fresh draw of ``p_t(z_t | x_0 = y)`` (:func:`~scoresde.inverse.observation.
noised_observation`). Fastest of the three methods, but biased: the unobserved part never learns which mixture component
the observation selects (measured in ``benchmarks/controllable.py``: weight 0.54 where the exact conditional has 0.85).
Use :mod:`scoresde.inverse.smc` when the conditional law must be right.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import DiffusionModel
from ..numerics.checks import check_count
from ..numerics.times import resolve_eps
from ..sampling.common import counting
from ..sampling.steps import CORRECTORS, PREDICTORS, lookup
from .observation import Observation, noised_observation
from .solve import InverseProblem

__all__ = ["pc_data_consistency", "run_replacement"]


def run_replacement(
    model: DiffusionModel, problem: InverseProblem, z: Tensor, *,
    steps: int | None = None,
    predictor: str | Callable = "reverse_diffusion",
    corrector: str | Callable = "langevin",
    snr: float = 0.16,
    n_steps_each: int = 1,
    probability_flow: bool = False,
    eps: float | None = None,
    denoise: bool = True,
    cond: dict[str, Any], generator: torch.Generator | None, progress: bool,
) -> tuple[Tensor, int, dict[str, Any]]:
    """Score SDE's PC inpainter/colorizer: ``steps`` times ``linspace(T, eps, steps)``; at each, the corrector then the
    predictor, each followed by the replacement of the observed coordinates with a fresh draw of ``p_t(z_t | y)``.

    ``z`` is a prior draw of the state ``(B, k C, ...)``; as in the original, its observed coordinates (in the basis)
    first become the observation's initial state. Returns ``(data, nfe, {})``; with ``denoise`` the data are the
    noise-free mean of the last update (the original returns ``x_mean`` with the last noisy state in the unobserved
    pixels, ``denoise=False`` here). Noiseless measurements with an SVD (:meth:`~scoresde.inverse.solve.InverseProblem.
    observation`): masks and colorization as in the original, other operators in their SVD basis."""
    obs = problem.observation("replacement", z.shape[1] // problem.data_shape[1])
    return pc_data_consistency(model, obs, z, steps=steps, predictor=predictor, corrector=corrector, snr=snr,
                               n_steps_each=n_steps_each, probability_flow=probability_flow, eps=eps, denoise=denoise,
                               weight=1.0, cond=cond, generator=generator, progress=progress)


def pc_data_consistency(
    model: DiffusionModel, obs: Observation, z: Tensor, *, steps: int | None, predictor: str | Callable,
    corrector: str | Callable, snr: float, n_steps_each: int, probability_flow: bool, eps: float | None, denoise: bool,
    weight: float, cond: dict[str, Any], generator: torch.Generator | None, progress: bool,
) -> tuple[Tensor, int, dict[str, Any]]:
    """The PC sampler with a data-consistency step after every corrector and predictor update: the observed
    coordinates ``u`` of the state (in the observation basis) become ``(1 - weight) u + weight y_t`` with ``y_t`` a
    fresh draw of ``p_t(z_t | y)`` (``weight = 1``: replacement; Song et al. 2022's ``lambda`` otherwise)."""
    sde = model.sde
    predictor_fn = lookup("predictor", predictor, PREDICTORS)
    corrector_fn = lookup("corrector", corrector, CORRECTORS)
    check_count("n_steps_each", n_steps_each)
    if not snr > 0:
        raise ValueError(f"snr must be positive, got {snr!r}")
    eps = resolve_eps(sde, eps)
    n = sde.N if steps is None else steps
    check_count("steps", n)
    state_mask = obs.state_mask
    if type(obs) is Observation:  # the original's start: observation in, prior (masked in pixels) out, then rotated
        z = obs.state_from_basis(obs.state_to_basis(z * (1.0 - state_mask)) + sde.initial_state(obs.y) * state_mask)
    else:  # in an SVD basis: the observed coordinates of the prior draw replaced
        z = obs.merge(z, sde.initial_state(obs.y))
    step_sde = sde.with_steps(n)
    counted = counting(model, cond)
    rsde = step_sde.reverse(counted.score, probability_flow)
    grid = torch.linspace(sde.T, eps, n, dtype=torch.float64)
    ts = torch.cat([grid, torch.zeros(1, dtype=torch.float64)]).to(device=z.device, dtype=z.dtype)

    def replace(update: tuple[Tensor, Tensor], t: Tensor) -> tuple[Tensor, Tensor]:
        x, x_mean = update
        noised, mean = noised_observation(sde, obs, t, generator)
        if weight != 1.0:  # Song et al. 2022's convex combination with the current coordinates
            noised = (1.0 - weight) * obs.state_to_basis(x) + weight * noised
            mean = (1.0 - weight) * obs.state_to_basis(x_mean) + weight * mean
        return obs.merge(x, noised), obs.merge(x_mean, mean)

    x = x_mean = z
    with torch.no_grad():
        for i in tqdm(range(n), disable=not progress, desc="replacement"):
            t = ts[i].expand(z.shape[0])
            x, x_mean = replace(corrector_fn(step_sde, counted.score, x, t, snr, n_steps_each, generator), t)
            t_next = ts[i + 1].expand(z.shape[0])  # read only by predictors that step to t_next (euler_maruyama)
            x, x_mean = replace(predictor_fn(rsde, x, t, t_next, generator), t)
    return sde.data_part(x_mean if denoise else x), counted.calls, {}
