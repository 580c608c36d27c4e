"""A network plus an SDE as ``score_fn(x, t)``: the time/noise input and output conventions of Score SDE.

The network knows nothing about the SDE; this wrapper supplies what it is fed (``labels``) and how its output
becomes a score, for the perturbation kernel ``x_t = alpha_t x_0 + sigma_t eps`` (Song et al. 2021, eq. 29):

* output type ``'score'``: ``score = out``;
* ``'eps'`` (noise prediction, DDPM): ``score = -out / sigma_t``, i.e. ``eps = -sigma_t score``;
* ``'x0'`` (data prediction): ``score = (alpha_t out - x) / sigma_t**2``, i.e. Tweedie's formula
  ``x0 = (x + sigma_t**2 score) / alpha_t``;
* ``'v'`` (velocity, Salimans & Ho 2022): ``v = alpha_t eps - sigma_t x0``, so ``eps = (sigma_t x + alpha_t v) / r``
  and ``x0 = (alpha_t x - sigma_t v) / r`` with ``r = alpha_t**2 + sigma_t**2`` (``1`` for VP).

:class:`ScoreModel` is a model adapter (:class:`~scoresde.models.DiffusionModel`): :meth:`ScoreModel.score`,
:meth:`~ScoreModel.eps`, :meth:`~ScoreModel.x0` and :meth:`~ScoreModel.v` return the network output itself for the
prediction it makes and convert it otherwise, so every sampler works with every model. Conditioning inputs
(``class_labels=...``) are passed to the network as keyword arguments.

The label conventions of the original ``models/utils.get_score_fn`` (reference README §4) are
``label_type``:

* ``'sigma'``: ``sigma(t)`` (VE, continuous; NCSN++ embeds its log with Fourier features);
* ``'time'``: ``999 t`` (VP / sub-VP, continuous; the original hard-codes 999 whatever ``N``);
* ``'timestep'``: ``t (N - 1)`` as a float, not rounded (VP, discrete DDPM);
* ``'sigma_index'``: ``round((T - t)(N - 1))`` as int64, an index into the network's descending sigma table
  (VE, discrete SMLD: NCSN, NCSNv2, discrete NCSN++/DDPM).

With ``continuous=False`` the ``sigma_t``/``alpha_t`` of the conversions come from the discrete tables at the
index the network sees (``sqrt_1m_alphas_cumprod[int(t (N - 1))]`` for DDPM, the flipped ``discrete_sigmas`` for
SMLD), as in the original; with ``continuous=True``, or an SDE whose schedule is its table
(:class:`~scoresde.sdes.DiscreteVPSDE`: the table at the timesteps, interpolated between), from ``sde.sigma(t)`` and
``sde.alpha(t)``.

With ``preconditioning`` (Karras et al. 2022, Table 1: :mod:`scoresde.models.preconditioning`) the network ``F`` is
wrapped as the denoiser ``D(x~; s) = c_skip(s) x~ + c_out(s) F(c_in(s) x~; c_noise(s))`` with ``s = sigma_t / alpha_t``
and ``x~ = x / alpha_t``: the model predicts ``x0 = D`` (its ``prediction``), ``labels(t)`` are ``c_noise``, and
``label_type`` / ``output_type`` are ``None`` (the row fixes both). This works on any scalar SDE in continuous time.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..numerics.checks import check_choice
from ..sdes.base import batch_broadcast
from ..sdes.scalar import ScalarSDE
from .adapter import DiffusionModel
from .preconditioning import Preconditioning, make_preconditioning

__all__ = ["LABEL_TYPES", "OUTPUT_TYPES", "PRECISIONS", "LabelType", "OutputType", "ScoreModel", "autocast_dtype",
           "native_low_precision", "noise_labels"]

OutputType = Literal["score", "eps", "x0", "v"]
LabelType = Literal["sigma", "time", "timestep", "sigma_index"]
OUTPUT_TYPES: tuple[str, ...] = ("score", "eps", "x0", "v")
LABEL_TYPES: tuple[str, ...] = ("sigma", "time", "timestep", "sigma_index")


def noise_labels(sde: ScalarSDE, label_type: str, t: Tensor) -> Tensor:
    """What a network of ``label_type`` is fed at forward times ``t`` (shape ``(B,)``), per the module docstring:
    ``sigma(t)``, ``999 t``, ``t (N - 1)`` or the int64 index ``round((T - t)(N - 1))``. The one mapping shared by
    :class:`ScoreModel` and the noise-conditional classifiers (:class:`scoresde.models.ClassifierModel`)."""
    if label_type == "sigma":
        return sde.sigma(t)
    if label_type == "time":
        return t * 999
    if label_type == "timestep":
        return t * (sde.N - 1)
    if label_type == "sigma_index":
        return torch.round((sde.T - t) * (sde.N - 1)).long()
    check_choice("label_type", label_type, LABEL_TYPES)
    raise AssertionError(f"label_type {label_type!r} is listed but has no labels")


#: network precisions of :class:`ScoreModel`: float32, bf16 / fp16 autocast, or bf16 where the device has it natively
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "auto")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_low_precision(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``device`` computes ``dtype`` (bf16 / fp16) natively: on CUDA ``is_bf16_supported`` (fp16 always), on
    CPU oneDNN's bf16 / fp16 instructions (AVX512-BF16, AMX, AVX512-FP16); elsewhere False."""
    if device.type == "cuda":
        return dtype == torch.float16 or torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        check = {torch.bfloat16: torch.ops.mkldnn._is_mkldnn_bf16_supported,
                 torch.float16: torch.ops.mkldnn._is_mkldnn_fp16_supported}[dtype]
        return bool(check())
    return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: plain float32).

    ``'fp32'``: None. ``'bf16'`` / ``'fp16'``: that dtype, or ``ValueError`` when the device has no native support (an
    emulated bf16 convolution on a CPU without AVX512-BF16 is many times slower than float32). ``'auto'``: bf16 where
    native, else float32. Use ``'bf16'`` for sampling on GPUs (same exponent range as float32: no overflow in the
    ``1/sigma`` scalings); ``'fp16'`` only where bf16 is missing.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if native_low_precision(torch.bfloat16, device) else None
    dtype = _AUTOCAST_DTYPES[precision]
    if not native_low_precision(dtype, device):
        raise ValueError(f"precision {precision!r} is not supported natively on {device} (allowed there: 'fp32', or "
                         f"'auto' to use bf16 only where the device has it)")
    return dtype


