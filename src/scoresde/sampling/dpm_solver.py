"""DPM-Solver (Lu et al., NeurIPS 2022) and DPM-Solver++ (Lu et al. 2022b) for every SDE with a Gaussian kernel:
VE, VP and sub-VP, and PSLD/CLD (any recipe SDE) through the matrix form at the end of this docstring.

In the half log-SNR ``lambda = log(alpha_t / sigma_t)`` the probability-flow ODE of the kernel ``x_t = alpha_t x_0 +
sigma_t eps`` has an exactly integrable linear part. From ``s`` to ``t`` (``h = lambda_t - lambda_s > 0``):

* ``algorithm="dpmsolver"``, noise prediction ``eps_hat = model.eps`` (DPM-Solver, eq. 3.4):
  ``x_t = alpha_t/alpha_s x_s - sigma_t int_0^h e^(h - tau) eps_hat(lambda_s + tau) d tau``;
* ``algorithm="dpmsolver++"``, data prediction ``x0_hat = model.x0`` (DPM-Solver++):
  ``x_t = sigma_t/sigma_s x_s + alpha_t int_0^h e^(-(h - tau)) x0_hat(lambda_s + tau) d tau``.

With ``m`` the prediction, ``hh = h`` (noise) or ``hh = -h`` (data), ``A = alpha_t/alpha_s`` (noise) or
``sigma_t/sigma_s`` (data), ``B = sigma_t`` (noise) or ``alpha_t`` (data), and

    ``phi_1 = e^hh - 1``,  ``phi_2 = phi_1 / hh - 1``,  ``phi_3 = phi_2 / hh - 1/2``

every update below reads ``x_t = A x_s - B (phi_1 D_0 + c_1 D_1 + c_2 D_2)`` with differences ``D_k`` of model values
in ``lambda``:

* order 1 (DPM-Solver-1, eq. 3.7; DPM-Solver++-1): ``D_0 = m_s``: DDIM (``eta = 0``) exactly.
* ``method="singlestep"`` (DPM-Solver-2 / -3, Lu et al. 2022 Alg. 1 and 2, DPM-Solver++ Alg. 1): intermediate
  points at ``lambda_s + r h``; order 2 with ``r_1 = 1/2``: a first-order step to ``s_1``, then ``D_1 = (m_{s1} -
  m_s) / (2 r_1)``, ``c_1 = phi_1``; order 3 with ``r_1 = 1/3``, ``r_2 = 2/3``: ``x_{s2}`` from ``m_s`` and
  ``r_2/r_1 phi_2(r_2 hh) (m_{s1} - m_s)``, then ``D_1 = (m_{s2} - m_s) / r_2``, ``c_1 = phi_2``.
* ``method="multistep"`` (DPM-Solver++(2M), Alg. 2, and the official third-order multistep update,
  ``multistep_dpm_solver_third_update`` of the authors' code): the earlier points' model values, ``r_k = h_k / h``
  the previous step sizes over this one. Order 2: ``D_1 = (m_0 - m_1) / (2 r_0)``, ``c_1 = phi_1``. Order 3:
  ``D1_0 = (m_0 - m_1)/r_0``, ``D1_1 = (m_1 - m_2)/r_1``, ``D_1 = D1_0 + r_0/(r_0 + r_1) (D1_0 - D1_1)`` (``~ h
  m'``), ``c_1 = phi_2``, and ``D_2 = (D1_0 - D1_1)/(r_0 + r_1)`` (``~ h^2 m''/2``) with ``c_2 = phi_3``, as
  published (equal to the official code to 1e-12 on the VP and sub-VP mixtures, ``tests/sampling/
  test_dpm_solver_official.py``). The first steps use orders ``min(order, i + 1)`` (no earlier values yet).
* ``method="multistep_taylor"`` (order 3 only): the same with ``c_2 = 2 phi_3``, the Taylor coefficient of ``m''``
  (the official weight is half of it, which makes the published 3M converge at second order: observed 2.1-2.5 on
  Gaussian data against 3.2-4.0 here). Measured advantage (median path error to the exact flow, 2-D mixture,
  ``benchmarks/dpm_solver_orders.py``): with noise prediction on the logSNR grid 0.64-0.85x the official 3M's at 10
  and 20 NFE on VP and sub-VP; with data prediction it is worse (2x at 20 NFE) and on ``time_uniform`` grids no
  better, so ``multistep`` stays the default.
* ``method="adaptive"`` (DPM-Solver-12 and -23, Lu et al. 2022 Alg. 4 and 5): from ``lambda_T`` with ``h = 0.05`` a
  lower- and a higher-order singlestep update share their model calls (order 2: DPM-Solver-1 and -2 with ``r_1 =
  1/2``; order 3: DPM-Solver-2 and -3 with ``r_1 = 1/3``, ``r_2 = 2/3``); ``E = max_batch RMS((x_high - x_low) /
  delta)``, ``delta = max(atol, rtol max(|x_low|, |x_prev|))``; the step is accepted when ``E <= 1``, and ``h <-
  min(0.9 h E^(-1/order), lambda_eps - lambda_s)``. A rejected step re-uses the model value at ``s`` (the authors'
  code evaluates it again; the result is the same with fewer calls). The batch shares one error norm, so samples
  are coupled.

``algorithm="sde-dpmsolver++"`` solves the reverse SDE with data prediction (DPM-Solver++, appendix: SDE-DPM-Solver++
(1S) and (2M)): ``x_t = sigma_t/sigma_s e^(-h) x_s + alpha_t (1 - e^(-2h)) (m_s + D_1 / 2) + sigma_t sqrt(1 -
e^(-2h)) z`` with ``D_1 = 0`` (1S, which is DDIM with ``eta = 1``, the DDPM posterior) or the order-2 multistep
difference (2M); ``z`` is drawn batch-first from ``generator``.

Everything (``log alpha``, ``sigma``, ``lambda`` and the intermediate times ``t_from_lambda``) is read from the SDE's
schedule in float64 and cast to the state's dtype; nothing assumes ``alpha^2 + sigma^2 = 1`` (sub-VP's ``sigma = 1 -
alpha^2``, VE's ``alpha = 1``).

**Phase space** (PSLD, CLD: ``sde.exp_integrator``). The kernel ``z_t = Phi_t z_0 + L_t eps`` has ``k x k`` mean map
and factor per coordinate. The same updates solve its *kernel flow* ``dz/dt = Phi'_t x0_hat + L'_t eps_hat`` (every
marginal kept; the probability-flow ODE for scalar kernels) with ``A`` and ``B phi_k`` replaced by the matrices of
:meth:`scoresde.sdes.RecipeSDE.exp_integrator` (``lambda`` is then ``(1/k) log |det(L^-1 Phi)|``): order 1 is the
phase-space DDIM step (``flow="kernel"``), orders 2 and 3 converge at their order to the flow, multistep, singlestep
and adaptive alike; SDE-DPM-Solver++ needs a scalar schedule. Measured with the exact score of the 2-D mixture
(benchmarks/RESULTS.md): PSLD reaches the two-sample noise floor at 10 NFE with DPM-Solver-2M/3M (noise prediction,
``time_quadratic``), where the kernel DDIM and SSCS need 50 and the probability-flow DDIM 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import CountingModel, DiffusionModel
from ..numerics.checks import check_count
from ..numerics.grids import time_steps
from ..numerics.times import resolve_eps
from ..sdes.base import randn_like
from ..sdes.linalg import apply_blocks
from .common import Callback, counting, report, require_scalar_schedule, sampler_times, steps_from_budget

__all__ = ["ALGORITHMS", "LOWER_ORDER_FINAL_BELOW", "METHODS", "fast_orders", "sample_dpm_solver"]

ALGORITHMS = ("dpmsolver", "dpmsolver++", "sde-dpmsolver++")
METHODS = ("singlestep", "multistep", "multistep_taylor", "adaptive")
#: ``lower_order_final`` lowers the last multistep orders only when there are fewer steps than this: the official
#: DPM-Solver code's rule (``steps < 10``); its docstring and diffusers' ``DPMSolverMultistepScheduler`` say 15
LOWER_ORDER_FINAL_BELOW = 10
_H_INIT, _THETA = 0.05, 0.9  # adaptive: first step in lambda, safety factor (Lu et al. 2022, Alg. 4/5)
_MAX_TRIES = 10_000  # adaptive: attempted steps before giving up (rtol 1e-4 on the 2-D mixture takes ~640)


@dataclass(frozen=True)
class _Point:
    """The schedule at one time, all 0-d float64 tensors (``log_alpha``, ``sigma``: scalar kernels only)."""

    t: Tensor
    lam: Tensor
    log_alpha: Tensor | None = None
    sigma: Tensor | None = None

    @property
    def alpha(self) -> Tensor:
        return torch.exp(self.log_alpha)


class _Solver:
    """The exponential-integrator updates (module docstring) for one algorithm, model and state dtype."""

    def __init__(self, counted: CountingModel, algorithm: str, batch: int, dtype: torch.dtype) -> None:
        self.counted, self.sde, self.batch, self.dtype = counted, counted.sde, batch, dtype
        self.data = algorithm != "dpmsolver"

    def point(self, t: Tensor) -> _Point:
        return _Point(t, self.sde.lambda_t(t), self.sde.log_alpha(t), self.sde.sigma(t))

    def at_lambda(self, lam: Tensor) -> _Point:
        return self.point(self.sde.t_from_lambda(lam))

    def model(self, x: Tensor, p: _Point) -> Tensor:
        t = p.t.to(self.dtype).expand(self.batch)
        return self.counted.x0(x, t) if self.data else self.counted.eps(x, t)

    def cast(self, v: Tensor) -> Tensor:
        return v.to(self.dtype)

    def update(self, x: Tensor, s: _Point, t: _Point, terms: list[tuple[int, Any, Tensor]]) -> Tensor:
        """``A x - B sum_k w phi_k D`` for ``terms = [(k, w, D), ...]`` (module docstring)."""
        h = t.lam - s.lam
        if self.data:
            A, B, hh = t.sigma / s.sigma, t.alpha, -h
        else:
            A, B, hh = torch.exp(t.log_alpha - s.log_alpha), t.sigma, h
        phi1 = torch.expm1(hh)
        phi2 = phi1 / hh - 1.0
        phis = (phi1, phi2, phi2 / hh - 0.5)
        out = self.cast(A) * x
        for k, w, d in terms:
            out = out - self.cast(B * phis[k - 1] * w) * d
        return out

    # -- singlestep ---------------------------------------------------------------------------------------------
    def single(self, x: Tensor, s: _Point, t: _Point, order: int, m_s: Tensor | None = None,
               m_s1: Tensor | None = None, r1: Any = None, r2: Any = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """One singlestep DPM-Solver-``order`` update with intermediate points at ``lambda_s + r h`` (``r1`` default
        1/2 for order 2, 1/3 for order 3; ``r2`` default 2/3); returns ``(x_t, m_s, m_s1)`` so that the adaptive
        pair can share model values."""
        if m_s is None:
            m_s = self.model(x, s)
        if order == 1:
            return self.update(x, s, t, [(1, 1.0, m_s)]), m_s, None
        h = t.lam - s.lam
        r1 = (0.5 if order == 2 else 1.0 / 3.0) if r1 is None else r1
        if m_s1 is None:
            s1 = self.at_lambda(s.lam + r1 * h)
            m_s1 = self.model(self.update(x, s, s1, [(1, 1.0, m_s)]), s1)
        if order == 2:
            return self.update(x, s, t, [(1, 1.0, m_s), (1, 0.5 / r1, m_s1 - m_s)]), m_s, m_s1
        r2 = 2.0 / 3.0 if r2 is None else r2
        s2 = self.at_lambda(s.lam + r2 * h)
        x_s2 = self.update(x, s, s2, [(1, 1.0, m_s), (2, r2 / r1, m_s1 - m_s)])
        m_s2 = self.model(x_s2, s2)
        return self.update(x, s, t, [(1, 1.0, m_s), (2, 1.0 / r2, m_s2 - m_s)]), m_s, m_s1

    # -- multistep ----------------------------------------------------------------------------------------------
    def multi(self, x: Tensor, ps: list[_Point], ms: list[Tensor], t: _Point, order: int, taylor: bool = False
              ) -> Tensor:
        """Multistep order-``order`` update from the last of ``ps`` (model values ``ms``) to ``t``; ``taylor``: the
        ``D_2`` weight ``2 phi_3`` of ``method="multistep_taylor"`` instead of the official ``phi_3``."""
        p0, m0 = ps[-1], ms[-1]
        if order == 1:
            return self.update(x, p0, t, [(1, 1.0, m0)])
        h = t.lam - p0.lam
        r0 = (p0.lam - ps[-2].lam) / h
        if order == 2:
            return self.update(x, p0, t, [(1, 1.0, m0), (1, 0.5 / r0, m0 - ms[-2])])
        r1 = (ps[-2].lam - ps[-3].lam) / h
        d1_0 = self.cast(1.0 / r0) * (m0 - ms[-2])
        d1_1 = self.cast(1.0 / r1) * (ms[-2] - ms[-3])
        d1 = d1_0 + self.cast(r0 / (r0 + r1)) * (d1_0 - d1_1)
        w2 = (2.0 if taylor else 1.0) / (r0 + r1)
        return self.update(x, p0, t, [(1, 1.0, m0), (2, 1.0, d1), (3, w2, d1_0 - d1_1)])

    def sde_multi(self, x: Tensor, ps: list[_Point], ms: list[Tensor], t: _Point, order: int,
                  generator: torch.Generator | None) -> Tensor:
        """SDE-DPM-Solver++ (1S) or (2M) from the last of ``ps`` to ``t`` (module docstring)."""
        p0, m0 = ps[-1], ms[-1]
        h = t.lam - p0.lam
        one_m = -torch.expm1(-2.0 * h)  # 1 - e^(-2h)
        d = m0 if order == 1 else m0 + self.cast(0.5 * h / (p0.lam - ps[-2].lam)) * (m0 - ms[-2])
        noise = randn_like(x, generator)
        return (self.cast(t.sigma / p0.sigma * torch.exp(-h)) * x + self.cast(t.alpha * one_m) * d
                + self.cast(t.sigma * torch.sqrt(one_m)) * noise)


class _MatrixSolver(_Solver):
    """The same updates for a matrix kernel (PSLD, CLD, any recipe SDE): ``A`` and the ``phi`` terms become the
    ``k x k`` coefficients of :meth:`scoresde.sdes.RecipeSDE.exp_integrator`, applied per coordinate."""

    _last: tuple[tuple[float, float], tuple[Tensor, list[Tensor]]] | None = None

    def point(self, t: Tensor) -> _Point:
        return _Point(t, self.sde.lambda_t(t))

    def coefficients(self, s: _Point, t: _Point, order: int) -> tuple[Tensor, list[Tensor]]:
        """``exp_integrator(s, t)`` with at least ``order`` coefficients; the last pair is kept, since the adaptive
        solver's lower- and higher-order updates share it."""
        key = (float(s.t), float(t.t))
        if self._last is None or self._last[0] != key or len(self._last[1][1]) < order:
            self._last = key, self.sde.exp_integrator(s.t, t.t, order, "x0" if self.data else "eps")
        return self._last[1]

    def update(self, x: Tensor, s: _Point, t: _Point, terms: list[tuple[int, Any, Tensor]]) -> Tensor:
        """``A x + sum C_k w D`` (the matrix ``C_k`` carry the sign of ``-B phi_k``)."""
        A, C = self.coefficients(s, t, max(k for k, _, _ in terms))
        out = apply_blocks(A, x)
        for k, w, d in terms:
            out = out + apply_blocks(C[k - 1] * w, d)
        return out


