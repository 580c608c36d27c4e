"""Score matching for phase-space SDEs (PSLD, CLD): hybrid (HSM) and denoising (DSM) score matching.

With ``z_t = Phi(t) z_0 + L_t eps`` (``L_t L_t^T`` the kernel covariance of ``sde.marginal_prob``) the conditional
score is ``-L_t^-T eps``, so score matching in the epsilon form is ``|| L_t^T s(z_t, t) + eps ||^2``
(Dockhorn et al. 2022, §3.2 and App. B; Pandey & Mandt 2023, §3):

* **HSM** (``sde.score_matching == "hsm"``): the initial momentum is marginalised, ``z_0 = [x_0, 0]`` and the kernel
  covariance starts at ``Sigma_0 = diag(0, kappa M)``;
* **DSM** (``"dsm"``): ``m_0 ~ N(0, kappa M)`` is drawn, ``z_0 = [x_0, m_0]`` and the kernel starts at ``0``.

Both have the true phase-space score as minimiser. ``blocks="momentum"`` keeps only the momentum rows of the
residual: with the lower factor they involve only the momentum score, which is all the reverse SDE needs when the
data block has no diffusion (CLD, PSLD with ``Gamma = 0``; a network with 3 output channels for RGB data).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..models.phase_space import BLOCKS, momentum_score
from ..sdes.phase_space import RecipeSDE, _blocks, apply_blocks
from .dsm import _finish, _reduce_per_example, _score_fn_of


def phase_space_loss(
    model: Any,
    sde: RecipeSDE,
    batch: Tensor,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    momentum: Tensor | None = None,
    blocks: str = "all",
    reduce_mean: bool = False,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """HSM or DSM loss ``|| (L_t^T s(z_t, t) + eps)_blocks ||^2`` for data ``x_0 = batch`` (Dockhorn et al. 2022,
    eqs. of §3.2 in epsilon form; the mode is ``sde.score_matching``).

    Args:
        model: ``score_fn(z, t)`` of the full state, or an object with ``.score_fn``.
        sde: a :class:`~scoresde.sdes.RecipeSDE` (PSLD, CLD).
        batch: clean data ``x_0``, shape ``(B, C, ...)``.
        t: times ``(B,)``; drawn from ``U(eps, T)`` when ``None``.
        noise: ``eps`` of the state's shape ``(B, k C, ...)``; drawn when ``None``.
        momentum: DSM only: the auxiliary blocks of ``z_0``, shape ``(B, (k-1) C, ...)``; drawn from
            ``N(0, Sigma_0)`` when ``None``. HSM rejects it (its ``z_0`` has zero momentum).
        blocks: ``"all"`` (every block of the residual) or ``"momentum"`` (the last block only).
        reduce_mean: average over the kept entries instead of ``0.5 * sum`` (as :func:`~scoresde.objectives.sde_loss`).
        eps: smallest training time.
        generator: random generator for ``t``, the momentum and ``noise`` (drawn in that order).
        reduction: ``"mean"`` over the batch or ``"none"``.
    """
    if blocks not in BLOCKS:
        raise ValueError(f"unknown blocks {blocks!r}; valid values are: {', '.join(BLOCKS)}")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    B, k = batch.shape[0], sde.k
    if t is None:
        t = torch.rand(B, generator=generator, device=batch.device, dtype=batch.dtype) * (sde.T - eps) + eps
    elif t.shape != (B,):
        raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
    z0 = initial_state(sde, batch, momentum, generator)
    if noise is None:
        noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype, device=z0.device)
    elif noise.shape != z0.shape:
        raise ValueError(f"noise must have the state's shape {tuple(z0.shape)}, got {tuple(noise.shape)}")
    mean, L = sde.marginal_prob(z0, t)
    score = _score_fn_of(model)(mean + apply_blocks(L, noise), t)
    resid = apply_blocks(L.transpose(-1, -2), score) + noise
    if blocks == "momentum":
        resid = _blocks(resid, k)[:, -1]
    return _finish(_reduce_per_example(torch.square(resid), reduce_mean), reduction)


def initial_state(
    sde: RecipeSDE, x: Tensor, momentum: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """``z_0`` of the training mode: ``[x, 0]`` for HSM, ``[x, m_0]`` with ``m_0 ~ N(0, Sigma_0)`` (or the given
    ``momentum``) for DSM (Dockhorn et al. 2022, §3.2)."""
    if sde.score_matching == "hsm":
        if momentum is not None:
            raise ValueError("HSM marginalises the initial momentum: z_0 = [x_0, 0]; momentum must be None")
        return torch.cat([x] + [torch.zeros_like(x)] * (sde.k - 1), dim=1)
    if momentum is None:
        return sde.augment(x, generator)
    expected = (x.shape[0], (sde.k - 1) * x.shape[1], *x.shape[2:])
    if tuple(momentum.shape) != expected:
        raise ValueError(f"momentum must have shape {expected}, got {tuple(momentum.shape)}")
    return torch.cat([x, momentum], dim=1)


def score_from_eps(sde: RecipeSDE, eps_pred: Tensor, t: Tensor, blocks: str = "all") -> Tensor:
    """The score ``-L_t^-T eps`` of a noise-predicting network, with the kernel factor of ``sde``'s training mode
    (Dockhorn et al. 2022, §3.2; Pandey & Mandt 2023, §3): ``sde.eps_to_score`` for ``blocks="all"``,
    :func:`scoresde.models.phase_space.momentum_score` for ``"momentum"``.

    Using the covariance of the mode the network was trained with matters: PSLD's code converts every network
    with the HSM covariance, which is wrong for DSM-trained ones.
    """
    if blocks not in BLOCKS:
        raise ValueError(f"unknown blocks {blocks!r}; valid values are: {', '.join(BLOCKS)}")
    if blocks == "all":
        return sde.eps_to_score(eps_pred, t, eps_pred)
    return momentum_score(sde, eps_pred, t)
