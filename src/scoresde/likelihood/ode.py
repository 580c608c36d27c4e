"""Exact likelihood through the probability-flow ODE (Song et al. 2021, App. D.2), on data for every SDE.

``log p_eps(z(eps)) = log p_T(z(T)) + int_eps^T div f_pf(z(t), t) dt`` where ``f_pf = f - 1/2 G G^T score`` is the
probability-flow drift (eq. 13) and the divergence is exact (``D`` Jacobian products) or a Hutchinson–Skilling
estimate ``v^T (d f_pf / d z) v`` with a probe ``v`` fixed along the trajectory (eq. 40), from the shared engine
:func:`scoresde.numerics.divergence`.

When the SDE's state carries auxiliary variables besides the data (PSLD, CLD: ``z = [x, m]``, ``sde.has_auxiliary``)
the likelihood of the data is not available exactly: each example gets momentum draws ``m_0 ~ q`` (``sde.augment``)
and the entropy-corrected augmented bound (Dockhorn et al. 2022, §3.2 and App. B.4)

    ``log p(x) >= E_{m_0 ~ q} [log p(x, m_0) - log q(m_0)]``

is returned (``sde.auxiliary_logp`` is ``log q``), with equality for the true model. ``info.bound`` says so.

Random draws come probe-major (row ``p B + b`` is draw ``p`` of example ``b``) from one ``generator``, in the order
dequantisation (bits/dim), momentum, probes; or, with a list of one generator per example, each example's draws
come from its own generator in that order, so its value does not depend on its batch (up to the adaptive solver's
batch-wide error control): the convention of :func:`scoresde.likelihood.data_nll` ``(seed=, indices=)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel, check_cond, model_and_arguments
from ..numerics.checks import DATA_TENSOR, check_count, check_tensor
from ..numerics.divergence import check_ad, divergence, draw_probes, estimator_name
from ..numerics.exponential import (
    EXPONENTIAL_DEFAULT_GRID,
    EXPONENTIAL_METHODS,
    GRID_INTERPOLATION,
    integrate_log_density,
    require_scalar_schedule,
)
from ..numerics.grids import time_steps
from ..numerics.odeint import FIXED_STEP_METHODS, integrate
from ..numerics.times import resolve_eps
from ..sdes.base import SDE, ScoreFn

TRACE_ESTIMATORS = ("hutchinson-rademacher", "hutchinson-gaussian", "exact")
DEQUANTIZATIONS = ("uniform", "midpoint", "none")

Generators = torch.Generator | Sequence[torch.Generator] | None
"""One generator for the batch, one per example (the per-example convention), or ``None`` (torch's global one)."""


@dataclass
class LikelihoodInfo:
    """Diagnostics of a likelihood computation.

    Attributes:
        nfe: number of evaluations of the ODE right-hand side (each one score evaluation plus its divergence).
        stderr: per-example Monte-Carlo standard error of the returned value over the ``n_probes`` independent
            draws (probes, momenta, dequantisations); zero when nothing is random, NaN when a single random draw
            gives no error estimate.
        prior_logp: per-example ``log p_T(z(T))``, averaged over the draws.
        delta_logp: per-example ``int_eps^T div f_pf dt``, averaged over the draws.
        latent: ``z(T)`` of the first draw, the encoding of the data (its state) under the ODE.
        bound: ``True`` when the value is the entropy-corrected augmented bound (an SDE with auxiliary variables)
            rather than an exact likelihood.
        joint_logp: per-example ``log p(z_0)`` of the state (``log p(x, m_0)`` on phase space; the likelihood
            itself otherwise), averaged over the draws.
        auxiliary_logp: per-example ``log q(m_0)`` subtracted by the bound (zero without auxiliary variables),
            averaged over the draws.
    """

    nfe: int
    stderr: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    latent: Tensor
    bound: bool = False
    joint_logp: Tensor | None = None
    auxiliary_logp: Tensor | None = None


class Draws:
    """The source of a likelihood's random inputs for ``B`` examples with draws stacked probe-major: one generator
    (or ``None``) for the batch, or a sequence of ``B`` generators, example ``b``'s draws all from the ``b``-th."""

    def __init__(self, generator: Generators, B: int) -> None:
        if generator is None or isinstance(generator, torch.Generator):
            self.shared, self.per_example = generator, None
            return
        gens = list(generator)
        if len(gens) != B or not all(isinstance(g, torch.Generator) for g in gens):
            raise ValueError(f"generator must be a torch.Generator or a sequence of one per example ({B}), got "
                             f"{len(gens)} items")
        self.shared, self.per_example = None, gens

    def rows(self, fn: Callable[[Tensor, torch.Generator | None], Tensor], rows: Tensor) -> Tensor:
        """``fn(rows, generator)`` for probe-major ``rows`` (``(n B, ...)``); per example, ``fn`` gets example
        ``b``'s ``n`` rows and its own generator, and the results are put back in probe-major order."""
        if self.per_example is None:
            return fn(rows, self.shared)
        B = len(self.per_example)
        parts = [fn(rows[b::B], g) for b, g in enumerate(self.per_example)]
        return torch.stack(parts, 1).reshape(rows.shape[0], *parts[0].shape[1:])


class Solve(NamedTuple):
    """One ODE solve over ``n`` draws of ``B`` examples; tensors ``(n, B)`` unless said otherwise."""

    value: Tensor        # joint - auxiliary: the log-likelihood, or the augmented bound
    joint: Tensor        # log p(z_0)
    auxiliary: Tensor    # log q(aux_0) (zeros without augmentation)
    prior: Tensor
    delta: Tensor
    latent: Tensor       # (n B, ...): z(T) of every row
    nfe: int
    random: bool         # whether anything was drawn (probes or momenta)


def repeat_rows(x: Tensor, n: int) -> Tensor:
    """``n`` copies of a batch stacked probe-major: row ``p B + b`` is ``x[b]``."""
    return x.repeat(n, *([1] * (x.dim() - 1)))


def solve(sde: SDE, model: DiffusionModel, rows: Tensor, n: int, draws: Draws, *, estimator: str,
          augment: bool, cond: dict[str, Any], rtol: float, atol: float, eps: float, method: str,
          divergence_ad: str, times: Tensor | None = None, grid: str | None = None) -> Solve:
    """The likelihood of probe-major ``rows`` (``n`` draws of ``B`` examples; data or states): augment data to
    states when ``augment`` (``sde.augment``, the momentum draws), draw the probes, solve the probability-flow ODE
    with the augmented state ``[z, delta_logp]`` from ``eps`` to ``T`` (Song et al. 2021, App. D.2, eqs. 39–40;
    Chen et al. 2018, Thm. 1) and add the prior log-density; subtract ``log q`` of the momenta."""
    B = rows.shape[0] // n
    z = draws.rows(lambda r, g: sde.augment(r, g), rows) if augment else rows
    probes = None
    if estimator != "exact":
        probes = draws.rows(lambda r, g: draw_probes(r, estimator, 1, g)[0], z)[None]
    cond = {k: (None if v is None else repeat_rows(v, n)) for k, v in cond.items()}
    score = model.score if not cond else (lambda x, t: model.score(x, t, **cond))
    rsde = sde.reverse(score, probability_flow=True)
    D = z[0].numel()
    calls = [0]

    def rhs(t: float, state: Tensor) -> Tensor:
        calls[0] += 1
        with torch.enable_grad():
            zt = state[:, :D].reshape(z.shape).detach().requires_grad_(True)
            vec_t = torch.full((zt.shape[0],), t, dtype=zt.dtype, device=zt.device)

            def drift(zz: Tensor) -> Tensor:
                return rsde.sde(zz, vec_t)[0]

            out = None if divergence_ad == "forward" else drift(zt)
            div, out = divergence(drift, zt, out, estimator, probes, divergence_ad, create_graph=False)
        return torch.cat([out.detach().flatten(1), div.detach()[:, None]], dim=1)

    def score_and_divergence(t: float, zt: Tensor) -> tuple[Tensor, Tensor]:
        calls[0] += 1
        with torch.enable_grad():
            zt = zt.detach().requires_grad_(True)
            vec_t = torch.full((zt.shape[0],), t, dtype=zt.dtype, device=zt.device)
            fn = lambda zz: score(zz, vec_t)  # noqa: E731
            out = None if divergence_ad == "forward" else fn(zt)
            div, out = divergence(fn, zt, out, estimator, probes, divergence_ad, create_graph=False)
        return out.detach(), div.detach()

    state0 = torch.cat([z.flatten(1), torch.zeros(z.shape[0], 1, dtype=z.dtype, device=z.device)], dim=1)
    try:
        if method in EXPONENTIAL_METHODS:
            variable = GRID_INTERPOLATION[grid or EXPONENTIAL_DEFAULT_GRID]
            latent_T, delta_T, nfe = integrate_log_density(score_and_divergence, sde, z, times, method=method,
                                                           interpolation=variable)
            state_T = torch.cat([latent_T.flatten(1), delta_T[:, None]], dim=1)
        else:
            state_T, nfe = integrate(rhs, state0, eps, sde.T, rtol=rtol, atol=atol, method=method, times=times)
    except (RuntimeError, ValueError) as e:
        if augment and calls[0] <= 1:  # the score could not even be evaluated once: a state passed as data?
            raise ValueError(f"the score function failed on the state {tuple(z.shape)} that log_likelihood built "
                             f"from the data {tuple(rows.shape)} (data plus momentum drawn from the initial law); "
                             "if x already is a state [x, m_0], pass x_is_state=True "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
        raise
    latent = state_T[:, :D].reshape(z.shape)
    delta = state_T[:, D]
    prior = sde.prior_logp(latent)
    joint = prior + delta
    aux = sde.auxiliary_logp(z) if augment else torch.zeros_like(joint)
    value = joint - aux if augment else joint
    return Solve(value.reshape(n, B), joint.reshape(n, B), aux.reshape(n, B), prior.reshape(n, B),
                 delta.reshape(n, B), latent, nfe, estimator != "exact" or augment)


def summary(res: Solve, stderr: Tensor, augment: bool) -> LikelihoodInfo:
    """The :class:`LikelihoodInfo` of a solve: draw means, the first draw's latent."""
    B = res.value.shape[1]
    return LikelihoodInfo(nfe=res.nfe, stderr=stderr, prior_logp=res.prior.mean(0), delta_logp=res.delta.mean(0),
                          latent=res.latent[:B], bound=augment, joint_logp=res.joint.mean(0),
                          auxiliary_logp=res.auxiliary.mean(0))


def log_likelihood(
    sde: SDE | DiffusionModel,
    score_fn: ScoreFn | Tensor | None = None,
    x: Tensor | None = None,
    *,
    trace: str = "hutchinson-rademacher",
    n_probes: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
    method: str = "dopri5",
    generator: Generators = None,
    cond: Mapping[str, Any] | None = None,
    x_is_state: bool = False,
    divergence_ad: str = "reverse",
    steps: int | None = None,
    grid: str | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, LikelihoodInfo]:
    """Log-likelihood ``log p_eps(x)`` (nats, per example) of data ``x`` by the instantaneous change of variables
    (Song et al. 2021, App. D.2, eqs. 39–40; Chen et al. 2018, Thm. 1); for an SDE with auxiliary variables (PSLD,
    CLD) the entropy-corrected augmented bound ``E_{m_0}[log p(x, m_0) - log q(m_0)] <= log p(x)`` (Dockhorn et al.
    2022, App. B.4; ``info.bound`` is then ``True``). Use it for the likelihood of continuous data; for discrete
    data (images) use :func:`bits_per_dim`.

    Two call forms, as :func:`scoresde.sample`: ``log_likelihood(sde, score_fn, x)`` with a plain ``score_fn(x, t)``
    (or an adapter) and ``log_likelihood(model, x)`` with a model adapter, which carries its SDE.

    Args:
        sde: the forward SDE, or a model adapter (then the second argument is ``x``).
        score_fn: a model adapter or ``score_fn(x, t)`` of the state (an adapter's SDE must be ``sde``).
        x: batch of data at time ``eps``, ``(B, ...)``; a batch of states with ``x_is_state=True``.
        trace: ``"hutchinson-rademacher"`` or ``"hutchinson-gaussian"`` (unbiased single-probe estimates of the
            divergence, one probe per example fixed along the path) or ``"exact"`` (one Jacobian product per
            dimension: exact, ``D`` times the cost); the vocabulary of :mod:`scoresde.numerics.divergence`.
        n_probes: independent draws per example, averaged; their spread gives ``info.stderr``. Each draw has its own
            Hutchinson probe and (phase space) its own momentum; so with the exact trace it must be 1 unless momenta
            are drawn.
        rtol, atol: tolerances of the adaptive solver (1e-5 as in Score SDE). The solver controls the RMS error of
            the whole batch, as the reference does, so one example's error may exceed the tolerance up to
            ``sqrt(B (D + 1))`` times (measured: ``benchmarks/RESULTS.md``, "Measured numbers moved from
            docstrings").
        eps: starting time of the ODE (the likelihood is that of ``p_eps``); ``None``: the SDE's ``likelihood_eps``
            (``1e-5`` as in Score SDE; EDM: ``sigma_min``, the noise level its sampler ends at).
        method: an adaptive solver of :func:`scoresde.numerics.odeint.integrate` (``dopri5``, ``scipy-RK45``, ...)
            controlled by ``rtol``/``atol``; a fixed-step Runge-Kutta method (``rk4``, ``rk3``, ``heun2``,
            ``euler``; NFE = stages x steps); or, for VE/VP/sub-VP, an exponential multistep method in the half
            log-SNR with the matching quadrature of the log-density (``exp4m``, ``exp3m``, ``exp2m``:
            :func:`scoresde.numerics.exponential.integrate_log_density`; NFE = steps + 1). The fixed-step methods
            take ``steps`` intervals on ``grid`` (cost known in advance). Measured on the 2-D mixture (exact trace,
            mean error against a tight solve; benchmarks/RESULTS.md, "Exponential multistep likelihood"): 1e-3
            nats/dim takes dopri5 74 NFE (VP) / 80 (sub-VP) at its best tolerance, ``rk4`` 80 / 100 and ``exp4m``
            31 / 51 (steps=30 / 50, ``grid="time_quadratic"``); prefer dopri5 when the error must be controlled,
            ``exp4m`` when a fixed cost matters.
        steps: the fixed-step methods' number of intervals; refused with an adaptive method.
        grid: the fixed-step methods' time grid (:func:`scoresde.numerics.grids.time_steps`, from ``eps`` to ``T``);
            ``None`` (default) is ``uniform`` for the Runge-Kutta methods and ``logSNR`` for the exponential ones,
            which interpolate in the variable their grid is uniform in (``lambda``, ``sqrt(t)`` or ``t``). Measured
            (benchmarks/RESULTS.md): on the digits model ``exp4m`` at 46 NFE on ``logSNR`` is 0.001 bits/dim from
            dopri5 and 0.155 on ``time_quadratic`` (images have structure at every noise level); on the 2-D mixture
            (none at small noise) ``time_quadratic`` is 3-20x more accurate on VP/sub-VP. Refused with an adaptive
            method.
        generator: random generator for the momenta and probes (in that order), or a sequence of one generator per
            example (each example's draws from its own: the per-example convention of
            :func:`scoresde.likelihood.data_nll`).
        cond: conditioning inputs, a dict of batch-first tensors passed to the model as keyword arguments.
        x_is_state: ``x`` already is a state (phase space: ``[x, m_0]``): its exact likelihood ``log p_eps(z)``,
            no momentum drawn, no correction (what this function computed for phase-space SDEs before it took data).
            Without it, a state passed as data fails with a message that names this option.
        divergence_ad: ``"reverse"`` or ``"forward"``-mode Jacobian products (same value).
        return_info: also return a :class:`LikelihoodInfo` (NFE, standard error, prior and change-of-variables
            terms, the latent).

    Returns:
        ``logp`` of shape ``(B,)``; ``(logp, info)`` with ``return_info=True``.
    """
    model, (x,) = model_and_arguments(sde, score_fn, x)
    sde = model.sde
    x = check_tensor("x", x, DATA_TENSOR, nonempty=True, finite=True)
    estimator = _check_trace(trace, n_probes)
    augment = sde.has_auxiliary and not x_is_state
    if estimator == "exact" and n_probes != 1 and not augment:
        raise ValueError(f"the exact trace is deterministic: n_probes must be 1, got {n_probes}")
    eps = resolve_eps(sde, eps, likelihood=True)
    check_ad(divergence_ad)
    B = x.shape[0]
    times = solver_grid(sde, method, steps, grid, eps)
    res = solve(sde, model, repeat_rows(x.detach(), n_probes), n_probes, Draws(generator, B), estimator=estimator,
                augment=augment, cond=check_cond(cond, B), rtol=rtol, atol=atol, eps=eps, method=method,
                divergence_ad=divergence_ad, times=times, grid=grid)
    logp = res.value.mean(0)
    return (logp, summary(res, _stderr(res.value, random=res.random), augment)) if return_info else logp


def solver_grid(sde: SDE, method: str, steps: int | None, grid: str | None, eps: float) -> Tensor | None:
    """The increasing time grid ``eps = t_0 < ... < t_steps = T`` of a fixed-step ``method`` (``steps`` intervals on
    ``grid``, :func:`scoresde.numerics.grids.time_steps` reversed; ``grid=None``: ``uniform`` for Runge-Kutta,
    ``logSNR`` for the exponential methods), or ``None`` for an adaptive one; ``steps`` is required by the
    first, and ``steps`` and ``grid`` are refused by the second (they would be ignored)."""
    if method in FIXED_STEP_METHODS:
        if steps is None:
            raise ValueError(f"the fixed-step method {method!r} needs steps (e.g. steps=20)")
        if method in EXPONENTIAL_METHODS:
            require_scalar_schedule(sde, method)
        if grid is None:
            grid = EXPONENTIAL_DEFAULT_GRID if method in EXPONENTIAL_METHODS else "uniform"
        return time_steps(sde, steps, grid=grid, eps=eps).flip(0)
    for name, value in (("steps", steps), ("grid", grid)):
        if value is not None:
            raise ValueError(f"{name}={value!r} is for the fixed-step methods ({', '.join(FIXED_STEP_METHODS)}); "
                             f"the adaptive method {method!r} is controlled by rtol and atol")
    return None


def _check_trace(trace: str, n_probes: int) -> str:
    """The trace estimator, after refusing an unknown one or a probe count that is not a positive integer."""
    estimator = estimator_name(trace, aliases=False, what="trace estimator")
    check_count("n_probes", n_probes)
    return estimator


def _stderr(values: Tensor, random: bool) -> Tensor:
    """Standard error of the mean over the first dimension (NaN for one random draw, 0 if not random)."""
    n = values.shape[0]
    if not random:
        return torch.zeros_like(values[0])
    if n == 1:
        return torch.full_like(values[0], float("nan"))
    return values.std(0, unbiased=True) / math.sqrt(n)


def _to_integer_levels(x: Tensor, bits: int) -> Tensor:
    """Integer levels ``k in {0, ..., 2^bits - 1}`` from an integer tensor or a finite float tensor ``k / (2^bits - 1)``
    (:func:`bits_per_dim` refuses non-finite data first)."""
    levels = 2**bits - 1
    if not x.is_floating_point():
        k = x.to(torch.int64)
    else:
        scaled = x.to(torch.float64) * levels
        k = torch.round(scaled)
        # Off-grid by more than the rounding error of x's dtype (at least 1e-3 of a level, at most 1/4): not levels.
        tol = min(0.25, max(1e-3, 4 * levels * torch.finfo(x.dtype).eps))
        off = float((k - scaled).abs().max())
        if off > tol:
            raise ValueError(f"float data for bits_per_dim must be {bits}-bit levels k/{levels} in [0, 1] (a value "
                             f"is {off:.3g} levels off the grid); pass the integer pixel values instead")
        k = k.to(torch.int64)
    if k.min() < 0 or k.max() > levels:
        raise ValueError(f"data levels must lie in [0, {levels}] for bits={bits}, got [{int(k.min())}, {int(k.max())}]")
    return k


def check_levels_args(bits: int, data_range: tuple[float, float]) -> tuple[float, float]:
    """Refuse a bit depth that is not a positive integer or a data range with ``hi <= lo``; returns ``(lo, hi)``."""
    if not (isinstance(bits, int) and not isinstance(bits, bool) and bits >= 1):
        raise ValueError(f"bits must be a positive integer, got {bits!r}")
    lo, hi = data_range
    if not hi > lo:
        raise ValueError(f"data_range must be (lo, hi) with hi > lo, got {data_range!r}")
    return lo, hi


def bits_per_dim(
    sde: SDE | DiffusionModel,
    score_fn: ScoreFn | Tensor | None = None,
    x: Tensor | None = None,
    *,
    bits: int = 8,
    data_range: tuple[float, float] = (0.0, 1.0),
    dequantization: str = "uniform",
    trace: str = "hutchinson-rademacher",
    n_probes: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
    method: str = "dopri5",
    dtype: torch.dtype = torch.float32,
    generator: Generators = None,
    cond: Mapping[str, Any] | None = None,
    divergence_ad: str = "reverse",
    steps: int | None = None,
    grid: str | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, LikelihoodInfo]:
    """Bits per dimension of discrete ``bits``-bit data under the model (Song et al. 2021, App. D.2; Theis 2016): use
    it to report image likelihoods; for PSLD/CLD the upper bound from the entropy-corrected augmented bound
    (Dockhorn et al. 2022, App. B.4; ``info.bound``).

    Pixel levels ``k`` are dequantised to ``u = (k + delta) / 2^bits`` in ``[0, 1]`` and mapped to the model's
    range ``y = lo + (hi - lo) u``. Then ``-log2 P(k) <= -log2 p_model(y) - D log2(hi - lo) + D bits``, so

        ``bpd = -log p_model(y) / (D ln 2) - log2(hi - lo) + bits``.

    For ``data_range=(-1, 1)`` and 8 bits the offset is 7, for ``(0, 1)`` it is 8 (the reference's
    ``offset = 7 - inverse_scaler(-1)``).

    Args:
        x: integer pixel levels (e.g. ``uint8``) or floats ``k / (2^bits - 1)`` as from ``ToTensor``.
        bits: bits per pixel value (8 for standard images).
        data_range: ``(lo, hi)``, the interval the model's data live in (``(-1, 1)`` for centered data).
        dequantization: ``"uniform"`` (``delta ~ U[0, 1)``, a variational bound; Theis et al. 2016),
            ``"midpoint"`` (``delta = 1/2``) or ``"none"`` (``u = k / (2^bits - 1)``, the reference's
            evaluation without dequantisation).
        dtype: dtype of the model input.
        Other arguments: as for :func:`log_likelihood` (both call forms, ``return_info``). Each of the
            ``n_probes`` draws of an example gets its own dequantisation, momentum (phase space) and probe, drawn in
            that order, so ``info.stderr`` (in bits/dim) covers every source of randomness.

    Returns:
        per-example ``bpd`` of shape ``(B,)``; ``(bpd, info)`` with ``return_info=True``.
    """
    model, (x,) = model_and_arguments(sde, score_fn, x)
    sde = model.sde
    x = check_tensor("x", x, DATA_TENSOR, nonempty=True, finite=True)
    if dequantization not in DEQUANTIZATIONS:
        raise ValueError(f"unknown dequantization {dequantization!r}; valid values are: {', '.join(DEQUANTIZATIONS)}")
    estimator = _check_trace(trace, n_probes)
    lo, hi = check_levels_args(bits, data_range)
    eps = resolve_eps(sde, eps, likelihood=True)
    check_ad(divergence_ad)
    k = _to_integer_levels(x, bits).to(dtype)
    B, D = k.shape[0], k[0].numel()
    draws = Draws(generator, B)
    kr = repeat_rows(k, n_probes)
    if dequantization == "uniform":
        u = (kr + draws.rows(lambda r, g: torch.rand(r.shape, generator=g, dtype=dtype, device=r.device), kr)) / 2**bits
    elif dequantization == "midpoint":
        u = (kr + 0.5) / 2**bits
    else:
        u = kr / (2**bits - 1)
    y = lo + (hi - lo) * u
    augment = sde.has_auxiliary
    times = solver_grid(sde, method, steps, grid, eps)
    res = solve(sde, model, y, n_probes, draws, estimator=estimator, augment=augment, cond=check_cond(cond, B),
                rtol=rtol, atol=atol, eps=eps, method=method, divergence_ad=divergence_ad, times=times, grid=grid)
    bpd = -res.value / (D * math.log(2)) + (bits - math.log2(hi - lo))
    stderr = _stderr(bpd, random=dequantization == "uniform" or res.random)
    return (bpd.mean(0), summary(res, stderr, augment)) if return_info else bpd.mean(0)
