"""The entry points of linear inverse problems, ``scoresde.solve_inverse`` (any :mod:`~scoresde.inverse.operators`
operator, noisy or noiseless), ``scoresde.inpaint`` and ``scoresde.colorize`` (thin calls of it with a
:class:`~scoresde.inverse.operators.Mask` / :class:`~scoresde.inverse.operators.Grey` operator), and the method
registry :data:`INVERSE_METHODS` they dispatch through.

The methods, one module each with its paper:

* ``"replacement"`` (:mod:`scoresde.inverse.replacement`): Score SDE's PC inpainter/colorizer. Fast, biased.
* ``"repaint"`` (:mod:`scoresde.inverse.repaint`): RePaint's resampling (Lugmayr et al., CVPR 2022). Not exact.
* ``"projection"`` (:mod:`scoresde.inverse.projection`): Song et al. (ICLR 2022) data consistency in the SVD basis of
  any operator; noiseless. Biased like replacement.
* ``"smc"`` (:mod:`scoresde.inverse.smc`): a particle filter on the noised observation path (MCGdiff-type in the SVD
  basis), asymptotically exact for noisy and noiseless measurements.

A method is ``fn(model, problem, z, *, <options>, cond, generator, progress) -> (data, nfe, diagnostics)`` with
``problem`` an :class:`~scoresde.inverse.solve.InverseProblem` and ``z`` a prior draw of the state (the contract in
:mod:`scoresde.inverse.solve`); its keyword-only parameters with defaults are its options (read by the registry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..models.adapter import DiffusionModel, check_cond, model_and_arguments
from ..numerics.checks import check_tensor
from ..numerics.registry import FunctionRegistry, MethodSpec
from ..numerics.times import resolve_eps
from ..sdes.base import SDE
from .ddrm import run_ddrm
from .dps import run_dps
from .mmps import run_mmps
from .operators import Grey, LinearOperator, Mask
from .pigdm import run_pigdm
from .projection import run_projection
from .repaint import run_repaint
from .replacement import run_replacement
from .smc import run_smc
from .solve import InverseProblem

__all__ = ["INVERSE_METHODS", "InverseInfo", "colorize", "inpaint", "solve_inverse"]

INVERSE_METHODS: FunctionRegistry[MethodSpec] = FunctionRegistry("inverse-problem method",
                                                                 reserved=("cond", "generator", "progress"))
"""Name -> method of :func:`solve_inverse`, :func:`inpaint` and :func:`colorize` (``INVERSE_METHODS.get(name).
options()`` gives a method's options with their defaults)."""
INVERSE_METHODS.add("replacement", run_replacement)
INVERSE_METHODS.add("repaint", run_repaint)
INVERSE_METHODS.add("smc", run_smc)
INVERSE_METHODS.add("projection", run_projection)
INVERSE_METHODS.add("dps", run_dps)
INVERSE_METHODS.add("pigdm", run_pigdm)
INVERSE_METHODS.add("ddrm", run_ddrm)
INVERSE_METHODS.add("mmps", run_mmps)


@dataclass
class InverseInfo:
    """What an inverse-problem sampler did: the method, the NFE (batched model calls; SMC's batch holds ``B *
    num_particles`` rows), the options it ran with (defaults filled in; ``eps`` the SDE's ``sampling_eps`` when not
    given) and method-specific diagnostics (SMC: ``resampled``, the number of steps that resampled; ``final_ess``,
    the effective sample size of the last weights per returned sample; ``rows_per_call``)."""

    method: str
    nfe: int
    options: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _run(method: str, model: DiffusionModel, operator: LinearOperator, y: Tensor, sigma_y: float, *,
         generator: torch.Generator | None, device: Any, dtype: torch.dtype, cond: dict[str, Any] | None,
         return_info: bool, progress: bool, options: dict[str, Any]) -> Any:
    spec = INVERSE_METHODS.get(method)
    spec.check_options(options)
    sde = model.sde
    device = y.device if device is None else torch.device(device)
    y = y.to(device=device, dtype=dtype)
    operator = operator.bind(operator.infer_in_shape(y.shape[1:]))
    data_shape = (y.shape[0], *operator.in_shape)
    problem = InverseProblem(operator, y, sigma_y, data_shape)
    state_shape = sde.state_shape(data_shape)
    cond = check_cond(cond, y.shape[0])
    z = sde.prior_sampling(state_shape, generator, dtype=dtype, device=device)
    x, nfe, diagnostics = spec(model, problem, z, cond=cond, generator=generator, progress=progress, **options)
    if sigma_y == 0 and operator.has_svd:  # a noiseless measurement is met exactly (in the SVD basis)
        x = problem.observation(method, state_shape[1] // data_shape[1]).finish(x)
        if isinstance(operator, Mask):  # the observed entries bit for bit (finish's arithmetic turns -0.0 into 0.0)
            x = torch.where(operator.mask.to(device).bool().expand(data_shape), y, x)
    if return_info:
        ran = {**spec.options(), **options}
        if ran.get("eps", 0) is None:  # the end time it ran to: the SDE's default
            ran["eps"] = resolve_eps(sde, None)
        return x, InverseInfo(method=method, nfe=nfe, options=ran, diagnostics=diagnostics)
    return x


def solve_inverse(
    sde: SDE | DiffusionModel,
    score_fn: Any = None,
    operator: LinearOperator | None = None,
    y: Tensor | None = None,
    *,
    sigma_y: float = 0.0,
    method: str = "smc",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    cond: dict[str, Any] | None = None,
    return_info: bool = False,
    progress: bool = False,
    **options: Any,
) -> Tensor | tuple[Tensor, InverseInfo]:
    """One posterior sample per row of ``y`` given the linear measurement ``y = A x + sigma_y n`` (``n ~ N(0, I)``),
    with the model as the prior of ``x``.

    Two forms, as :func:`scoresde.sample`: ``solve_inverse(sde, score_fn, operator, y, ...)`` and
    ``solve_inverse(model, operator, y, ...)``. ``operator`` is a :class:`~scoresde.inverse.operators.LinearOperator`
    (``Dense``, ``Mask``, ``Grey``, ``Downsample``, ``Blur`` or a composition ``A @ B``); one built without a shape
    takes it from ``y`` (shape ``(B, *operator.out_shape)``, finite). Returns data of shape ``(B, *operator.in_shape)``;
    with ``sigma_y = 0`` and an operator with an SVD they meet ``A x = y`` exactly up to rounding (and the observed
    entries of a ``Mask`` bit for bit).

    Methods (:data:`INVERSE_METHODS`; options by keyword, an unknown one is a ``ValueError`` naming the valid ones):
    ``"smc"`` (default; asymptotically exact, noisy or noiseless, any operator with an SVD; noisy measurements need
    a scalar SDE), ``"projection"`` (Song et al. 2022, noiseless, any operator with an SVD, fast and biased),
    ``"replacement"`` and ``"repaint"`` (noiseless, any operator with an SVD, biased), and the methods registered by
    their modules (``INVERSE_METHODS.get(name).options()`` lists a method's options and defaults). Use ``"smc"`` when
    the posterior must be right (multimodal posteriors, calibrated uncertainty); its cost is ``num_particles`` times
    a sampler's. Every method's last time ``eps`` defaults to ``None``: the SDE's ``sampling_eps`` (``1e-3``; EDM:
    ``sigma_min``).

    Args:
        sigma_y: standard deviation of the measurement noise (``0``: noiseless).
        generator: random generator for every draw (global RNG when ``None``).
        device, dtype: where and in which precision to sample.
        cond: conditioning of the model (e.g. ``{"class_labels": labels}``), batch-first.
        return_info: also return an :class:`InverseInfo` (NFE, options, diagnostics).
        progress: show a progress bar.
    """
    if isinstance(sde, DiffusionModel) and isinstance(score_fn, LinearOperator):  # model-first: (model, A, y)
        if operator is not None and y is not None:
            raise TypeError("y was given twice: positionally and by keyword; the model-first form is "
                            "solve_inverse(model, operator, y, ...)")
        model, operator, y = sde, score_fn, (operator if y is None else y)
    else:
        model, (operator, y) = model_and_arguments(sde, score_fn, operator, y)
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a scoresde.inverse.LinearOperator (Dense, Mask, Grey, Downsample, Blur), "
                        f"got {type(operator).__name__}")
    y = check_tensor("y", y, nonempty=True, finite=True)
    if y.dim() < 2:
        raise ValueError(f"y must have a batch dimension first, (B, *out_shape), got {tuple(y.shape)}")
    if isinstance(sigma_y, bool) or not isinstance(sigma_y, int | float) or not 0 <= sigma_y < float("inf"):
        raise ValueError(f"sigma_y must be a finite number >= 0 (the measurement noise std), got {sigma_y!r}")
    return _run(method, model, operator, y, float(sigma_y), generator=generator, device=device, dtype=dtype,
                cond=cond, return_info=return_info, progress=progress, options=options)


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
    observation constrains the position; the momentum is sampled. A thin call of :func:`solve_inverse` with the
    operator :class:`~scoresde.inverse.operators.Mask` (one mask, or one per row) and ``sigma_y = 0``.

    Methods (:data:`INVERSE_METHODS`; options by keyword, an unknown one is a ``ValueError`` naming the valid ones):

    * ``"replacement"`` (default): Score SDE's PC inpainter, numerically identical to the original on the unobserved
      pixels with ``denoise=False``. Options: ``steps`` (default ``sde.N``), ``predictor="reverse_diffusion"``,
      ``corrector="langevin"``, ``snr=0.16``, ``n_steps_each=1``, ``probability_flow=False``, ``eps=None`` (``1e-3``;
      the original's default is ``1e-5``), ``denoise=True`` (the noise-free mean of the last step; the original's
      returned ``x_mean`` keeps the last noisy state in the unobserved pixels, which is ``denoise=False`` here).
      Fastest; biased toward the unconditional component weights.
    * ``"repaint"``: RePaint's resampling; options ``steps`` (default ``sde.N``), ``jump_length=10``,
      ``resamplings=10`` (RePaint's ``r`` and ``n``; NFE about ``steps * resamplings``), ``grid=None`` (a name of
      :data:`scoresde.numerics.grids.GRIDS`; by default ``logSNR`` for VE/VP/sub-VP, ``quadratic`` for CLD/PSLD),
      ``eps=None``,
      ``denoise=True``. Not exact (barely better than replacement on the benchmark mixture).
    * ``"smc"``: the asymptotically exact particle filter; options ``steps`` (default ``sde.N``),
      ``num_particles=16`` (per returned sample; ``steps + 1`` model calls on ``B * num_particles`` rows),
      ``ess_threshold=0.5``, ``grid=None``, ``eps=None``, ``denoise=True``. Use it when the conditional must be right
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
    full = mask.expand(x_obs.shape)
    operator = Mask(full[0]) if bool((full == full[:1]).all()) else Mask(full, per_row=True)  # one mask, or per row
    return _run(method, model, operator, x_obs, 0.0, generator=generator, device=device, dtype=dtype, cond=cond,
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
    channel mean up to rounding (the rotation is applied in floating point). A thin call of :func:`solve_inverse` with
    the operator :class:`~scoresde.inverse.operators.Grey` and ``sigma_y = 0``.
    """
    model, (gray,) = model_and_arguments(sde, score_fn, gray)
    gray = check_tensor("gray", gray, nonempty=True, finite=True)
    if gray.dim() < 2 or gray.shape[1] < 2:
        raise ValueError(f"gray must have shape (B, C, ...) with C >= 2 channels (repeat the grey channel), got "
                         f"{tuple(gray.shape)}")
    if torch.equal(gray, gray[:, :1].expand(gray.shape)):  # only the channel mean is observed
        grey = gray[:, :1]
    else:
        grey = gray.mean(1, keepdim=True)
    return _run(method, model, Grey(gray.shape[1]), grey, 0.0, generator=generator, device=device, dtype=dtype,
                cond=cond, return_info=return_info, progress=progress, options=options)
