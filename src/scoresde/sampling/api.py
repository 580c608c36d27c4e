"""``scoresde.sample``: one entry point for every sampler and SDE."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..sdes.base import SDE, ScoreFn
from .samplers import SAMPLERS


@dataclass
class SampleInfo:
    """What a sampler did: its name, the options it ran with (defaults filled in) and the NFE."""

    sampler: str
    nfe: int
    options: dict[str, Any] = field(default_factory=dict)


def sampler_options(sampler: str) -> dict[str, Any]:
    """The options of ``sampler`` with their defaults (``generator`` excluded)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid samplers are: {', '.join(sorted(SAMPLERS))}")
    params = inspect.signature(SAMPLERS[sampler]).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name != "generator"}


def sample(
    sde: SDE,
    score_fn: ScoreFn,
    shape: Sequence[int],
    sampler: str = "pc",
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    return_info: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, SampleInfo]:
    """Draw samples of data shape ``shape`` (batch first) by reversing ``sde`` with ``score_fn``.

    The prior draw ``z ~ p_T`` has the SDE's state shape (``sde.state_shape(shape)``), the sampler runs on the
    state, and the data part (``sde.data_part``) is returned.

    Args:
        sde: the forward SDE.
        score_fn: ``score_fn(x, t)`` with ``t`` a 1-D tensor of forward times in ``(0, T]``.
        shape: data shape, e.g. ``(64, 3, 32, 32)``.
        sampler: ``"pc"`` (:func:`~scoresde.sampling.samplers.sample_pc`: predictor, corrector, snr,
            n_steps_each, probability_flow, eps, denoise, progress) or ``"ode"``
            (:func:`~scoresde.sampling.samplers.sample_ode`: rtol, atol, method, eps, denoise).
        generator: random generator for the prior and every noise draw (global RNG when ``None``).
        device, dtype: where and in which precision to sample.
        return_info: also return a :class:`SampleInfo` with the NFE and the resolved options.
        **options: options of the chosen sampler; an unknown option raises ``ValueError``.
    """
    valid = sampler_options(sampler)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for sampler {sampler!r}; valid options are: "
                         f"{', '.join(sorted(valid))}")
    z = sde.prior_sampling(sde.state_shape(shape), generator, dtype=dtype, device=device)
    x, nfe = SAMPLERS[sampler](sde, score_fn, z, generator=generator, **options)
    x = sde.data_part(x)
    if return_info:
        return x, SampleInfo(sampler=sampler, nfe=nfe, options={**valid, **options})
    return x
