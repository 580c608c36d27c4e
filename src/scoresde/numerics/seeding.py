"""Per-example random streams: example ``i`` of a run seeded ``seed`` draws from its own generator, seeded from
``(seed, i)``, so its value does not depend on the batch (or rank) it is computed in. The evaluation protocol's
per-sample sampling (:mod:`scoresde.evaluation.seeding`) and the likelihood's per-example draws
(:func:`scoresde.likelihood.data_nll`) share this convention."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def sample_seed(seed: int, index: int) -> int:
    """64-bit seed of sample ``index`` of a run seeded ``seed``: NumPy's ``SeedSequence((seed, index))`` hash, so
    neighbouring indices get unrelated streams (O'Neill 2015 / NumPy's seeding; EDM uses the raw index)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed} and {index}")
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])


def example_generators(seed: int, indices: Iterable[int],
                       device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator on ``device`` per index, seeded with :func:`sample_seed` ``(seed, index)``."""
    device = torch.device(device)
    return [torch.Generator(device).manual_seed(sample_seed(seed, int(i))) for i in indices]
