"""Time grids fitted to the model: the times of a fixed-step sampler chosen to minimise its error against a fine solve
of the *same* model (the idea of Align Your Steps, Sabour, Fidler & Kreis 2024, for any SDE, schedule and sampler).

The fit needs no data and no ground truth. From ``B`` prior draws ``z_b ~ p_T`` (the probe draws, from the given
generator) a fine solve gives the model's own answers ``x_ref(z_b)``; a candidate grid ``t`` is scored by running the
sampler with ``times=t`` from the same draws:

* deterministic samplers (DDIM ``eta = 0``, DPM-Solver(++), UniPC, Heun without churn, ...): the **path error**
  ``E(t) = (1/B) sum_b ||x_t(z_b) - x_ref(z_b)|| / sqrt(d)`` of the ODE the sampler solves. ``x_ref`` is the
  probability-flow ODE solved by the adaptive ``ode`` sampler at ``rtol = atol = reference_tol``; on phase-space SDEs
  (PSLD, CLD) the samplers that follow the *kernel flow* (``dpm_solver``; ``ddim`` with ``flow="kernel"``) are
  compared with a fine DPM-Solver-3 solve of that flow (``reference_steps`` steps), as in ``benchmarks/RESULTS.md``.
* stochastic samplers (``pc``, ``sscs``, DDIM ``eta > 0``, ``sde-dpmsolver++``, Heun with churn): a
  **distributional** criterion, the energy distance (Székely & Rizzo 2013) between the sampler's ``B`` samples and the
  ``B`` probability-flow samples ``x_ref`` (both of the model's distribution when the steps are fine). The sampler's
  noise is drawn from one fixed seed in every evaluation (common random numbers), so the objective is a deterministic
  function of the grid. (AYS's KL upper bound needs data draws ``x_0`` at every noise level; the energy distance
  needs only the model's own samples.)

Whether a sampler is stochastic is found out, not listed: it is run twice on one draw with two noise seeds.

**Parametrisation.** The ends stay where the sampler puts them (``T`` and the sampler's ``eps``); the ``n`` interval
lengths in ``s`` (``space="lambda"``: the half log-SNR ``lambda = log(alpha/sigma)``, the default for VE/VP/
sub-VP; ``space="time"``: ``t``, the default for PSLD/CLD, whose matrix ``lambda`` is inverted by an iterative
solve that would dominate the fit's cost) are ``softmax(u) (s(eps) - s(T))``, ``u`` in
``R^n``: every ``u`` is a strictly monotone grid, and every monotone grid with these ends is one ``u``.

**Optimiser.** Compass (pattern) search on ``u`` with Hooke–Jeeves pattern moves (Kolda, Lewis & Torczon 2003):
derivative-free, because the samplers run without autograd (and a grid's error need not be smooth in it: order
changes, ``lower_order_final``); it only accepts improvements, so the fitted grid is never worse on the probe draws
than its start, the best of the built-in grids (:data:`scoresde.numerics.grids.GRIDS`); deterministic, so the same
generator gives the same grid.

**Budget.** ``nfe`` is spent as the sampler spends it: the number of times is the largest whose *counted* network
calls (a run on a zero model) stay within ``nfe``: ``nfe + 1`` times for one call per interval (DDIM, multistep
DPM-Solver, UniPC), ``nfe`` with ``denoise``, ``(nfe + 1) // 2`` noise levels for Heun, ``nfe // order + 1`` for a
singlestep DPM-Solver, ``nfe // (1 + n_steps_each)`` for PC with a corrector.

**Cost.** One fine solve of the ``B`` probe draws (``ode``: a few hundred calls of batch ``B``,
``info.reference_calls``) plus at most ``max_evals`` runs of the sampler at ``nfe`` calls each (one batch of ``B``):
at most ``max_evals * nfe`` batched network calls (``info.network_calls`` counts them all). On the 2-D mixture a fit
takes seconds; on the digits model minutes on a CPU (``benchmarks/fitted_grids.py``, ``benchmarks/RESULTS.md``).

**Caching.** The grid is a small 1-D tensor of times: fit once per model, sampler, options and ``nfe`` and pass it as
``sample(..., times=grid)``; ``scoresde optimize-grid --workdir RUN --sampler S --nfe N`` stores it in the run folder
(``RUN/grids/``, a ``sampling`` section with ``times``) and ``scoresde sample --grid fitted`` uses it; in a config it
is ``sampling.times``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel, ScoreFunctionModel, model_and_arguments
from ..numerics.checks import check_choice, check_count
from ..numerics.grids import GRIDS, time_steps
from ..numerics.times import resolve_eps
from ..sdes.base import SDE, ScoreFn
from ..toy.distances import energy_distance
from .api import sample
from .registry import SAMPLERS

__all__ = ["GridFit", "optimize_grid"]

#: parametrisation spaces of the interval lengths (module docstring)
SPACES = ("lambda", "time")
#: the built-in grids tried as starting points, in this order (the first of equal scores wins)
START_GRIDS = ("logSNR", "time_uniform", "time_quadratic", "karras", "quadratic")


@dataclass
class GridFit:
    """What :func:`optimize_grid` did (``return_info=True``).

    Attributes:
        times: the fitted grid (float64, decreasing, from ``T`` to the sampler's ``eps``).
        sampler, options: the sampler and the options it was fitted with (pass the same to :func:`scoresde.sample`).
        nfe: network calls of the sampler on the fitted grid (counted), at most the budget.
        criterion: ``"path_error"`` (deterministic samplers) or ``"energy_distance"`` (stochastic ones).
        start_grid: the built-in grid the search started from (the best of them on the probe draws).
        start_value, value: the criterion on the probe draws at the start and for the fitted grid.
        evaluations: sampler runs of the fit; network_calls: batched calls in all (reference included);
        reference_calls: those of the fine solve; probes: probe draws; seconds: wall time of the fit.
    """

    times: Tensor
    sampler: str
    nfe: int
    criterion: str
    start_grid: str
    start_value: float
    value: float
    evaluations: int
    network_calls: int
    reference_calls: int
    probes: int
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)


def _zero_score(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
    return torch.zeros_like(x)


class _Grid:
    """Monotone grids with fixed ends as ``softmax`` increments in ``lambda`` or ``t`` (module docstring)."""

    def __init__(self, sde: SDE, t_first: float, t_last: float, space: str) -> None:
        self.sde, self.space = sde, space
        ends = torch.tensor([t_first, t_last], dtype=torch.float64)
        self.ends = ends
        self.s_ends = self.to_s(ends)

    def to_s(self, t: Tensor) -> Tensor:
        return self.sde.lambda_t(t) if self.space == "lambda" else t

    def times(self, u: Tensor) -> Tensor | None:
        """The grid of ``u``, or ``None`` where rounding made it non-monotone."""
        w = torch.softmax(u, dim=0)
        frac = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(w, 0)])
        s = self.s_ends[0] + (self.s_ends[1] - self.s_ends[0]) * frac
        t = self.sde.t_from_lambda(s) if self.space == "lambda" else s
        t = t.clone()
        t[0], t[-1] = self.ends[0], self.ends[1]
        ok = bool((t[1:] < t[:-1]).all()) and bool(torch.isfinite(t).all()) and float(t[-1]) > 0
        return t if ok else None

    def params(self, t: Tensor) -> Tensor:
        """``u`` of a monotone grid ``t`` with these ends (centred)."""
        d = torch.diff(self.to_s(t.to(torch.float64)))
        logs = torch.log(d / (self.s_ends[1] - self.s_ends[0]))
        return logs - logs.mean()


def _run(model: DiffusionModel, z: Tensor, sampler: str, times: Tensor | None, seed: int | None, dtype: torch.dtype,
         cond: dict[str, Any] | None, options: dict[str, Any]) -> tuple[Tensor, int]:
    g = None if seed is None else torch.Generator(z.device).manual_seed(seed)
    extra = {} if times is None else {"times": times}
    x, info = sample(model, None, None, sampler, x_T=z, generator=g, dtype=dtype, cond=cond, return_info=True,
                     **extra, **options)
    return x, info.nfe


def _grid_size(fake: DiffusionModel, z1: Tensor, sampler: str, nfe: int, eps: float, options: dict[str, Any]
               ) -> tuple[int, int]:
    """``(number of times, counted calls)``: the most times whose counted calls on the zero model stay within
    ``nfe``. Every interval costs at least one call, so at most ``nfe + 1`` times; the calls grow with the times, so
    a bisection finds it (a grid too short for the sampler, e.g. multistep order 3, counts as within budget)."""
    found: dict[int, int | None] = {}
    error: list[ValueError] = []

    def calls(k: int) -> int | None:
        if k not in found:
            try:
                found[k] = _run(fake, z1, sampler, time_steps(fake.sde, k - 1, grid="uniform", eps=eps), None,
                                z1.dtype, None, options)[1]
            except ValueError as e:  # too few intervals for this sampler
                found[k] = None
                error.append(e)
        return found[k]

    def within(k: int) -> bool:
        c = calls(k)
        return c is None or c <= nfe

    lo, hi = 2, nfe + 1
    if not within(lo):
        raise ValueError(f"nfe={nfe} is too small for {sampler} with a time grid: two times cost {calls(lo)} calls")
    while lo < hi:  # the largest k in [lo, hi] within the budget
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if within(mid) else (lo, mid - 1)
    if calls(lo) is None:
        raise error[-1]
    return lo, calls(lo)


def _kernel_flow(sde: SDE, sampler: str, options: dict[str, Any]) -> bool:
    """Whether a deterministic sampler on a phase-space SDE follows the kernel flow rather than the probability-flow
    ODE (``dpm_solver``; ``ddim`` with ``flow="kernel"``: :mod:`scoresde.sampling.dpm_solver`)."""
    if sde.scalar_schedule:
        return False
    return sampler == "dpm_solver" or (sampler == "ddim" and options.get("flow", "kernel") == "kernel")


def optimize_grid(
    sde: SDE | DiffusionModel,
    score_fn: ScoreFn | Sequence[int] | None = None,
    shape: Sequence[int] | None = None,
    *,
    sampler: str = "dpm_solver",
    nfe: int = 10,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    cond: dict[str, Any] | None = None,
    space: str | None = None,
    max_evals: int = 300,
    step: float = 0.5,
    min_step: float = 0.02,
    reference_tol: float = 1e-6,
    reference_steps: int = 200,
    return_info: bool = False,
    **sampler_options: Any,
) -> Tensor | tuple[Tensor, GridFit]:
    """The times of ``sampler`` at a budget of ``nfe`` network calls that minimise its error against a fine solve of
    the same model (module docstring: path error for deterministic samplers, energy distance for stochastic ones).

    Two forms, as :func:`scoresde.sample`: ``optimize_grid(sde, score_fn, shape, sampler=..., nfe=...)`` and
    ``optimize_grid(model, shape, sampler=..., nfe=...)``. Use the result as ``sample(..., sampler, times=grid,
    **sampler_options)`` with the same options: it replaces ``grid``/``steps``/``nfe`` there. Prefer it to a built-in
    grid when one model is sampled many times at a small budget (5-20 calls), where the grid matters as much as the
    solver's order; at 50+ calls every built-in grid is close.

    Args:
        sde, score_fn, shape: as for :func:`scoresde.sample`; the batch of ``shape`` is the number of probe draws
            (256 is plenty for the path error of 2-D data; 32-64 for images).
        sampler: a fixed-step sampler of :data:`scoresde.sampling.SAMPLERS`.
        nfe: the budget of network calls the grid is fitted for.
        generator: the probe draws ``z ~ p_T`` and the seed of a stochastic sampler's noise come from it.
        dtype, device, cond: as for :func:`scoresde.sample`.
        space: ``"lambda"`` (default for scalar schedules) or ``"time"`` (default for phase space): where the
            interval lengths are parametrised.
        max_evals: most sampler runs of the search (each ``nfe`` calls on the probe batch).
        step, min_step: first and last step of the compass search on the softmax logits ``u``.
        reference_tol: ``rtol = atol`` of the adaptive probability-flow solve (the reference).
        reference_steps: steps of the DPM-Solver-3 reference of kernel-flow samplers on phase-space SDEs.
        return_info: also return a :class:`GridFit` (start grid, criterion before/after, cost).
        **sampler_options: options of ``sampler`` (``order``, ``algorithm``, ``eps``, ``denoise``, ...; ``grid``
            joins the starting points); not ``steps``, ``times`` or ``nfe``.
    """
    started = time.perf_counter()
    model, (shape,) = model_and_arguments(sde, score_fn, shape, last_default=None)
    sde = model.sde
    spec = SAMPLERS.get(sampler)
    if not spec.fixed_steps:
        fixed = [name for name, other in SAMPLERS.items() if other.fixed_steps]
        raise ValueError(f"optimize_grid needs a fixed-step sampler ({', '.join(fixed)}); {sampler!r} chooses its own "
                         "steps")
    check_count("nfe", nfe)
    check_count("max_evals", max_evals)
    for name in ("steps", "times", "nfe"):
        if name in sampler_options:
            raise ValueError(f"optimize_grid chooses the times for the budget nfe={nfe}: pass no {name} among the "
                             "sampler's options")
    if not (0 < min_step <= step):
        raise ValueError(f"need 0 < min_step <= step, got step={step!r}, min_step={min_step!r}")
    if not reference_tol > 0:
        raise ValueError(f"reference_tol must be positive, got {reference_tol!r}")
    check_count("reference_steps", reference_steps)
    has_lambda = callable(getattr(sde, "lambda_t", None)) and callable(getattr(sde, "t_from_lambda", None))
    default_space = "lambda" if has_lambda and sde.scalar_schedule else "time"  # a matrix lambda inverts iteratively
    space = default_space if space is None else check_choice("space", space, SPACES)
    if space == "lambda" and not has_lambda:
        raise ValueError(f"space 'lambda' needs an SDE with lambda_t and t_from_lambda; {type(sde).__name__} has "
                         "none (use space='time')")
    options = dict(sampler_options)
    start_names = [options["grid"]] if "grid" in options else []
    if options.get("grid") is not None:
        check_choice("grid", options["grid"], tuple(GRIDS))
    eps = resolve_eps(sde, {**spec.options(), **options}.get("eps"))  # the sampler's last time (None: the SDE's)

    # the budget and the kind of sampler, read off runs on a zero model (nothing is computed from a formula)
    fake = ScoreFunctionModel(sde, _zero_score)
    z1 = sde.prior_sampling(sde.state_shape((1, *shape[1:])), torch.Generator().manual_seed(0), dtype=dtype)
    # the sampler's own option checks, and whether it is stochastic: its output changes with the noise seed
    a = _run(fake, z1, sampler, None, 1, dtype, None, {**options, "nfe": nfe})[0]
    stochastic = not torch.equal(a, _run(fake, z1, sampler, None, 2, dtype, None, {**options, "nfe": nfe})[0])
    k, _ = _grid_size(fake, z1, sampler, nfe, eps, options)
    grid = _Grid(sde, sde.T, eps, space)

    # probe draws, the noise seed of a stochastic sampler, and the fine solve
    z = sde.prior_sampling(sde.state_shape(tuple(shape)), generator, dtype=dtype, device=device)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else None)) \
        if stochastic else None
    denoise = {**spec.options(), **options}.get("denoise", False)
    denoise = False if sampler == "pc" else bool(denoise)  # pc's denoise is its last mean, not Tweedie's
    if not stochastic and _kernel_flow(sde, sampler, options):
        reference = {"algorithm": "dpmsolver", "order": 3, "method": "multistep", "grid": "time_quadratic",
                     "steps": reference_steps, "eps": eps, "denoise": denoise}
        x_ref, reference_calls = _run(model, z, "dpm_solver", None, None, dtype, cond, reference)
    else:
        x_ref, reference_calls = _run(model, z, "ode", None, None, dtype, cond,
                                      {"rtol": reference_tol, "atol": reference_tol, "eps": eps, "denoise": denoise})
    x_ref = x_ref.flatten(1)
    d = x_ref.shape[1]

    counter = {"evals": 0, "calls": 0, "nfe": 0}

    def objective(times: Tensor | None) -> float:
        if times is None:
            return math.inf
        x, calls = _run(model, z, sampler, times, seed, dtype, cond, options)
        counter["evals"] += 1
        counter["calls"] += calls
        counter["nfe"] = calls
        x = x.flatten(1)
        if not bool(torch.isfinite(x).all()):
            return math.inf
        if stochastic:
            return energy_distance(x.double(), x_ref.double())
        return float((x - x_ref).double().norm(dim=1).mean()) / math.sqrt(d)

    # start: the best built-in grid with k times
    starts: list[tuple[float, str, Tensor]] = []
    for name in dict.fromkeys([*start_names, *START_GRIDS]):
        try:
            t0 = time_steps(sde, k - 1, grid=name, eps=eps)
        except ValueError:  # a grid this SDE has no schedule for
            continue
        u0 = grid.params(t0)
        starts.append((objective(grid.times(u0)), name, u0))
    best_value, start_name, u = min(starts, key=lambda item: item[0])
    start_value = best_value
    u = u.clone()
    delta = step
    while delta >= min_step and counter["evals"] < max_evals:
        before = u.clone()
        for i in range(len(u)):
            for sign in (1.0, -1.0):
                if counter["evals"] >= max_evals:
                    break
                trial = u.clone()
                trial[i] += sign * delta
                value = objective(grid.times(trial))
                if value < best_value:
                    best_value, u = value, trial
                    break
        if torch.equal(before, u):
            delta /= 2
            continue
        if counter["evals"] < max_evals:  # Hooke-Jeeves pattern move along the sweep's improvement
            trial = u + (u - before)
            value = objective(grid.times(trial))
            if value < best_value:
                best_value, u = value, trial
    times = grid.times(u)
    calls = _run(fake, z1, sampler, times, None, dtype, None, options)[1]
    if not return_info:
        return times
    info = GridFit(times=times, sampler=sampler, nfe=calls, criterion="energy_distance" if stochastic else
                   "path_error", start_grid=start_name, start_value=start_value, value=best_value,
                   evaluations=counter["evals"], network_calls=counter["calls"] + reference_calls,
                   reference_calls=reference_calls, probes=int(shape[0]), seconds=time.perf_counter() - started,
                   options=options)
    return times, info
