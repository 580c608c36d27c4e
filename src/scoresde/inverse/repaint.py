"""RePaint (``method="repaint"`` of :func:`scoresde.inpaint` / :func:`scoresde.colorize`).

Paper: A. Lugmayr, M. Danelljan, A. Romero, F. Yu, R. Timofte, L. Van Gool, "RePaint: Inpainting using Denoising
Diffusion Probabilistic Models", CVPR 2022. Alg. 1: each reverse step draws the known part from the forward kernel
(eq. 8), the unknown part from the model's reverse step (eq. 9) and joins them with the mask (eq. 10); §4.2
"resampling": after every ``jump_length`` steps down, the state is re-noised ``jump_length`` steps up with the forward
transition, ``resamplings - 1`` times, so that the two parts harmonise.

Here the reverse step is the exact Gaussian transition of any linear SDE (:class:`~scoresde.inverse.kernels.
LinearKernel`, Ho et al. 2020 eq. 7 in matrix form), so RePaint runs on VE/VP/sub-VP and on CLD/PSLD states. Not exact:
on the benchmark mixture (exact weights 0.85/0.15) it returns 0.55, replacement 0.54; NFE about ``steps *
resamplings``. Use :mod:`scoresde.inverse.smc` when the conditional law must be right.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import DiffusionModel
from ..numerics.checks import check_count
from ..numerics.grids import time_steps
from ..numerics.times import resolve_eps
from ..sampling.common import counting
from ..sdes.linalg import apply_blocks, sym_sqrt
from .kernels import LinearKernel, default_grid
from .observation import noised_observation
from .solve import InverseProblem

__all__ = ["run_repaint"]


def _repaint_schedule(steps: int, jump_length: int, resamplings: int) -> list[int]:
    """The sequence of grid indices RePaint visits (Lugmayr et al. 2022, Alg. 1 with jumps): down one index at a time
    from ``0`` (``T``) to ``steps`` (``eps``); at every multiple ``j < steps`` of ``jump_length`` it jumps back up
    ``jump_length`` indices ``resamplings - 1`` times before going on."""
    left = {j: resamplings - 1 for j in range(jump_length, steps, jump_length)}
    path, i = [0], 0
    while i < steps:
        i += 1
        path.append(i)
        if left.get(i, 0) > 0:
            left[i] -= 1
            for _ in range(jump_length):
                i -= 1
                path.append(i)
    return path


def run_repaint(
    model: DiffusionModel, problem: InverseProblem, z: Tensor, *,
    steps: int | None = None,
    jump_length: int = 10,
    resamplings: int = 10,
    grid: str | None = None,
    eps: float | None = None,
    denoise: bool = True,
    cond: dict[str, Any], generator: torch.Generator | None, progress: bool,
) -> tuple[Tensor, int, dict[str, Any]]:
    """RePaint (Lugmayr et al. 2022): exact-posterior ancestral steps on ``steps`` intervals of ``grid`` with
    the observed coordinates replaced by draws of ``p_t(z_t | y)``, and re-noising jumps (:func:`_repaint_schedule`);
    a final Tweedie denoising step at ``eps`` when ``denoise``.

    ``z`` is a prior draw of the state ``(B, k C, ...)``; ``grid`` a name of :data:`scoresde.numerics.grids.GRIDS`
    (default :func:`~scoresde.inverse.kernels.default_grid`). Returns ``(data, nfe, {})``. Noiseless measurements with
    an SVD (:meth:`~scoresde.inverse.solve.InverseProblem.observation`)."""
    obs = problem.observation("repaint", z.shape[1] // problem.data_shape[1])
    sde = model.sde
    eps = resolve_eps(sde, eps)
    n = sde.N if steps is None else steps
    check_count("steps", n)
    check_count("jump_length", jump_length)
    check_count("resamplings", resamplings)
    kernel = LinearKernel(sde)
    counted = counting(model, cond)
    ts = time_steps(sde, n, grid=default_grid(sde, grid), eps=eps)
    path = _repaint_schedule(n, jump_length, resamplings)
    x = z
    with torch.no_grad():
        for a, b in tqdm(list(itertools.pairwise(path)), disable=not progress, desc="RePaint"):
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            if b < a:  # re-noise upward (unconditionally: the observed part is replaced on the way down)
                x = kernel.forward(x, ts[b], ts[a], noise)
                continue
            t = ts[a].to(x).expand(x.shape[0])
            psi_inv, v, post = kernel.reverse(ts[a], ts[b])
            score = counted.score(x, t)
            x = apply_blocks(psi_inv, x + apply_blocks(v, score)) + apply_blocks(sym_sqrt(post), noise)
            x = obs.merge(x, noised_observation(sde, obs, ts[b].to(x).expand(x.shape[0]), generator)[0])
        if denoise:
            t = ts[-1].to(x).expand(x.shape[0])
            x = sde.denoise(x, t, counted.score(x, t))
    return sde.data_part(x), counted.calls, {}
