"""``scoresde.sample``: one entry point for every sampler and SDE."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel, check_cond, model_and_arguments
from ..numerics.checks import check_tensor
from ..numerics.times import resolve_eps
from ..sdes.base import SDE, ScoreFn
from .registry import SAMPLERS


@dataclass
class SampleInfo:
    """What a sampler did: its name, the options it ran with (defaults filled in, ``eps`` as the SDE's
    ``sampling_eps`` when not given) and the NFE (network calls)."""

    sampler: str
    nfe: int
    options: dict[str, Any] = field(default_factory=dict)


def sampler_options(sampler: str) -> dict[str, Any]:
    """The options of ``sampler`` with their defaults (``cond``, ``generator`` and ``callback`` excluded)."""
    return SAMPLERS.get(sampler).options()


def _check_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int) or not isinstance(shape, (Sequence, torch.Size)) or isinstance(shape, str):
        raise ValueError(f"shape must be the data shape with the batch first, e.g. (64, 3, 32, 32) or (256, 2); "
                         f"got {shape!r}")
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(f"shape must be a non-empty sequence of positive integers (batch first), got {tuple(shape)}")
    return tuple(shape)


def sample(
    sde: SDE | DiffusionModel,
    score_fn: ScoreFn | Sequence[int] | None = None,
    shape: Sequence[int] | None = None,
    sampler: str = "pc",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    cond: dict[str, Any] | None = None,
    x_T: Tensor | None = None,
    return_info: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, SampleInfo]:
    """Draw samples of data shape ``shape`` (batch first) by reversing the SDE with the model.

    Two forms: ``sample(sde, score_fn, shape, sampler=...)`` with a plain ``score_fn(x, t)`` (or an adapter), and
    ``sample(model, shape, sampler=...)`` with a model adapter (:class:`~scoresde.models.DiffusionModel`, which
    carries its SDE). The start state ``z ~ p_T`` has the SDE's state shape (``sde.state_shape(shape)``), or is
    ``x_T``; the sampler runs on the state and the data part (``sde.data_part``) is returned.

    Args:
        sde: the forward SDE, or a model adapter (then ``score_fn`` is the shape).
        score_fn: ``score_fn(x, t)`` (``score_fn(x, t, **cond)`` with conditioning), or a model adapter.
        shape: data shape, e.g. ``(64, 3, 32, 32)``; may be omitted with ``x_T``.
        sampler: a name of :data:`scoresde.sampling.SAMPLERS`. For few network calls (10-50) on VE/VP/sub-VP use
            ``"dpm_solver"`` (DPM-Solver(++), Lu et al. 2022; also PSLD/CLD), ``"unipc"`` (Zhao et al. 2023) or
            ``"heun"`` (EDM, Karras et al. 2022); ``"ddim"`` (Song, Meng & Ermon 2021; deterministic or with
            ``eta``, every SDE) for a simple baseline; ``"pc"`` (predictor–corrector, Song et al. 2021, Alg. 1)
            for the original Score SDE sampling at hundreds of steps; ``"ode"`` (adaptive probability-flow ODE) for
            a tolerance instead of a step count; ``"sscs"`` (symmetric splitting, Dockhorn et al. 2022) on
            PSLD/CLD. Each sampler's docstring gives its options and when to choose it; a test checks that this
            list names every registered sampler.
        generator: random generator for the prior and every noise draw (global RNG when ``None``).
        device, dtype: where and in which precision to sample (``dtype=torch.float64`` runs the whole sampler in
            float64).
        cond: conditioning inputs, a dict of batch-first tensors passed to every model call as keyword arguments
            (``score_fn(x, t, class_labels=y)``).
        x_T: start from this state (shape ``sde.state_shape(shape)``) instead of a prior draw: decoding a latent,
            comparing two samplers on the same noise.
        return_info: also return a :class:`SampleInfo` with the NFE and the resolved options.
        **options: options of the chosen sampler (``steps``, ``times``, ``callback``, ``eps``, ...); an unknown
            option raises ``ValueError`` naming the valid ones. ``nfe=N`` (every fixed-step sampler, instead of
            ``steps``) is a budget: at most ``N`` network calls (``info.nfe`` counts them); the adaptive ``ode``
            sampler refuses it (its tolerances set its cost).
    """
    explicit_sde = None if isinstance(sde, DiffusionModel) else sde
    model, (shape, sampler) = model_and_arguments(sde, score_fn, shape, sampler, last_default="pc")
    spec = SAMPLERS.get(sampler)
    options = dict(options)
    if "nfe" in options and "nfe" not in spec.options():
        fixed = [name for name, other in SAMPLERS.items() if "nfe" in other.options()]
        raise ValueError(f"sampler {sampler!r} is adaptive and takes no nfe: its network calls follow from its "
                         f"tolerances rtol and atol (for a budget use {', '.join(fixed)})")
    if explicit_sde is not None and explicit_sde.N != model.sde.N and spec.fixed_steps and "steps" not in options \
            and "times" not in options and options.get("nfe") is None:
        options["steps"] = explicit_sde.N  # an SDE built with another N (the old way to set the step count)
    sde = model.sde
    callback = options.pop("callback", None)
    if callback is not None and not spec.fixed_steps:
        raise ValueError(f"sampler {sampler!r} takes no callback (it has no fixed steps)")
    spec.check_options(options)
    if x_T is not None:
        check_tensor("x_T", x_T, nonempty=True, finite=True)  # one NaN would spread to all samples (Langevin)
        if shape is not None and tuple(x_T.shape) != sde.state_shape(_check_shape(shape)):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, but the state of data shape {tuple(shape)} has "
                             f"shape {sde.state_shape(shape)}")
        z = x_T.to(device=device if device is not None else x_T.device, dtype=dtype)
    else:
        if shape is None:
            raise ValueError("pass the data shape (or a start state x_T)")
        z = sde.prior_sampling(sde.state_shape(_check_shape(shape)), generator, dtype=dtype, device=device)
    extra = {"callback": callback} if callback is not None else {}
    x, nfe = spec.fn(model, z, cond=check_cond(cond, z.shape[0]), generator=generator, **extra, **options)
    x = sde.data_part(x)
    if return_info:
        ran = {**spec.options(), **options}
        if ran.get("eps", 0) is None:  # the end time it ran to: the SDE's default
            ran["eps"] = resolve_eps(sde, None)
        return x, SampleInfo(sampler=sampler, nfe=nfe, options=ran)
    return x
