"""Per-sample random streams: sample ``i`` draws its prior and every noise term from its own generator, seeded from
``(seed, i)``, so it is the same sample whatever batch or rank produces it (EDM's per-image seeds, made to work
through any sampler of :func:`scoresde.sample` without changing it).

The samplers draw noise as ``torch.randn(shape, generator=g)`` with the batch first. Inside
:func:`per_sample_generators` the yielded generator is a marker: a ``TorchFunctionMode`` answers each
``torch.randn``/``torch.rand`` call that names it with row ``j`` drawn from sample ``j``'s own generator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ..numerics.seeding import example_generators  # sample_seed lives in numerics (the likelihood uses it)
from ..sampling.registry import SAMPLERS

_PER_ROW = (torch.randn, torch.rand)

__all__ = ["batch_coupled", "per_sample_generators"]


class _PerSampleNoise(TorchFunctionMode):
    """Answer ``torch.randn``/``torch.rand`` calls that name ``marker`` row by row from per-sample generators."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        super().__init__()
        self.generators = list(generators)
        self.marker = torch.Generator()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if kwargs.get("generator") is not self.marker:
            return func(*args, **kwargs)
        if func not in _PER_ROW:
            raise NotImplementedError(f"per-sample generators support torch.randn and torch.rand, not {func}")
        kwargs.pop("generator")
        size = kwargs.pop("size", None)
        if size is None:
            size = args[0] if len(args) == 1 and not isinstance(args[0], int) else args
        size = tuple(int(s) for s in size)
        if not size or size[0] != len(self.generators):
            raise ValueError(f"per-sample noise needs the batch first: a draw of shape {size} for "
                             f"{len(self.generators)} samples")
        return torch.stack([func(size[1:], generator=g, **kwargs) for g in self.generators])


@contextmanager
def per_sample_generators(seed: int, indices: Sequence[int],
                          device: torch.device | str = "cpu") -> Iterator[torch.Generator]:
    """Yield a generator to pass to :func:`scoresde.sample` (or any function drawing batch-first noise with
    ``torch.randn``/``torch.rand``): row ``j`` of every draw comes from a generator on ``device`` seeded with
    :func:`sample_seed` ``(seed, indices[j])``.

    Samples are then independent of the batch they are drawn in, as long as the sampler treats samples
    independently (:func:`batch_coupled` is false: PC with corrector ``none`` or ``ald``, SSCS, DDIM). The
    ``langevin`` corrector (batch-mean norms in its step size) and the adaptive ODE solvers (one error norm for the
    batch) couple the samples of a batch: with them a sample depends on its batch too.
    """
    mode = _PerSampleNoise(example_generators(seed, indices, device))
    with mode:
        yield mode.marker


def batch_coupled(sampler: str, options: Mapping[str, Any]) -> bool:
    """Whether ``sampler`` with ``options`` couples the samples of a batch (see :func:`per_sample_generators`): the
    registry's word, :meth:`SAMPLERS[sampler].is_coupled <scoresde.sampling.SamplerSpec.is_coupled>` (options not
    given take the sampler's defaults)."""
    return SAMPLERS[sampler].is_coupled(options)
