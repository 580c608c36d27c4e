"""The likelihood of a batch of a run's data, per dimension, whatever the SDE: one entry point for the CLI and the
evaluation protocol."""

from __future__ import annotations

import torch
from torch import Tensor

from ..sdes.base import SDE, ScoreFn
from ..sdes.phase_space import RecipeSDE
from .ode import bits_per_dim, log_likelihood
from .phase_space import augmented_bits_per_dim, augmented_log_likelihood


def data_nll(
    sde: SDE,
    score_fn: ScoreFn,
    batch: Tensor,
    *,
    centered: bool,
    trace: str = "hutchinson-rademacher",
    n_probes: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-example negative log-likelihood per dimension of a data batch and its probe standard error.

    ``uint8`` images give bits/dim (:func:`~scoresde.likelihood.bits_per_dim`, data range ``[-1, 1]`` when
    ``centered`` else ``[0, 1]``; Song et al. 2021, App. D.2); float points give nats/dim (``-log p / D``). For a
    phase-space SDE (PSLD, CLD) it is the entropy-corrected augmented bound (Dockhorn et al. 2022, App. B.4) with
    ``n_probes`` momentum draws per example; otherwise ``n_probes`` Hutchinson probes of the ``trace`` estimator.
    """
    phase_space = isinstance(sde, RecipeSDE)
    opts = {"trace": trace, "generator": generator, ("n_momentum" if phase_space else "n_probes"): n_probes}
    if batch.dtype == torch.uint8:
        fn = augmented_bits_per_dim if phase_space else bits_per_dim
        v, info = fn(sde, score_fn, batch, data_range=(-1.0, 1.0) if centered else (0.0, 1.0), **opts)
        return v, info.stderr
    fn = augmented_log_likelihood if phase_space else log_likelihood
    logp, info = fn(sde, score_fn, batch.float(), **opts)
    dims = batch[0].numel()
    return -logp / dims, info.stderr / dims
