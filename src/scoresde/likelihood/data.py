"""The likelihood of a batch of a run's data, per dimension, whatever the SDE, with one seeding convention: the one
entry point of ``scoresde likelihood`` and the evaluation protocol's ``bpd``, so both give the same number on the
same points with the same seed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..numerics.seeding import example_generators
from ..sdes.base import SDE, ScoreFn
from .ode import Generators, bits_per_dim, log_likelihood


def data_nll(
    sde: SDE,
    score_fn: ScoreFn,
    batch: Tensor,
    *,
    centered: bool,
    trace: str = "hutchinson-rademacher",
    n_probes: int = 1,
    seed: int | None = None,
    indices: Iterable[int] | None = None,
    generator: Generators = None,
    cond: Mapping[str, Any] | None = None,
    method: str = "dopri5",
    steps: int | None = None,
    grid: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-example negative log-likelihood per dimension of a data batch and its standard error over the draws.

    ``uint8`` images give bits/dim (:func:`~scoresde.likelihood.bits_per_dim`, data range ``[-1, 1]`` when
    ``centered`` else ``[0, 1]``; Song et al. 2021, App. D.2); float points give nats/dim (``-log p / D``,
    :func:`~scoresde.likelihood.log_likelihood`). For a phase-space SDE (PSLD, CLD) it is the entropy-corrected
    augmented bound (Dockhorn et al. 2022, App. B.4). Each example gets ``n_probes`` draws of its dequantisation,
    momentum (phase space) and ``trace`` probe.

    **Seeding convention** (``seed``, ``indices``): example ``indices[j]`` of the data split (row ``j`` of ``batch``)
    draws everything from its own generator seeded with
    :func:`~scoresde.numerics.seeding.sample_seed` ``(seed, indices[j])`` (on the batch's device), in the order
    dequantisation, momentum, probe. The same points and seed then get the same draws whatever the batch they are
    in, so the CLI and the evaluation protocol agree; the values agree up to the adaptive ODE solver's tolerance,
    whose error control spans the batch. ``indices`` defaults to ``range(len(batch))``. Pass either ``seed`` or a
    ``generator`` (one generator for the batch, drawn probe-major: the values then depend on the batching).
    """
    B = batch.shape[0]
    if seed is not None:
        if generator is not None:
            raise ValueError("pass either seed (and indices: the per-example convention) or a generator, not both")
        indices = list(range(B)) if indices is None else [int(i) for i in indices]
        if len(indices) != B:
            raise ValueError(f"indices must name one example per row of the batch ({B}), got {len(indices)}")
        generator = example_generators(seed, indices, batch.device)
    elif indices is not None:
        raise ValueError("indices select per-example streams of a seed: pass seed=... too")
    opts = {"trace": trace, "n_probes": n_probes, "generator": generator, "cond": cond, "method": method,
            "steps": steps, "grid": grid}
    if batch.dtype == torch.uint8:
        v, info = bits_per_dim(sde, score_fn, batch, data_range=(-1.0, 1.0) if centered else (0.0, 1.0), **opts,
                               return_info=True)
        return v, info.stderr
    logp, info = log_likelihood(sde, score_fn, batch.float(), **opts, return_info=True)
    dims = batch[0].numel()
    return -logp / dims, info.stderr / dims