def _check_options(sde: Any, algorithm: str, method: str, order: Any, rtol: float, atol: float) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; valid algorithms are: {', '.join(ALGORITHMS)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods are: {', '.join(METHODS)}")
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    if not _matrix_kernel(sde):
        require_scalar_schedule(sde, "dpm_solver")
    elif algorithm == "sde-dpmsolver++":
        raise ValueError(f"algorithm 'sde-dpmsolver++' needs a scalar noise schedule (VE, VP, sub-VP); "
                         f"{type(sde).__name__} has a matrix kernel (stochastic phase-space sampling: ddim with "
                         "eta > 0 or sscs)")
    sde_ok = method != "adaptive" and (order == 1 or (order == 2 and method == "multistep"))
    if algorithm == "sde-dpmsolver++" and not sde_ok:
        raise ValueError(f"algorithm 'sde-dpmsolver++' takes order 1 (SDE-DPM-Solver++(1S)) or order 2 with method "
                         f"'multistep' (SDE-DPM-Solver++(2M)); got order={order}, method={method!r}")
    if method == "multistep_taylor" and order != 3:
        raise ValueError(f"method 'multistep_taylor' is a third-order multistep variant: it needs order=3, got "
                         f"order={order}")
    if method == "adaptive":
        if order == 1:
            raise ValueError("method 'adaptive' needs order 2 (DPM-Solver-12) or 3 (DPM-Solver-23), got order=1")
        if not (isinstance(atol, (int, float)) and atol > 0 and isinstance(rtol, (int, float)) and rtol >= 0):
            raise ValueError(f"method 'adaptive' needs atol > 0 and rtol >= 0, got atol={atol!r}, rtol={rtol!r}")


def sample_dpm_solver(
    model: DiffusionModel,
    z: Tensor,
    *,
    steps: int | None = None,
    times: Tensor | None = None,
    nfe: int | None = None,
    order: int = 2,
    algorithm: str = "dpmsolver++",
    method: str = "multistep",
    grid: str = "logSNR",
    rho: float = 7.0,
    eps: float | None = None,
    lower_order_final: bool = True,
    denoise: bool = False,
    rtol: float = 0.05,
    atol: float = 0.0078,
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
) -> tuple[Tensor, int]:
    """DPM-Solver / DPM-Solver++ sampling (module docstring) from ``z`` at ``T`` down to ``eps``.

    NFE (counted, not computed): ``multistep`` ``steps``; ``singlestep`` ``order * steps`` (``steps`` outer steps on
    ``grid``, each one DPM-Solver-``order`` step with ``order - 1`` intermediate points: the official code's
    ``singlestep_fixed``); ``adaptive`` as the error control decides; ``+ 1`` with ``denoise``. With ``nfe=N``
    instead of ``steps`` every fixed-step method spends at most ``N`` calls (``denoise`` included): ``multistep`` runs
    ``N - denoise`` steps, and ``singlestep`` splits the budget into orders exactly as the official code does
    ("DPM-Solver-fast", :func:`fast_orders`: ``N`` calls, the official ``DPM_Solver.sample(steps=N,
    method="singlestep")``; on ``logSNR`` equal ``lambda`` intervals, on other grids steps spanning ``order`` of the
    grid's ``N`` intervals).

    Which to pick: DPM-Solver++(2M) (the defaults: ``algorithm="dpmsolver++"``, ``order=2``, ``method="multistep"``,
    ``grid="logSNR"``) for guided or conditional sampling and pixel models at 10-20 NFE; ``order=3`` with
    ``method="singlestep", nfe=N`` (DPM-Solver-fast, the paper's unconditional setting) or ``method="multistep"``
    for unconditional sampling at 10-20 NFE; ``method="multistep_taylor"`` with ``algorithm="dpmsolver"`` on the
    logSNR grid (module docstring); on PSLD/CLD ``algorithm="dpmsolver"`` with ``order=2`` or ``3`` and
    ``grid="time_quadratic"`` (noise floor at 10 NFE on the 2-D mixture); ``method="adaptive"`` when a tolerance
    matters more than a fixed budget; ``algorithm="sde-dpmsolver++"`` (order 2) for stochastic sampling at a few tens
    of steps. Measured on the 2-D mixture with its exact score (VP, logSNR grid, median path error to a tight ODE
    solve, ``benchmarks/dpm_solver_orders.py``) at 10 / 20 NFE: DPM-Solver++ 2M 0.118 / 0.025, 3M 0.035 / 0.0084,
    3S-fast 0.046 / 0.025; DPM-Solver (noise prediction) 2M 0.037 / 0.011, 3M 0.031 / 0.0068, 3M-taylor 0.021 /
    0.0051; the adaptive DPM-Solver-23 reaches 3e-5 with ``rtol=1e-3, atol=1e-4`` in 172 NFE. Config names:
    ``sampling.method = dpm_solver`` with ``order``, ``algorithm``, ``dpm_method``, ``dpm_rtol``, ``dpm_atol``,
    ``lower_order_final``, ``nfe``.

    Args:
        steps: number of grid intervals (default ``sde.N``): multistep steps, or singlestep outer steps.
        times: explicit decreasing times (override ``steps``, ``grid`` and ``eps``; not with ``adaptive``).
        nfe: a budget of network calls instead of ``steps`` (above; not with ``steps``, ``times`` or ``adaptive``).
        order: 1, 2 or 3 (1 is DDIM; ``adaptive``: 2 or 3; ``sde-dpmsolver++``: 1 or 2).
        algorithm: ``"dpmsolver"`` (noise prediction), ``"dpmsolver++"`` (data prediction) or ``"sde-dpmsolver++"``.
        method: ``"multistep"``, ``"multistep_taylor"`` (order 3), ``"singlestep"`` or ``"adaptive"`` (ignores
            ``steps`` and ``grid``).
        grid: a name of :data:`scoresde.numerics.grids.GRIDS` (``logSNR`` as in DPM-Solver).
        rho: exponent of the ``karras`` grid.
        eps: last time; ``None``: the SDE's ``sampling_eps`` (``1e-3``; EDM: ``sigma_min``).
        lower_order_final: multistep with fewer than :data:`LOWER_ORDER_FINAL_BELOW` = 10 steps (the official
            code's threshold): the last steps use orders ``min(order, steps - i)``, which stabilises very few steps.
            diffusers' ``DPMSolverMultistepScheduler`` lowers them the same way below 15 steps (and always on its
            step to ``sigma = 0``, our ``denoise``), so at 10-14 steps its last two steps differ from ours.
        denoise: finish with the data prediction at the last time (``eps``, or the last of ``times``; DPM-Solver's
            ``denoise_to_zero``; one more NFE).
        rtol, atol: tolerances of ``adaptive`` (``atol`` in data units: 0.0078 is 1/128 of images in [-1, 1]).
        generator: random generator of ``sde-dpmsolver++``'s noise.
        callback: ``callback(i, t, x, x0_pred)`` after each (accepted) step.
    """
    sde = model.sde
    _check_options(sde, algorithm, method, order, rtol, atol)
    eps = resolve_eps(sde, eps)
    if method == "adaptive" and times is not None:
        raise ValueError("method 'adaptive' chooses its own times: pass no times (it also ignores steps and grid)")
    if method == "adaptive" and nfe is not None:
        raise ValueError(f"method 'adaptive' spends what its tolerances need: pass rtol/atol, not nfe={nfe} (for a "
                         "budget of network calls use method 'singlestep' or 'multistep')")
    counted = counting(model, cond)
    solver = (_MatrixSolver if _matrix_kernel(sde) else _Solver)(counted, algorithm, z.shape[0], z.dtype)
    t_last = torch.as_tensor(eps, dtype=torch.float64)
    multi = method in ("multistep", "multistep_taylor")
    with torch.no_grad():
        if method == "adaptive":
            x = _adaptive(solver, z, order, eps, rtol, atol, progress, callback)
        elif method == "singlestep" and nfe is not None:  # DPM-Solver-fast: the budget split into orders
            budget = steps_from_budget(nfe, steps, times, sampler="dpm_solver singlestep",
                                       cost=lambda m: m + int(denoise))
            plan = _fast_plan(solver, budget, order, grid=grid, eps=eps, rho=rho, device=z.device)
            x, t_last = _singlestep(solver, z, plan, progress, callback), plan[-1][1].t
        else:
            steps = steps_from_budget(nfe, steps, times, sampler=f"dpm_solver multistep of order {order}",
                                      grid=grid, denoise=denoise, minimum=order + int(grid == "karras" and denoise))
            ts = sampler_times(sde, steps, times, grid=grid, eps=eps, rho=rho, dtype=torch.float64, device=z.device,
                               denoise=denoise)
            points = [solver.point(t) for t in ts]
            n, t_last = len(points) - 1, ts[-1]
            if multi and n < order:
                raise ValueError(f"multistep order {order} needs at least {order} steps, got {n}")
            if method == "singlestep":
                plan = [(points[i], points[i + 1], order, None, None) for i in range(n)]
                x = _singlestep(solver, z, plan, progress, callback)
            else:
                x = _multistep(solver, z, points, order, lower_order_final and n < LOWER_ORDER_FINAL_BELOW,
                               algorithm == "sde-dpmsolver++", method == "multistep_taylor", generator, progress,
                               callback)
        if denoise:
            x = counted.x0(x, t_last.to(z.dtype).expand(z.shape[0]))  # at the last time (eps or times[-1])
    return x, counted.calls


def fast_orders(nfe: int, order: int) -> list[int]:
    """The orders of the singlestep steps that spend exactly ``nfe`` model calls with at most ``order`` each:
    "DPM-Solver-fast" (Lu et al. 2022, §3.4 and App. D; the official code's
    ``get_orders_and_timesteps_for_singlestep_solver``). Order 1: ``nfe`` DDIM steps; order 2: ``nfe // 2``
    second-order steps, then one first-order step if ``nfe`` is odd; order 3: third-order steps, then a remainder of
    ``[2, 1]`` (``nfe % 3 == 0``, one third-order step fewer), ``[1]`` or ``[2]``. Use it to predict the steps of
    ``sample_dpm_solver(..., method="singlestep", nfe=nfe)``."""
    check_count("nfe", nfe)
    if order == 1:
        return [1] * nfe
    if order == 2:
        return [2] * (nfe // 2) + [1] * (nfe % 2)
    tail = {0: [2, 1], 1: [1], 2: [2]}[nfe % 3]
    return [3] * ((nfe - sum(tail)) // 3) + tail


def _fast_plan(solver: _Solver, budget: int, order: int, *, grid: str, eps: float, rho: float,
               device: torch.device) -> list[tuple[_Point, _Point, int, Any, Any]]:
    """``(s, t, order, r1, r2)`` of each DPM-Solver-fast step spending ``budget`` calls (:func:`fast_orders`), with
    the official code's times: on ``logSNR`` one outer interval per step, equal in ``lambda``, and intermediate
    points at equal ``lambda`` fractions; on every other grid the ``budget``-interval grid, each step spanning as
    many of its intervals as its order, the intermediate points on the grid's own points."""
    orders = fast_orders(budget, order)
    sde, f64 = solver.sde, torch.float64
    if grid == "logSNR":
        outer = [solver.point(t) for t in time_steps(sde, len(orders), grid=grid, eps=eps, rho=rho, dtype=f64,
                                                     device=device)]
        return [(outer[j], outer[j + 1], k, None, None) for j, k in enumerate(orders)]
    fine = [solver.point(t) for t in time_steps(sde, budget, grid=grid, eps=eps, rho=rho, dtype=f64, device=device)]
    plan, a = [], 0
    for k in orders:
        s, t = fine[a], fine[a + k]
        rs = [(fine[a + j].lam - s.lam) / (t.lam - s.lam) for j in range(1, k)] + [None, None]
        plan.append((s, t, k, rs[0], rs[1]))
        a += k
    return plan


def _singlestep(solver: _Solver, x: Tensor, plan: list[tuple[_Point, _Point, int, Any, Any]], progress: bool,
                callback: Callback | None) -> Tensor:
    for i, (s, t, order, r1, r2) in enumerate(tqdm(plan, disable=not progress, desc="DPM-Solver sampling")):
        x = solver.single(x, s, t, order, r1=r1, r2=r2)[0]
        report(callback, i, t.t, x, solver.counted)
    return x


def _matrix_kernel(sde: Any) -> bool:
    """Whether the SDE offers the matrix exponential integrator (``exp_integrator``: PSLD, CLD, recipe SDEs)."""
    return callable(getattr(sde, "exp_integrator", None))


def _multistep(solver: _Solver, x: Tensor, points: list[_Point], order: int, lower_final: bool, stochastic: bool,
               taylor: bool, generator: torch.Generator | None, progress: bool, callback: Callback | None) -> Tensor:
    n = len(points) - 1
    ps: list[_Point] = []
    ms: list[Tensor] = []
    for i in tqdm(range(n), disable=not progress, desc="DPM-Solver sampling"):
        ps, ms = [*ps, points[i]][-order:], [*ms, solver.model(x, points[i])][-order:]
        step_order = min(order, i + 1, n - i) if lower_final else min(order, i + 1)
        if stochastic:
            x = solver.sde_multi(x, ps, ms, points[i + 1], step_order, generator)
        else:
            x = solver.multi(x, ps, ms, points[i + 1], step_order, taylor)
        report(callback, i, points[i + 1].t, x, solver.counted)
    return x


def _adaptive(solver: _Solver, x: Tensor, order: int, eps: float, rtol: float, atol: float, progress: bool,
              callback: Callback | None) -> Tensor:
    """DPM-Solver-12 (``order=2``) or -23 (``order=3``) with step-size control in ``lambda`` (module docstring)."""
    sde = solver.sde
    device = x.device
    s = solver.point(torch.tensor(sde.T, dtype=torch.float64, device=device))
    end = solver.point(torch.tensor(eps, dtype=torch.float64, device=device))
    h = torch.tensor(_H_INIT, dtype=torch.float64, device=device)
    x_prev, m_s, accepted = x, None, 0
    low_r1 = 0.5 if order == 2 else 1.0 / 3.0
    bar = tqdm(disable=not progress, desc="DPM-Solver adaptive sampling")
    for _ in range(_MAX_TRIES):
        last = bool(h >= end.lam - s.lam)
        t = end if last else solver.at_lambda(s.lam + h)
        x_low, m_s, m_s1 = solver.single(x, s, t, order - 1, m_s=m_s, r1=low_r1)
        x_high = solver.single(x, s, t, order, m_s=m_s, m_s1=m_s1, r1=low_r1)[0]
        delta = torch.clamp_min(rtol * torch.maximum(x_low.abs(), x_prev.abs()), atol)
        err = ((x_high - x_low) / delta).reshape(x.shape[0], -1).square().mean(dim=1).sqrt().max()
        E = float(err)
        if not math.isfinite(E):
            raise RuntimeError(f"adaptive DPM-Solver: non-finite error estimate at t={float(s.t):.6g} (the model "
                             "returned non-finite values?)")
        if E <= 1.0:
            x, x_prev, s, m_s = x_high, x_low, t, None
            report(callback, accepted, t.t, x, solver.counted)
            accepted += 1
            bar.update(1)
            if last:
                break
        factor = _THETA * E ** (-1.0 / order) if E > 0 else math.inf
        h = torch.clamp_max(h * factor, end.lam - s.lam) if math.isfinite(factor) else end.lam - s.lam
    else:
        raise RuntimeError(f"adaptive DPM-Solver did not reach t={eps} in {_MAX_TRIES} attempted steps (stopped at "
                           f"t={float(s.t):.6g}); loosen rtol/atol or use order=3")
    bar.close()
    return x
