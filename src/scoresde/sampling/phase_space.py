"""Symmetric splitting CLD sampler (SSCS; Dockhorn et al. 2022, §3.3, Alg. 1) for linear recipe SDEs.

In reverse time ``s = T - t`` the reverse SDE ``dz = [beta A z + 2 beta D score] ds + sqrt(2 beta D) dW`` splits into

* a linear part ``dz = -beta (D - Q) S^-1 z ds + sqrt(2 beta D) dW``: again a recipe SDE (``Q -> -Q``), solved
  exactly (``sde.reverse_linear_step``), and
* a score part ``dz = 2 beta D (score + S^-1 z) ds`` (``sde.reverse_score_drift``), integrated by Euler.

One step is a half step of the linear part, an Euler step of the score part at the midpoint time and a second
half step of the linear part from the midpoint to the next grid time. The original implementations evaluate the
second half step's ``beta`` at the start time, which is wrong for a time-varying ``beta``; here each half step
integrates ``beta`` over its own interval.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..sdes.base import SDE, ScoreFn, randn_like

TIME_GRIDS = ("uniform", "quadratic")


def time_grid(
    name: str, T: float, eps: float, n_steps: int, *, dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None
) -> Tensor:
    """Decreasing sampling times ``t_0 = T > ... > t_n = eps`` (``n_steps + 1`` values).

    ``"uniform"``: equal steps. ``"quadratic"``: ``t_i = eps + (T - eps) (1 - i/n)^2``, small steps near ``eps``
    where the score changes fastest (CLD's quadratic striding). An unknown name raises ``ValueError``.
    """
    if name not in TIME_GRIDS:
        raise ValueError(f"unknown time grid {name!r}; valid time grids are: {', '.join(TIME_GRIDS)}")
    if not (isinstance(n_steps, int) and not isinstance(n_steps, bool) and n_steps >= 1):
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    u = torch.linspace(1.0, 0.0, n_steps + 1, dtype=torch.float64)
    grid = eps + (T - eps) * (u if name == "uniform" else u**2)
    return grid.to(dtype=dtype, device=device)


def sample_sscs(
    sde: SDE,
    score_fn: ScoreFn,
    z: Tensor,
    *,
    n_steps: int | None = None,
    grid: str = "uniform",
    eps: float = 1e-3,
    denoise: bool = True,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[Tensor, int]:
    """SSCS sampling (Dockhorn et al. 2022, §3.3 and Alg. 1) from a prior draw ``z`` down to ``eps``.

    Needs an SDE with the split of its reverse SDE (``reverse_linear_step``, ``reverse_score_drift``: every
    :class:`~scoresde.sdes.RecipeSDE`, e.g. PSLD and CLD). One score evaluation per step.

    Args:
        n_steps: number of steps (``sde.N`` when ``None``).
        grid: time grid, ``"uniform"`` or ``"quadratic"`` (:func:`time_grid`).
        eps: last time of the grid.
        denoise: finish with Tweedie denoising at ``eps`` (``sde.denoise``, one more score evaluation).
        generator: random generator for the noise of the linear half steps.
        progress: show a progress bar.

    Returns:
        ``(z, nfe)``: the final state and the number of score evaluations.
    """
    for method in ("reverse_linear_step", "reverse_score_drift"):
        if not callable(getattr(sde, method, None)):
            raise ValueError(f"the sscs sampler needs an SDE with a linear/score split of its reverse SDE "
                             f"(method {method}), as every RecipeSDE has; {type(sde).__name__} has none")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    ts = time_grid(grid, sde.T, eps, sde.N if n_steps is None else n_steps, dtype=z.dtype, device=z.device)
    nfe = 0
    B = z.shape[0]
    with torch.no_grad():
        for i in tqdm(range(len(ts) - 1), disable=not progress, desc="SSCS sampling"):
            t, t_next = ts[i].expand(B), ts[i + 1].expand(B)
            t_mid = 0.5 * (t + t_next)
            # 1. half step of the linear part, t -> t_mid (exact Gaussian transition).
            z = sde.reverse_linear_step(z, t, t_mid, randn_like(z, generator))
            # 2. full Euler step of the score part at the midpoint time.
            z = z + (ts[i] - ts[i + 1]) * sde.reverse_score_drift(z, t_mid, score_fn(z, t_mid))
            nfe += 1
            # 3. half step of the linear part, t_mid -> t_next (beta integrated over this interval).
            z = sde.reverse_linear_step(z, t_mid, t_next, randn_like(z, generator))
        if denoise:
            t_eps = ts[-1].expand(B)
            z = sde.denoise(z, t_eps, score_fn(z, t_eps))
            nfe += 1
    return z, nfe
