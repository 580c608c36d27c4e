"""UniPC (Zhao, Bai, Rao, Zhou & Lu, NeurIPS 2023): the unified predictor-corrector of the probability-flow ODE for
every scalar SDE: VE, VP and sub-VP.

In the half log-SNR ``lambda = log(alpha / sigma)`` the probability-flow ODE has an exactly integrable linear part
(DPM-Solver, Lu et al. 2022). A step from ``t_{i-1}`` to ``t_i`` with ``h = lambda_i - lambda_{i-1} > 0`` is

* data prediction (``m = x0_hat``, DPM-Solver++ form): ``hh = -h``, ``x_i = sigma_i/sigma_{i-1} x_{i-1}
  - alpha_i (e^hh - 1) m_{i-1} - alpha_i B(hh) sum_k a_k D_k``;
* noise prediction (``m = eps_hat``, DPM-Solver form): ``hh = h``, ``x_i = alpha_i/alpha_{i-1} x_{i-1}
  - sigma_i (e^hh - 1) m_{i-1} - sigma_i B(hh) sum_k a_k D_k``;

with the divided differences ``D_k = (m_{i-1-k} - m_{i-1}) / r_k``, ``r_k = (lambda_{i-1-k} - lambda_{i-1}) / h``
(``r_k < 0``: earlier points) and the first-order term the DDIM step. The coefficients ``a`` solve the order
conditions (UniPC Theorem 3.1)

    ``sum_k a_k r_k^(j-1) = j! hh phi_{j+1}(hh) / B(hh)``,  ``j = 1, ..., K``,
    ``phi_1(h) = (e^h - 1)/h``,  ``phi_{j+1}(h) = (phi_j(h) - 1/j!) / h``,

for a free function ``B(hh) = hh + O(hh^2)``: ``variant="bh1"`` is ``B(h) = h``, ``"bh2"`` is ``B(h) = e^h - 1``.

* **UniP-p** (predictor, order ``p``): ``K = p - 1`` earlier model outputs, one new model call per step.
* **UniC-p** (corrector, order ``p + 1``): after UniP-p reached ``x~_i``, the model output ``m_i = m(x~_i, t_i)``
  that the next step needs anyway joins the differences with ``r = 1`` (``D = m_i - m_{i-1}``), ``K = p``, and the
  same formula from ``x_{i-1}`` gives the corrected ``x_i``. ``m_i`` is **not** re-evaluated at the corrected
  ``x_i``: the corrector costs no network call and raises the order by one. As in the paper (and the authors'
  ``use_corrector`` convention) the last step is not corrected: it would need a model call at ``t_n`` that nothing
  else uses. So NFE = ``steps`` with or without the corrector (``+ 1`` with ``denoise``).

The one-coefficient systems (UniP-2's ``a_1`` and UniC-1's) are set to their ``hh -> 0`` limit ``1/2``, as in the
authors' implementation (the order is the same). Multistep start-up: step ``i`` uses order ``min(order, i)``, and
with ``lower_order_final`` the last steps drop to ``min(order, steps + 1 - i)`` (stable at very few steps).
Order 1 without the corrector is DDIM (``eta = 0``) exactly, in either prediction.
The start-up and final steps bound the order seen over a whole run: orders 1 and 2 converge at ``p`` (UniP) and
``p + 1`` (UniC) on a Gaussian whose flow is known in closed form; order 3's low-order first (and, with
``lower_order_final``, last) steps make its observed order vary with the SDE, though it is 14-100x more accurate
than order 2 at 80 steps (``tests/sampling/test_unipc.py``).

Everything (``alpha``, ``sigma``, ``lambda``) is read from the SDE's schedule, in float64, and cast to the state's
dtype; nothing assumes ``alpha^2 + sigma^2 = 1`` (sub-VP's ``sigma = 1 - alpha^2``, VE's ``alpha = 1``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import DiffusionModel
from ..numerics.times import resolve_eps
from .common import Callback, counting, report, require_scalar_schedule, sampler_times, steps_from_budget

__all__ = ["sample_unipc"]

PREDICTIONS = ("data", "noise")
VARIANTS = ("bh1", "bh2")


def _phi(j: int, h: float) -> float:
    """``phi_j(h) = sum_{n >= 0} h^n / (n + j)!`` (``phi_1(h) = (e^h - 1)/h``): the series for small ``|h|``, where
    the recurrence ``phi_{j+1} = (phi_j - 1/j!)/h`` would cancel, the recurrence otherwise."""
    if abs(h) < 0.5:
        total, term, n = 0.0, 1.0 / math.factorial(j), 0
        while abs(term) > 1e-18 * max(abs(total), 1e-300) or n < 2:
            total += term
            n += 1
            term *= h / (n + j)
        return total
    value = math.expm1(h) / h
    for k in range(1, j):
        value = (value - 1.0 / math.factorial(k)) / h
    return value


def _order_coefficients(rs: list[float], hh: float, big_b: float) -> list[float]:
    """``a`` with ``sum_k a_k r_k^(j-1) = j! hh phi_{j+1}(hh) / B`` for ``j = 1..len(rs)`` (module docstring); a
    single coefficient is its limit ``1/2`` (the authors' choice)."""
    if len(rs) == 1:
        return [0.5]
    K = len(rs)
    R = torch.tensor([[r ** (j - 1) for r in rs] for j in range(1, K + 1)], dtype=torch.float64)
    b = torch.tensor([math.factorial(j) * hh * _phi(j + 1, hh) / big_b for j in range(1, K + 1)],
                     dtype=torch.float64)
    return torch.linalg.solve(R, b).tolist()


def _update(base: Tensor, factor: float, rs: list[float], diffs: list[Tensor], hh: float, big_b: float) -> Tensor:
    """``base - factor sum_k a_k D_k`` with ``D_k = diffs_k / r_k`` and ``a`` from :func:`_order_coefficients`
    (``factor`` is ``alpha_i B(hh)`` or ``sigma_i B(hh)``); float64 coefficients cast to the state's dtype."""
    out = base
    for a, d, r in zip(_order_coefficients(rs, hh, big_b), diffs, rs, strict=True):
        out = out - (factor * a / r) * d
    return out


def _check_options(sde: Any, order: Any, prediction: Any, variant: Any, corrector: Any,
                   lower_order_final: Any) -> None:
    require_scalar_schedule(sde, "unipc")
    if not (isinstance(order, int) and not isinstance(order, bool) and 1 <= order <= 3):
        raise ValueError(f"unipc order must be 1, 2 or 3, got {order!r}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown unipc prediction {prediction!r}; valid predictions are: {', '.join(PREDICTIONS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown unipc variant {variant!r}; valid variants are: bh1 (B(h) = h), "
                         f"bh2 (B(h) = e^h - 1)")
    for name, value in (("corrector", corrector), ("lower_order_final", lower_order_final)):
        if not isinstance(value, bool):
            raise ValueError(f"unipc {name} must be True or False, got {value!r}")


def sample_unipc(
    model: DiffusionModel,
    z: Tensor,
    *,
    steps: int | None = None,
    times: Tensor | None = None,
    nfe: int | None = None,
    order: int = 2,
    prediction: str = "data",
    variant: str = "bh2",
    corrector: bool = True,
    lower_order_final: bool = True,
    grid: str = "logSNR",
    rho: float = 7.0,
    eps: float | None = None,
    denoise: bool = False,
    cond: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
) -> tuple[Tensor, int]:
    """UniPC sampling (module docstring) from ``z`` at ``T`` down to ``eps`` in ``steps`` steps; NFE ``steps``
    (``+ 1`` with ``denoise``), the corrector included.

    Which options when: ``prediction="data"`` with ``variant="bh2"`` (UniPC with DPM-Solver++, the default) for
    guided/conditional sampling and in general at 10-25 steps; ``variant="bh1"`` for unconditional sampling at
    very few steps (5-10), as the paper recommends for image models; ``order=2`` for guided models, ``order=3``
    for unconditional ones; keep the corrector (free: it reuses the next step's model call). Measured on the 2-D
    mixture (path error to the exact flow, logSNR grid): the default cuts DDIM's error 1.7-9x at 10 NFE and 5-17x at
    20 (sub-VP least, VE most); there ``order=3, prediction="noise"`` was best at 10 NFE, and ``bh1`` with data
    prediction at order 2 was worse than DDIM at 10 NFE (its ``B(h) = h`` over-extrapolates at large steps): check
    ``bh1`` on your model before relying on it. The grid matters more than the variant at 10 NFE: on the 2-D and
    16-D mixtures (VP, sub-VP) ``order=3, prediction="noise", variant="bh1", grid="time_quadratic"`` has 0.13-0.44x
    the path error of DPM-Solver++(2M) on its logSNR grid at 10 NFE and 0.08-0.26x at 20 (benchmarks/RESULTS.md,
    "10-NFE goal"); the logSNR grid spends steps at small ``t`` where these low-noise mixtures barely move.

    Args:
        steps: number of steps (default ``sde.N``) on ``grid``; at least ``order``.
        times: explicit decreasing times ``T >= t_0 > ... > t_n > 0`` (override ``steps``, ``grid`` and ``eps``).
        nfe: a budget of network calls instead of ``steps``: ``nfe - denoise`` steps (``nfe`` on the ``karras``
            grid with ``denoise``); at least ``order`` steps.
        order: order ``p`` of the predictor UniP-p, 1, 2 or 3 (the corrector raises it to ``p + 1``).
        prediction: ``"data"`` (model's ``x0``) or ``"noise"`` (model's ``eps``): the quantity extrapolated.
        variant: ``"bh1"`` (``B(h) = h``) or ``"bh2"`` (``B(h) = e^h - 1``).
        corrector: apply UniC after every step but the last.
        lower_order_final: lower the order of the last steps (``min(order, steps + 1 - i)`` at step ``i``).
        grid: a name of :data:`scoresde.numerics.grids.GRIDS` (``logSNR``, the default, suits few steps).
        rho: exponent of the ``karras`` grid.
        eps: last time; ``None``: the SDE's ``sampling_eps`` (``1e-3``; EDM: ``sigma_min``).
        denoise: finish with the data prediction at the last time (DPM-Solver's ``denoise_to_zero``).
        generator: unused (the sampler is deterministic); accepted as by every sampler.
        callback: ``callback(i, t, x, x0_pred)`` after each step.
    """
    sde = model.sde
    _check_options(sde, order, prediction, variant, corrector, lower_order_final)
    eps = resolve_eps(sde, eps)
    steps = steps_from_budget(nfe, steps, times, sampler=f"unipc of order {order}", grid=grid, denoise=denoise,
                              minimum=order + int(grid == "karras" and denoise))
    ts = sampler_times(sde, steps, times, grid=grid, eps=eps, rho=rho, dtype=torch.float64, device=torch.device("cpu"),
                       denoise=denoise)
    n = len(ts) - 1
    if n < order:
        raise ValueError(f"unipc of order {order} needs at least {order} steps, got {n}")
    lam, log_alpha, sigma = sde.lambda_t(ts).tolist(), sde.log_alpha(ts).tolist(), sde.sigma(ts).tolist()
    data = prediction == "data"
    counted = counting(model, cond)
    predict = counted.x0 if data else counted.eps
    B, x, dtype = z.shape[0], z, z.dtype

    def at(i: int) -> Tensor:
        return ts[i].to(device=z.device, dtype=dtype).expand(B)

    with torch.no_grad():
        hist: list[tuple[int, Tensor]] = [(0, predict(x, at(0)))]  # (grid index, model output there), last = newest
        for i in tqdm(range(1, n + 1), disable=not progress, desc="UniPC sampling"):
            p = min(order, i, n + 1 - i) if lower_order_final else min(order, i)
            j0, m0 = hist[-1]
            h = lam[i] - lam[j0]
            hh = -h if data else h
            big_b = hh if variant == "bh1" else math.expm1(hh)
            if data:  # x_i = sigma_i/sigma_j x_j - alpha_i (e^hh - 1) m_j - alpha_i B sum a_k D_k
                scale, ratio = math.exp(log_alpha[i]), sigma[i] / sigma[j0]
            else:  # x_i = alpha_i/alpha_j x_j - sigma_i (e^hh - 1) m_j - sigma_i B sum a_k D_k
                scale, ratio = sigma[i], math.exp(log_alpha[i] - log_alpha[j0])
            base = ratio * x - (scale * math.expm1(hh)) * m0
            earlier = hist[-p:-1]  # the p - 1 earlier outputs (oldest first)
            rs = [(lam[j] - lam[j0]) / h for j, _ in earlier]
            diffs = [m - m0 for _, m in earlier]

            x_pred = _update(base, scale * big_b, rs, diffs, hh, big_b) if rs else base  # UniP-p
            m_new = predict(x_pred, at(i)) if i < n else None
            if corrector and m_new is not None:  # UniC-p: m_new joins with r = 1, no extra call
                x = _update(base, scale * big_b, [*rs, 1.0], [*diffs, m_new - m0], hh, big_b)
            else:
                x = x_pred
            if m_new is not None:
                hist = [*hist[-(order - 1):], (i, m_new)] if order > 1 else [(i, m_new)]
            report(callback, i - 1, ts[i], x, counted)
        if denoise:
            x = counted.x0(x, at(n))
    return x, counted.calls
