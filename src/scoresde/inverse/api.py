"""The entry points of masked linear inverse problems, ``scoresde.inpaint`` and ``scoresde.colorize``, and the method
registry :data:`INVERSE_METHODS` they dispatch through.

The observation is a set of coordinates of the data in an orthonormal basis (:class:`~scoresde.inverse.observation.
Observation`): the pixels where ``mask == 1`` (inpainting), or the grey channel of the colour-decoupling rotation
(colorization; Song et al., ICLR 2021, App. I). The methods, one module each with its paper:

* ``"replacement"`` (:mod:`scoresde.inverse.replacement`): Score SDE's PC inpainter/colorizer. Fast, biased.
* ``"repaint"`` (:mod:`scoresde.inverse.repaint`): RePaint's resampling (Lugmayr et al., CVPR 2022). Not exact.
* ``"smc"`` (:mod:`scoresde.inverse.smc`): a particle filter on the noised observation path, asymptotically exact.

A method is ``fn(model, obs, z, *, <options>, cond, generator, progress) -> (data, nfe, diagnostics)`` with ``z`` a
prior draw of the state; its keyword-only parameters with defaults are its options (read by the registry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel, check_cond, model_and_arguments
from ..numerics.checks import check_tensor
from ..numerics.registry import FunctionRegistry, MethodSpec
from ..sdes.base import SDE
from .observation import Observation, decoupling_matrix
from .repaint import run_repaint
from .replacement import run_replacement
from .smc import run_smc

__all__ = ["INVERSE_METHODS", "InverseInfo", "colorize", "inpaint"]

INVERSE_METHODS: FunctionRegistry[MethodSpec] = FunctionRegistry("inverse-problem method",
                                                                 reserved=("cond", "generator", "progress"))
"""Name -> method of :func:`inpaint` and :func:`colorize` (``INVERSE_METHODS.get(name).options()`` gives a method's
options with their defaults)."""
INVERSE_METHODS.add("replacement", run_replacement)
INVERSE_METHODS.add("repaint", run_repaint)
INVERSE_METHODS.add("smc", run_smc)


@dataclass
class InverseInfo:
    """What an inverse-problem sampler did: the method, the NFE (batched model calls; SMC's batch holds ``B *
    num_particles`` rows), the options it ran with (defaults filled in) and method-specific diagnostics (SMC:
    ``resampled``, the number of steps that resampled; ``final_ess``, the effective sample size of the last weights
    per returned sample; ``rows_per_call``)."""

    method: str
    nfe: int
    options: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _run(method: str, model: DiffusionModel, x_obs: Tensor, mask: Tensor, rotate: Tensor | None, *,
         generator: torch.Generator | None, device: Any, dtype: torch.dtype, cond: dict[str, Any] | None,
         return_info: bool, progress: bool, options: dict[str, Any]) -> Any:
    spec = INVERSE_METHODS.get(method)
    spec.check_options(options)
    sde = model.sde
    device = x_obs.device if device is None else torch.device(device)
    x_obs = x_obs.to(device=device, dtype=dtype)
    mask = mask.to(device=device, dtype=dtype).expand(x_obs.shape)
    state_shape = sde.state_shape(tuple(x_obs.shape))
    k = state_shape[1] // x_obs.shape[1]
    obs = Observation(x_obs, mask, rotate, k)
    cond = check_cond(cond, x_obs.shape[0])
    z = sde.prior_sampling(state_shape, generator, dtype=dtype, device=device)
    x, nfe, diagnostics = spec(model, obs, z, cond=cond, generator=generator, progress=progress, **options)
    x = obs.finish(x)
    if rotate is None:  # the observed entries bit for bit (finish's arithmetic turns -0.0 into 0.0)
        x = torch.where(mask.bool(), x_obs, x)
    if return_info:
        return x, InverseInfo(method=method, nfe=nfe, options={**spec.options(), **options}, diagnostics=diagnostics)
    return x


def _check_mask(mask: Any, x_obs: Tensor) -> Tensor:
    mask = check_tensor("mask", mask)
    try:
        shape = torch.broadcast_shapes(mask.shape, x_obs.shape)
    except RuntimeError:
        shape = None
    if shape != x_obs.shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to x_obs of shape {tuple(x_obs.shape)}"
                         " (1 = observed; e.g. (1, 1, H, W) or x_obs's shape)")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 (to fill in) and 1 (observed)")
    return mask.to(x_obs.dtype) if mask.dtype == torch.bool else mask


def inpaint(
    sde: SDE | DiffusionModel,
    score_fn: Any = None,
    x_obs: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    method: str = "replacement",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    cond: dict[str, Any] | None = None,
    return_info: bool = False,
    progress: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, InverseInfo]:
    """Sample the unobserved pixels of ``x_obs`` from the model's conditional law given the pixels where ``mask == 1``.

    Two forms, as :func:`scoresde.sample`: ``inpaint(sde, score_fn, x_obs, mask, ...)`` and ``inpaint(model, x_obs,
    mask, ...)`` with a model adapter. ``x_obs`` has the data shape ``(B, C, ...)`` (values under ``mask == 0`` are
    ignored); ``mask`` (1 = observed, 0 = to fill in, bool or float) broadcasts to it. The returned data have exactly
    ``x_obs``'s values where ``mask == 1`` (bit for bit; they must be finite: a ``ValueError`` names the first that is
    not); entries under ``mask == 0`` are never read, so NaN may mark them. On phase-space SDEs (CLD, PSLD) the
    observation constrains the position; the momentum is sampled.

    Methods (:data:`INVERSE_METHODS`; options by keyword, an unknown one is a ``ValueError`` naming the valid ones):

    * ``"replacement"`` (default): Score SDE's PC inpainter, numerically identical to the original on the unobserved
      pixels with ``denoise=False``. Options: ``steps`` (default ``sde.N``), ``predictor="reverse_diffusion"``,
      ``corrector="langevin"``, ``snr=0.16``, ``n_steps_each=1``, ``probability_flow=False``, ``eps=1e-3`` (the
      original's default is ``1e-5``), ``denoise=True`` (the noise-free mean of the last step; the original's
      returned ``x_mean`` keeps the last noisy state in the unobserved pixels, which is ``denoise=False`` here).
      Fastest; biased toward the unconditional component weights.
    * ``"repaint"``: RePaint's resampling; options ``steps`` (default ``sde.N``), ``jump_length=10``,
      ``resamplings=10`` (RePaint's ``r`` and ``n``; NFE about ``steps * resamplings``), ``grid=None`` (a name of
      :data:`scoresde.numerics.grids.GRIDS`; by default ``logSNR`` for VE/VP/sub-VP, ``quadratic`` for CLD/PSLD),
      ``eps=1e-3``,
      ``denoise=True``. Not exact (barely better than replacement on the benchmark mixture).
    * ``"smc"``: the asymptotically exact particle filter; options ``steps`` (default ``sde.N``),
      ``num_particles=16`` (per returned sample; ``steps + 1`` model calls on ``B * num_particles`` rows),
      ``ess_threshold=0.5``, ``grid=None``, ``eps=1e-3``, ``denoise=True``. Use it when the conditional must be right
      (e.g. multimodal posteriors).

    Args:
        generator: random generator for every draw (global RNG when ``None``).
        device, dtype: where and in which precision to sample.
        cond: conditioning of the model (e.g. ``{"class_labels": y}``), batch-first.
        return_info: also return an :class:`InverseInfo` (NFE, options, diagnostics).
        progress: show a progress bar.
    """
    model, (x_obs, mask) = model_and_arguments(sde, score_fn, x_obs, mask)
    x_obs = check_tensor("x_obs", x_obs, nonempty=True)
    if x_obs.dim() < 2:
        raise ValueError(f"x_obs must have the data shape with the batch first, (B, C, ...), got {tuple(x_obs.shape)}")
    mask = _check_mask(mask, x_obs)
    # the observed entries must be finite; the others are ignored (set to 0, so that a NaN there reaches no sample)
    observed = mask.bool().expand(x_obs.shape)
    x_obs = check_tensor("x_obs", torch.where(observed, x_obs, torch.zeros((), dtype=x_obs.dtype)), finite=True)
    return _run(method, model, x_obs, mask, None, generator=generator, device=device, dtype=dtype, cond=cond,
                return_info=return_info, progress=progress, options=options)


def colorize(
    sde: SDE | DiffusionModel,
    score_fn: Any = None,
    gray: Tensor | None = None,
    *,
    method: str = "replacement",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    cond: dict[str, Any] | None = None,
    return_info: bool = False,
    progress: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, InverseInfo]:
    """Sample colour images whose channel mean equals the grey image ``gray`` (shape ``(B, C, ...)`` with ``C >= 2``,
    the grey value repeated in every channel as in the original; only its channel mean is used).

    The observation is the first coordinate of the orthonormal channel rotation :func:`~scoresde.inverse.observation.
    decoupling_matrix`; every ``method`` of :func:`inpaint` applies in the rotated basis (``"replacement"`` is Score
    SDE's PC colorizer, numerically identical to the original with ``denoise=False``, same options and defaults). Forms
    ``colorize(sde, score_fn, gray, ...)`` and ``colorize(model, gray, ...)``. The returned images have ``gray``'s
    channel mean up to rounding (the rotation is applied in floating point).
    """
    model, (gray,) = model_and_arguments(sde, score_fn, gray)
    gray = check_tensor("gray", gray, nonempty=True, finite=True)
    if gray.dim() < 2 or gray.shape[1] < 2:
        raise ValueError(f"gray must have shape (B, C, ...) with C >= 2 channels (repeat the grey channel), got "
                         f"{tuple(gray.shape)}")
    channels = gray.shape[1]
    mask = torch.zeros((1, channels) + (1,) * (gray.dim() - 2), dtype=gray.dtype, device=gray.device)
    mask[:, 0] = 1.0
    if not torch.equal(gray, gray[:, :1].expand(gray.shape)):  # only the channel mean is observed
        gray = gray.mean(1, keepdim=True).expand(gray.shape)
    return _run(method, model, gray, mask, decoupling_matrix(channels), generator=generator, device=device,
                dtype=dtype, cond=cond, return_info=return_info, progress=progress, options=options)
