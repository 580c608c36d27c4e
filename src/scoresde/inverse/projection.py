"""Data consistency by projection in the SVD basis of any linear operator: ``method="projection"`` of
:func:`scoresde.solve_inverse` (noiseless measurements ``y = A x``).

Paper: Y. Song, L. Shen, L. Xing, S. Ermon, "Solving Inverse Problems in Medical Imaging with Score-Based Generative
Models", ICLR 2022, §3.2 (arXiv:2111.08005): write ``A = P(Lambda) T`` with ``T`` invertible; after every update of
the predictor-corrector sampler (Song et al., ICLR 2021, Alg. 1) draw a noised measurement ``y_t`` from the forward
kernel of ``y`` and move the measured coordinates of ``T x_t`` to ``(1 - lambda) T x_t + lambda y_t`` (the closed form
of its proximal step; ``lambda = 1`` is hard consistency). Here ``T = V^T`` of the operator's SVD ``A = U S V^T``
and the measured coordinates are those with ``S > 0``, observed as ``(U^T y) / S``; for a mask ``lambda = 1`` is Score
SDE's replacement inpainter (:mod:`scoresde.inverse.replacement`).

Fast (one model call per update) but biased, like replacement: the unmeasured part never learns which mode the
measurement selects (biased: weight 0.564 where the exact conditional has 0.808 and the prior 0.5, on the 4-D mixture
under a dense 2 x 4 projection of ``tests/inverse/test_projection.py``, VP, 100 steps). Use :mod:`scoresde.inverse.smc`
when the posterior must be right, or for noisy measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel
from .replacement import pc_data_consistency
from .solve import InverseProblem

__all__ = ["run_projection"]


def run_projection(
    model: DiffusionModel, problem: InverseProblem, z: Tensor, *,
    steps: int | None = None,
    weight: float = 1.0,
    predictor: str | Callable = "reverse_diffusion",
    corrector: str | Callable = "langevin",
    snr: float = 0.16,
    n_steps_each: int = 1,
    probability_flow: bool = False,
    eps: float | None = None,
    denoise: bool = True,
    cond: dict[str, Any], generator: torch.Generator | None, progress: bool,
) -> tuple[Tensor, int, dict[str, Any]]:
    """Song et al. (2022)'s projection sampler: the PC sampler on ``linspace(T, eps, steps)`` (``steps`` defaults to
    ``sde.N``) whose measured coordinates in the SVD basis are pulled to a fresh noised measurement after every
    corrector and predictor update with weight ``weight`` (their ``lambda`` in ``(0, 1]``; 1 = replace). Predictor,
    corrector, ``snr``, ``n_steps_each``, ``probability_flow``, ``eps`` and ``denoise`` as for
    ``method="replacement"``. Noiseless measurements only (``sigma_y > 0`` is one ``ValueError``); any operator with
    an SVD; every SDE (on CLD/PSLD the position and momentum blocks are rotated alike). Returns ``(data, nfe, {})``."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 < weight <= 1.0:
        raise ValueError(f"weight must lie in (0, 1] (Song et al. 2022's lambda; 1 = replace), got {weight!r}")
    obs = problem.observation("projection", z.shape[1] // problem.data_shape[1])
    return pc_data_consistency(model, obs, z, steps=steps, predictor=predictor, corrector=corrector, snr=snr,
                               n_steps_each=n_steps_each, probability_flow=probability_flow, eps=eps, denoise=denoise,
                               weight=float(weight), cond=cond, generator=generator, progress=progress)