class ScoreModel(nn.Module, DiffusionModel):
    """A score model ``s_theta(x, t)`` built from a network ``net(x, noise_labels, **cond)`` and a scalar SDE: the
    model adapter of Score SDE's networks (continuous and discrete time).

    Args:
        net: the plain network (``forward(x, labels)``), kept as ``self.net``.
        sde: the forward SDE (``VESDE``, ``VPSDE``, ``SubVPSDE`` or any :class:`ScalarSDE`).
        continuous: whether the model was trained in continuous time (``training.continuous``); selects the
            default labels and whether ``sigma_t``/``alpha_t`` come from the SDE or its discrete tables.
        label_type: what the network is fed, see the module docstring; default: the original convention
            (:meth:`sde.original_conventions(continuous) <scoresde.sdes.SDE.original_conventions>`).
        output_type: what the network predicts (``'score'``, ``'eps'``, ``'x0'``, ``'v'``); default: the original one.
        precision: the network's arithmetic (:data:`PRECISIONS`, :func:`autocast_dtype`): ``'fp32'`` (default), or
            ``'bf16'``/``'fp16'``/``'auto'`` autocast around the network call only; the conversions to score / eps /
            x0 / v and everything the samplers do stay in the dtype of ``x``.
        preconditioning: ``None`` (default: the network's output is converted per ``output_type``), or a row of
            Karras et al. Table 1 (``"edm"``, ``"vp"``, ``"ve"`` or a
            :class:`~scoresde.models.preconditioning.Preconditioning`): the network becomes the denoiser ``D``
            (module docstring). Needs ``continuous=True``; ``label_type`` / ``output_type`` must be left ``None``.
        sigma_data: the data std ``sigma_d`` of ``preconditioning="edm"`` (``None``: 0.5, EDM's value for images in
            ``[-1, 1]``); refused with the other rows.

    ``model(x, t, **cond)`` is ``model.score(x, t, **cond)``. Outputs have the dtype of ``x`` (NCSNv2's float64
    division by its sigma buffer is cast back).
    """

    def __init__(self, net: nn.Module, sde: ScalarSDE, *, continuous: bool = True,
                 label_type: LabelType | None = None, output_type: OutputType | None = None,
                 precision: str = "fp32", preconditioning: str | Preconditioning | None = None,
                 sigma_data: float | None = None) -> None:
        super().__init__()
        self.precision = check_choice("precision", precision, PRECISIONS)
        self.net = net
        self.sde = sde
        self.continuous = bool(continuous)
        self.precond = self._preconditioning(preconditioning, sigma_data, label_type, output_type)
        if self.precond is not None:  # the row fixes what the network sees and predicts
            self.label_type, self.output_type = None, None
            return
        default_labels, default_output = (None, None)
        if label_type is None or output_type is None:
            default_labels, default_output = sde.original_conventions(self.continuous)
        self.label_type: LabelType = check_choice("label_type", label_type or default_labels, LABEL_TYPES)
        self.output_type: OutputType = check_choice("output_type", output_type or default_output, OUTPUT_TYPES)
        if self.label_type == "sigma_index" and not hasattr(sde, "discrete_sigmas"):
            raise ValueError("label_type 'sigma_index' needs an SDE with a discrete sigma table (VESDE)")
        if not self.continuous and self.output_type != "score" and not hasattr(sde, "sqrt_1m_alphas_cumprod") \
                and not hasattr(sde, "discrete_sigmas"):
            raise ValueError(f"discrete {self.output_type!r} models need the SDE's discrete tables")

    def _preconditioning(self, precond: str | Preconditioning | None, sigma_data: float | None,
                         label_type: str | None, output_type: str | None) -> Preconditioning | None:
        """The preconditioning row of the constructor's arguments, or ``None``; one ``ValueError`` for arguments that
        do not go with it."""
        if precond is None:
            if sigma_data is not None:
                raise ValueError(f"sigma_data={sigma_data!r} is an option of preconditioning='edm'; this model has no "
                                 "preconditioning")
            return None
        if not isinstance(precond, Preconditioning):
            precond = make_preconditioning(precond, sigma_data=sigma_data)
        elif sigma_data is not None:
            raise ValueError("sigma_data is given by the Preconditioning object itself; pass sigma_data=None")
        if label_type is not None or output_type is not None:
            raise ValueError(f"preconditioning {precond.name!r} fixes the network's input labels (c_noise) and output "
                             f"(the denoiser D); leave label_type and output_type None, got {label_type!r}, "
                             f"{output_type!r}")
        if not self.continuous:
            raise ValueError("preconditioning needs a continuous-time model (continuous=True)")
        return precond

    def _same(self, net: nn.Module, precision: str) -> ScoreModel:
        return ScoreModel(net, self.sde, continuous=self.continuous, label_type=self.label_type,
                          output_type=self.output_type, precision=precision, preconditioning=self.precond)

    def with_net(self, net: nn.Module) -> ScoreModel:
        """The same conventions around another network (e.g. the DDP- or compile-wrapped training copy)."""
        return self._same(net, self.precision)

    def with_precision(self, precision: str) -> ScoreModel:
        """The same network and conventions computing in ``precision`` (see :func:`autocast_dtype`); the weights are
        shared, not copied. ``ValueError`` for an unknown precision."""
        return self._same(self.net, precision)

    def extra_repr(self) -> str:
        precond = "" if self.precond is None else f", preconditioning={self.precond!r}"
        return (f"sde={type(self.sde).__name__}, continuous={self.continuous}, label_type={self.label_type!r}, "
                f"output_type={self.output_type!r}, precision={self.precision!r}{precond}")

    # ---- what the network sees ----------------------------------------------------------------------------
    def labels(self, t: Tensor) -> Tensor:
        """The network's time/noise input for forward times ``t`` (shape ``(B,)``), per ``label_type``
        (with preconditioning: ``c_noise(sigma_t / alpha_t)``)."""
        if self.precond is not None:
            return self.precond.coefficients(self.noise_level(t)).c_noise
        return noise_labels(self.sde, self.label_type, t)

    def noise_level(self, t: Tensor) -> Tensor:
        """``s = sigma_t / alpha_t``, the noise level of the scaled state ``x / alpha_t`` (Karras et al. eq. 4)."""
        alpha, sigma = self.alpha_sigma(t)
        return sigma / alpha

    @property
    def prediction(self) -> str:
        """What the model predicts: ``output_type``, or ``"x0"`` (the denoiser) with preconditioning."""
        return "x0" if self.precond is not None else self.output_type

    def net_output(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """The raw network output ``net(x, labels(t), **cond)`` (a score, eps, x0 or v prediction per
        ``output_type``), in the dtype of ``x`` whatever ``precision`` the network computes in. With preconditioning
        it is the denoiser ``D = c_skip x~ + c_out net(c_in x~, c_noise, **cond)``, ``x~ = x / alpha_t``
        (Karras et al. eq. 7), i.e. the ``x0`` prediction."""
        if self.precond is not None:
            alpha, sigma = self.alpha_sigma(t)
            c = self.precond.coefficients(sigma / alpha)
            x_scaled = x / batch_broadcast(alpha, x)
            out = self._run_net(batch_broadcast(c.c_in, x) * x_scaled, c.c_noise, cond)
            return batch_broadcast(c.c_skip, x) * x_scaled + batch_broadcast(c.c_out, x) * out
        return self._run_net(x, self.labels(t), cond)

    def _run_net(self, x: Tensor, labels: Tensor, cond: dict[str, Any]) -> Tensor:
        """``net(x, labels, **cond)`` in ``precision``, returned in the dtype of ``x``."""
        dtype = autocast_dtype(self.precision, x.device) if self.precision != "fp32" else None
        if dtype is None:
            return self.net(x, labels, **cond)
        with torch.autocast(x.device.type, dtype=dtype):
            out = self.net(x, labels, **cond)
        return out.to(x.dtype)

    def call_net(self, x: Tensor, labels: Tensor) -> Tensor:
        """``net(x, labels)`` on raw labels (e.g. the discrete SMLD/DDPM losses' integer noise indices)."""
        return self.net(x, labels)

    # ---- the perturbation kernel used by the conversions ----------------------------------------------------
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)`` of ``x_t = alpha_t x_0 + sigma_t eps`` used to convert outputs, shape ``(B,)``.

        Continuous models, and discrete ones on an SDE whose schedule is its table (``sde.table_schedule``:
        :class:`~scoresde.sdes.DiscreteVPSDE`), use ``sde.alpha(t)``, ``sde.sigma(t)``. Other discrete ones use the
        table entry at the index the network sees: DDPM ``sqrt_alphas_cumprod[i]``, ``sqrt_1m_alphas_cumprod[i]`` with
        ``i = int(t (N - 1))``; SMLD ``1`` and the descending sigma table at ``round((T - t)(N - 1))``.
        """
        sde = self.sde
        if self.continuous or getattr(sde, "table_schedule", False):  # DiscreteVPSDE: its schedule is its table
            return sde.alpha(t), sde.sigma(t)
        if self.label_type == "sigma_index":
            sigmas = torch.flip(sde.discrete_sigmas, dims=(0,)).to(t.device)
            sigma = sigmas[self.labels(t)]
            return torch.ones_like(sigma), sigma
        if hasattr(sde, "sqrt_1m_alphas_cumprod"):
            index = (t * (sde.N - 1)).long()
            return (sde.sqrt_alphas_cumprod.to(t.device)[index], sde.sqrt_1m_alphas_cumprod.to(t.device)[index])
        return sde.alpha(t), sde.sigma(t)

    # ---- the four parameterisations -----------------------------------------------------------------------
    def _convert(self, want: str, x: Tensor, t: Tensor, cond: dict[str, Any]) -> Tensor:
        """One network call, converted to the prediction ``want`` (returned as is when the network makes it)."""
        out, made = self.net_output(x, t, **cond), self.prediction
        if made == want:
            return out.to(x.dtype)
        alpha, sigma = (batch_broadcast(c, x) for c in self.alpha_sigma(t))
        if made == "score":
            eps = -sigma * out
        elif made == "eps":
            eps = out
        elif made == "x0":
            eps = (x - alpha * out) / sigma
        else:  # v
            eps = (sigma * x + alpha * out) / (alpha**2 + sigma**2)
        if want == "eps":
            return eps.to(x.dtype)
        if want == "score":
            if made == "x0":  # (alpha x0 - x) / sigma^2, the original's form
                return ((alpha * out - x) / sigma**2).to(x.dtype)
            return (-out / sigma if made == "eps" else -eps / sigma).to(x.dtype)
        if made == "v" and want == "x0":
            return ((alpha * x - sigma * out) / (alpha**2 + sigma**2)).to(x.dtype)
        x0 = (x + sigma**2 * out) / alpha if made == "score" else (x - sigma * eps) / alpha
        if want == "x0":
            return x0.to(x.dtype)
        return (alpha * eps - sigma * x0).to(x.dtype)

    def score(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Score ``grad_x log p_t(x)``: ``out`` (score), ``-out / sigma_t`` (eps), ``(alpha_t out - x) / sigma_t**2``
        (x0) or ``-eps(v) / sigma_t`` (v). For VP models this is the original ``-model(x, 999 t) / std``."""
        return self._convert("score", x, t, cond)

    def eps(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Noise prediction ``eps = -sigma_t score`` (exactly the network output for eps models)."""
        return self._convert("eps", x, t, cond)

    def x0(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Data prediction (Tweedie) ``x0 = (x + sigma_t**2 score) / alpha_t = (x - sigma_t eps) / alpha_t``."""
        return self._convert("x0", x, t, cond)

    def v(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Velocity ``alpha_t eps - sigma_t x0`` (Salimans & Ho 2022; exactly the network output for v models)."""
        return self._convert("v", x, t, cond)

    def forward(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """``score(x, t, **cond)``, so that the model itself is a ``score_fn`` for the samplers."""
        return self.score(x, t, **cond)
