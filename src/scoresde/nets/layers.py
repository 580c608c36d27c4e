"""Building blocks shared by the DDPM and NCSN++/DDPM++ U-Nets of Score SDE.

References: Ho et al., "Denoising Diffusion Probabilistic Models" (NeurIPS 2020, appendix B: U-Net with
GroupNorm, sinusoidal time embedding and self-attention); Song et al., "Score-Based Generative Modeling
through Stochastic Differential Equations" (ICLR 2021, appendix H: BigGAN-type residual blocks, FIR
resampling, rescaled skip connections, Gaussian Fourier features, progressive input/output pyramids).

Submodule attribute names (``GroupNorm_0``, ``Conv_0``, ``Dense_0``, ``NIN_0``, ``Conv2d_0``, ...) and
parameter shapes follow the original Score SDE PyTorch code so that its checkpoints load after the top-level
key mapping done by :func:`load_original_state_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from scoresde.nets import upfirdn
from scoresde.numerics.checks import check_class_labels

__all__ = [
    "ACTIVATIONS",
    "CONDITIONAL_NETWORKS",
    "NIN",
    "NULL_LABEL",
    "NULL_LABEL_MODES",
    "AttnBlock",
    "ClassEmbedding",
    "Combine",
    "Downsample",
    "FIRConv2d",
    "GaussianFourierProjection",
    "OriginalCheckpointMixin",
    "ResnetBlockBigGAN",
    "ResnetBlockDDPM",
    "Upsample",
    "build_class_embedding",
    "call_block",
    "class_options",
    "compile_blocks",
    "conv1x1",
    "conv3x3",
    "default_init",
    "get_act",
    "get_timestep_embedding",
    "reject_class_labels",
    "sigma_table",
    "variance_scaling",
]

_SQRT2 = math.sqrt(2.0)

# ----------------------------------------------------------------------------------------------------------
# Initialisers
# ----------------------------------------------------------------------------------------------------------

Initializer = Callable[..., torch.Tensor]


def variance_scaling(
    scale: float, mode: str, distribution: str, in_axis: int = 1, out_axis: int = 0
) -> Initializer:
    """JAX/TF ``variance_scaling`` initialiser: variance ``scale / fan``, normal or uniform (Glorot-type).

    Returns ``init(shape, dtype=torch.float32, device='cpu')``. ``mode`` is ``'fan_in'``, ``'fan_out'`` or
    ``'fan_avg'``; ``distribution`` is ``'normal'`` or ``'uniform'``. Draws from torch's global generator.
    """
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"invalid variance scaling mode {mode!r}; allowed: 'fan_in', 'fan_out', 'fan_avg'")
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"invalid variance scaling distribution {distribution!r}; allowed: normal, uniform")

    def init(shape: Sequence[int], dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        shape = tuple(shape)
        receptive = float(np.prod(shape)) / shape[in_axis] / shape[out_axis]
        fan_in, fan_out = shape[in_axis] * receptive, shape[out_axis] * receptive
        denominator = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / denominator
        if distribution == "normal":
            return torch.randn(*shape, dtype=dtype, device=device) * np.sqrt(variance)
        return (torch.rand(*shape, dtype=dtype, device=device) * 2.0 - 1.0) * np.sqrt(3 * variance)

    return init


def default_init(scale: float = 1.0) -> Initializer:
    """DDPM's initialiser: uniform ``variance_scaling(scale, 'fan_avg')``; ``scale=0`` means 1e-10."""
    return variance_scaling(1e-10 if scale == 0 else scale, "fan_avg", "uniform")


def _ddpm_conv(kernel_size: int, in_ch: int, out_ch: int, stride: int, bias: bool, dilation: int,
               init_scale: float, padding: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=bias)
    conv.weight.data = default_init(init_scale)(conv.weight.shape)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def conv1x1(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, init_scale: float = 1.0,
            padding: int = 0) -> nn.Conv2d:
    """1x1 convolution with DDPM initialisation (``default_init(init_scale)``, zero bias)."""
    return _ddpm_conv(1, in_ch, out_ch, stride, bias, 1, init_scale, padding)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, dilation: int = 1,
            init_scale: float = 1.0, padding: int = 1) -> nn.Conv2d:
    """3x3 convolution with DDPM initialisation (``default_init(init_scale)``, zero bias)."""
    return _ddpm_conv(3, in_ch, out_ch, stride, bias, dilation, init_scale, padding)


def _dense(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    layer.weight.data = default_init()(layer.weight.shape)
    nn.init.zeros_(layer.bias)
    return layer


def _group_norm(channels: int, num_groups: int | None) -> nn.GroupNorm:
    # NCSN++/DDPM++ use min(C // 4, 32) groups; the original DDPM hard-codes 32.
    groups = min(channels // 4, 32) if num_groups is None else num_groups
    if groups < 1 or channels % groups:
        raise ValueError(f"GroupNorm with {groups} groups cannot normalise {channels} channels")
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "lrelu": lambda: nn.LeakyReLU(negative_slope=0.2),
    "swish": nn.SiLU,
}


def get_act(name: str) -> nn.Module:
    """Activation module by config name: ``'elu'``, ``'relu'``, ``'lrelu'`` (slope 0.2), ``'swish'``."""
    key = name.lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown nonlinearity {name!r}; allowed: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[key]()


def sigma_table(sigma_min: float, sigma_max: float, num_scales: int) -> torch.Tensor:
    """NCSN's noise levels ``exp(linspace(log σ_max, log σ_min, N))``: descending, float64."""
    return torch.from_numpy(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_scales)))


def res_name(res: int) -> str:
    """Prefix of the submodule names at one resolution, e.g. ``'16x16'`` (as in EDM's U-Nets)."""
    return f"{res}x{res}"


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` lower-cased if it is one of ``allowed``, else ``ValueError`` listing the allowed values."""
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed values: {list(allowed)}")
    return value.lower()


def check_config_value(cfg: Mapping[str, Any], key: str, allowed: Sequence[Any], why: str) -> None:
    """Reject a config entry that the network cannot honour (instead of silently ignoring it)."""
    if key in cfg and cfg[key] not in allowed:
        raise ValueError(f"unsupported model.{key} {cfg[key]!r}; allowed values: {list(allowed)} ({why})")


def check_config_keys(section: str, cfg: Mapping[str, Any], known: set[str]) -> None:
    """Reject unknown keys in a config section, naming them."""
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown {section} config keys {unknown}; known keys: {sorted(known)}")


def call_block(module: nn.Module, *args: torch.Tensor | None, checkpointing: bool = False) -> torch.Tensor:
    """``module(*args)``, under activation checkpointing when ``checkpointing`` and autograd is recording.

    Activation checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost") keeps only the
    block's inputs and recomputes its activations during the backward pass: about one extra forward per step for
    a peak memory that no longer grows with the activations inside each block. ``torch.utils.checkpoint`` with
    ``use_reentrant=False`` restores the RNG state for the recomputation, so dropout draws the same mask and the
    gradients equal those without checkpointing (to float rounding). Under ``torch.no_grad()`` (sampling,
    evaluation) the block runs plainly: there is nothing to save. Use it for the U-Net's residual / attention
    blocks (the ``model.checkpointing`` option of :class:`~scoresde.nets.ncsnpp.NCSNpp` and
    :class:`~scoresde.nets.ddpm.DDPM`), not for cheap element-wise layers, whose recomputation costs more than
    their activations.
    """
    if checkpointing and torch.is_grad_enabled():
        return _checkpoint(module, *args, use_reentrant=False)
    return module(*args)


def check_flag(name: str, value: Any) -> bool:
    """``value`` if it is a bool, else ``ValueError`` (a string such as ``'False'`` is not silently truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------------------


def get_timestep_embedding(
    timesteps: torch.Tensor,
    embedding_dim: int,
    max_positions: int = 10000,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sinusoidal embedding ``[sin(t ω_i), cos(t ω_i)]``, ``ω_i = max_positions^(-i/(d/2-1))`` (DDPM).

    Computed in ``dtype`` (the reference uses float32); an odd ``embedding_dim`` is zero-padded.
    """
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must be 1-D, got shape {tuple(timesteps.shape)}")
    half = embedding_dim // 2
    if half < 2:
        raise ValueError(f"embedding_dim must be >= 4, got {embedding_dim}")
    rate = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=dtype, device=timesteps.device) * -rate)
    args = timesteps.to(dtype)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if embedding_dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


#: the class label of a row without a class (classifier-free guidance's unconditional rows, label dropout)
NULL_LABEL = -1
#: how a conditional network embeds :data:`NULL_LABEL`: a learned extra row, or a zero vector
NULL_LABEL_MODES = ("learned", "zero")
#: the networks that take ``num_classes`` (the others are class-unconditional)
CONDITIONAL_NETWORKS = ("NCSNpp", "DDPM", "ToyMLP")


def reject_class_labels(net: nn.Module, class_labels: torch.Tensor | None) -> None:
    """The one error of a class-unconditional network called with ``class_labels`` (they would be ignored)."""
    if class_labels is not None:
        name = type(net).__name__
        why = ("model.num_classes is not set" if name in CONDITIONAL_NETWORKS else
               f"it has no class conditioning; the class-conditional networks are {', '.join(CONDITIONAL_NETWORKS)} "
               "with model.num_classes > 0")
        raise ValueError(f"{name} was built class-unconditional ({why}); got class_labels")


class ClassEmbedding(nn.Module):
    """The class-label embedding that a conditional network adds to its noise embedding (EDM's ``label_dim``
    design, Karras et al. 2022, ``training/networks.py``: ``emb = map_noise(sigma) + map_label(one_hot(y))``,
    *before* the embedding MLP / activation).

    ``forward(class_labels, batch_size)`` returns ``(B, dim)``: row ``y`` of a table ``(num_classes [+ 1], dim)``
    (a bias-free linear map of the one-hot label) for each label. Conventions shared by every conditional network
    and by :mod:`scoresde.guidance`:

    * ``class_labels`` is a signed integer tensor ``(B,)`` (int64; int8/16/32 are converted) with entries in
      ``[0, num_classes)`` or :data:`NULL_LABEL` (``-1``) for "no class";
    * ``class_labels=None`` means every row is null: the unconditional call of classifier-free guidance
      (Ho & Salimans 2022) and of label-dropout training;
    * ``null_label='learned'``: the null label has its own trained row (index ``num_classes``), as EDM's dropout of
      the one-hot vector leaves its trained bias; ``'zero'``: it contributes exactly zero, so an all-null call gives
      bit for bit the label-free noise embedding.

    Use it (rather than a per-network table) in every conditional network, so that the conventions are one code.

    Args:
        num_classes: number of classes (>= 1).
        dim: width of the noise embedding the result is added to.
        null_label: ``'learned'`` or ``'zero'`` (:data:`NULL_LABEL_MODES`).
        init_std: standard deviation of the initial table entries (default 1: the scale of sinusoidal features).
    """

    def __init__(self, num_classes: int, dim: int, null_label: str = "learned", init_std: float = 1.0) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if dim < 1:
            raise ValueError(f"the embedding width must be positive, got {dim}")
        self.null_label = check_choice("null_label", null_label, NULL_LABEL_MODES)
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.num_classes, self.dim = num_classes, dim
        rows = num_classes + (1 if self.null_label == "learned" else 0)
        self.weight = nn.Parameter(init_std * torch.randn(rows, dim))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}, null_label={self.null_label!r}"

    def check_labels(self, class_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
        """``class_labels`` as int64 on the table's device, or None (all null); ``ValueError`` for a non-tensor, a
        floating/bool dtype, a shape other than ``(batch_size,)`` or an entry outside ``[-1, num_classes)``."""
        if class_labels is None:
            return None
        labels = check_class_labels(class_labels, batch_size, self.num_classes, allow_null=True)
        return labels.to(device=self.weight.device)

    def forward(self, class_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """``(batch_size, dim)`` embeddings of ``class_labels`` (``None``: every row null); see the class doc."""
        labels = self.check_labels(class_labels, batch_size)
        if labels is None:
            labels = torch.full((batch_size,), NULL_LABEL, dtype=torch.int64, device=self.weight.device)
        null = labels == NULL_LABEL
        if self.null_label == "learned":
            return self.weight[torch.where(null, self.num_classes, labels)]
        emb = self.weight[labels.clamp(min=0)]
        return torch.where(null[:, None], torch.zeros((), dtype=emb.dtype, device=emb.device), emb)

    def add_to(self, emb: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """``emb + forward(class_labels)`` in ``emb``'s dtype: what a network does to its noise embedding ``emb``
        ``(B, dim)``."""
        return emb + self(class_labels, emb.shape[0]).to(emb.dtype)


def build_class_embedding(net: nn.Module, num_classes: int, dim: int, null_label: str,
                          time_conditional: bool = True) -> ClassEmbedding | None:
    """The :class:`ClassEmbedding` of a network built with ``num_classes`` (``None`` when 0: no new parameter, so
    unconditional checkpoints keep their exact key set). Build it after every other module, so that the other
    weights draw the same random numbers as the unconditional network's. ``ValueError`` for a negative or
    non-integer count, or classes on a network without a time embedding (``time_conditional=False``)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"{type(net).__name__}: num_classes must be an integer >= 0 (0 = class-unconditional), got "
                         f"{num_classes!r}")
    if num_classes and not time_conditional:
        raise ValueError(f"{type(net).__name__}: num_classes={num_classes} needs conditional=True (the class "
                         "embedding is added to the time embedding)")
    if num_classes == 0:
        check_choice("null_label", null_label, NULL_LABEL_MODES)
        return None
    return ClassEmbedding(num_classes, dim, null_label)


def class_options(model: Mapping[str, Any]) -> dict[str, Any]:
    """``num_classes`` (as an int: JSON may give ``10.0``) and ``null_label`` of a config's ``model`` section, where
    set: the constructor arguments of a conditional network (:class:`ClassEmbedding`)."""
    out: dict[str, Any] = {}
    if "num_classes" in model:
        n = model["num_classes"]
        out["num_classes"] = int(n) if isinstance(n, float) and n.is_integer() else n
    if "null_label" in model:
        out["null_label"] = model["null_label"]
    return out


class GaussianFourierProjection(nn.Module):
    """Random Fourier features ``[sin(2π x W), cos(2π x W)]``, fixed ``W ~ N(0, scale²)`` (Song et al. 2021,
    appendix H; Tancik et al. 2020). ``W`` is a parameter with ``requires_grad=False``, as in the original."""

    def __init__(self, embedding_size: int = 256, scale: float = 1.0) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_proj = x[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(x_proj), torch.cos(x_proj)], dim=-1)


# ----------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------


class NIN(nn.Module):
    """Network-in-network: a per-pixel dense layer ``y = x^T W + b`` over channels (DDPM's ``nin``).

    ``W`` has shape (in_dim, num_units) as in the original; applied as a 1x1 convolution.
    """

    def __init__(self, in_dim: int, num_units: int, init_scale: float = 0.1) -> None:
        super().__init__()
        self.W = nn.Parameter(default_init(scale=init_scale)((in_dim, num_units)))
        self.b = nn.Parameter(torch.zeros(num_units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.W.t()[:, :, None, None], self.b)


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual connection (DDPM's ``attn_block``).

    ``num_groups=None`` uses ``min(C//4, 32)`` GroupNorm groups (NCSN++ ``AttnBlockpp``); DDPM uses 32.
    ``skip_rescale`` divides the residual sum by √2; ``init_scale`` scales the init of the output ``NIN_3``.
    """

    def __init__(self, channels: int, num_groups: int | None = None, skip_rescale: bool = False,
                 init_scale: float = 0.0) -> None:
        super().__init__()
        self.GroupNorm_0 = _group_norm(channels, num_groups)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        h = self.GroupNorm_0(x)
        # q, k and v in one 1x1 convolution.
        w_qkv = torch.cat([self.NIN_0.W, self.NIN_1.W, self.NIN_2.W], dim=1).t()[:, :, None, None]
        b_qkv = torch.cat([self.NIN_0.b, self.NIN_1.b, self.NIN_2.b])
        qkv = F.conv2d(h, w_qkv, b_qkv).reshape(b, 3, c, height * width).transpose(2, 3)
        q, k, v = qkv.unbind(dim=1)  # each (B, HW, C)
        h = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=int(c) ** (-0.5))
        h = h[:, 0].transpose(1, 2).reshape(b, c, height, width)
        h = self.NIN_3(h)
        if self.skip_rescale:
            return (x + h) / _SQRT2
        return x + h


class FIRConv2d(nn.Module):
    """Convolution fused with FIR up- or down-sampling (StyleGAN2 ``Conv2d`` with ``up``/``down``).

    Parameters ``weight`` (out, in, k, k) and ``bias`` (out,), initialised with ``default_init()``/zeros.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, up: bool = False, down: bool = False,
                 resample_kernel: Sequence[float] = (1, 3, 3, 1), use_bias: bool = True,
                 kernel_init: Initializer | None = None) -> None:
        super().__init__()
        if up and down:
            raise ValueError("FIRConv2d cannot both upsample and downsample")
        if kernel < 1 or kernel % 2 != 1:
            raise ValueError(f"kernel must be a positive odd int, got {kernel}")
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, kernel, kernel))
        if kernel_init is not None:
            self.weight.data = kernel_init(self.weight.shape)
        self.bias = nn.Parameter(torch.zeros(out_ch)) if use_bias else None
        self.up, self.down, self.kernel = up, down, kernel
        self.register_buffer("fir", upfirdn.setup_kernel(resample_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = upfirdn.upsample_conv_2d_prepared(x, self.weight, self.fir)
        elif self.down:
            x = upfirdn.conv_downsample_2d_prepared(x, self.weight, self.fir)
        else:
            x = F.conv2d(x, self.weight, stride=1, padding=self.kernel // 2)
        if self.bias is not None:
            x = x + self.bias.reshape(1, -1, 1, 1)
        return x


class Upsample(nn.Module):
    """2x upsampling: nearest (+ optional 3x3 conv) or FIR (+ optional fused conv) (DDPM / NCSN++)."""

    def __init__(self, in_ch: int, out_ch: int | None = None, with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        if out_ch != in_ch and not with_conv:
            raise ValueError(f"Upsample without conv cannot change channels ({in_ch} -> {out_ch})")
        if with_conv and not fir:
            self.Conv_0 = conv3x3(in_ch, out_ch)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, kernel=3, up=True, resample_kernel=fir_kernel,
                                      kernel_init=default_init())
        self.fir, self.with_conv, self.out_ch = fir, with_conv, out_ch
        if fir and not with_conv:
            self.register_buffer("fir_k", upfirdn.setup_kernel(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fir:
            h = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.Conv_0(h) if self.with_conv else h
        if self.with_conv:
            return self.Conv2d_0(x)
        return upfirdn.upsample_2d_prepared(x, self.fir_k, factor=2)


class Downsample(nn.Module):
    """2x downsampling: strided 3x3 conv or 2x2 average pool, or FIR (+ optional fused conv) (NCSN++)."""

    def __init__(self, in_ch: int, out_ch: int | None = None, with_conv: bool = False, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        if out_ch != in_ch and not with_conv:
            raise ValueError(f"Downsample without conv cannot change channels ({in_ch} -> {out_ch})")
        if with_conv and not fir:
            self.Conv_0 = conv3x3(in_ch, out_ch, stride=2, padding=0)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, kernel=3, down=True, resample_kernel=fir_kernel,
                                      kernel_init=default_init())
        self.fir, self.with_conv, self.out_ch = fir, with_conv, out_ch
        if fir and not with_conv:
            self.register_buffer("fir_k", upfirdn.setup_kernel(fir_kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fir:
            if self.with_conv:
                # TF "SAME" padding for a stride-2 3x3 conv on even sizes: one extra row/column at the end.
                return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        if self.with_conv:
            return self.Conv2d_0(x)
        return upfirdn.downsample_2d_prepared(x, self.fir_k, factor=2)


class ResnetBlockDDPM(nn.Module):
    """DDPM residual block: GN-act-conv, + dense(act(temb)), GN-act-dropout-conv, plus (projected) skip.

    Covers both the original DDPM block (``num_groups=32``, ``init_scale=0``, ``skip_rescale=False``) and
    NCSN++'s ``ResnetBlockDDPMpp`` (``num_groups=None`` → ``min(C//4, 32)``). The skip is a 3x3 conv
    (``conv_shortcut=True``) or a NIN when the channel count changes.
    """

    def __init__(self, act: nn.Module, in_ch: int, out_ch: int | None = None, temb_dim: int | None = None,
                 conv_shortcut: bool = False, dropout: float = 0.1, skip_rescale: bool = False,
                 init_scale: float = 0.0, num_groups: int | None = None) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = _group_norm(in_ch, num_groups)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = _dense(temb_dim, out_ch)
        self.GroupNorm_1 = _group_norm(out_ch, num_groups)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch:
            if conv_shortcut:
                self.Conv_2 = conv3x3(in_ch, out_ch)
            else:
                self.NIN_0 = NIN(in_ch, out_ch)
        self.act, self.in_ch, self.out_ch = act, in_ch, out_ch
        self.conv_shortcut, self.skip_rescale = conv_shortcut, skip_rescale

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.Conv_0(self.act(self.GroupNorm_0(x)))
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.act(self.GroupNorm_1(h))
        h = self.Conv_1(self.Dropout_0(h))
        if self.in_ch != self.out_ch:
            x = self.Conv_2(x) if self.conv_shortcut else self.NIN_0(x)
        if self.skip_rescale:
            return (x + h) / _SQRT2
        return x + h


class ResnetBlockBigGAN(nn.Module):
    """BigGAN-type residual block with optional 2x up/down-sampling inside (NCSN++ ``ResnetBlockBigGANpp``).

    Resampling is FIR (``fir=True``) or naive (nearest / average pooling), applied to both branches after the
    first GroupNorm-act; the skip branch gets a 1x1 conv when channels change or the block resamples.
    """

    def __init__(self, act: nn.Module, in_ch: int, out_ch: int | None = None, temb_dim: int | None = None,
                 up: bool = False, down: bool = False, dropout: float = 0.1, fir: bool = False,
                 fir_kernel: Sequence[float] = (1, 3, 3, 1), skip_rescale: bool = True,
                 init_scale: float = 0.0) -> None:
        super().__init__()
        if up and down:
            raise ValueError("ResnetBlockBigGAN cannot both upsample and downsample")
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = _group_norm(in_ch, None)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = _dense(temb_dim, out_ch)
        self.GroupNorm_1 = _group_norm(out_ch, None)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        if in_ch != out_ch or up or down:
            self.Conv_2 = conv1x1(in_ch, out_ch)
        self.act, self.in_ch, self.out_ch = act, in_ch, out_ch
        self.up, self.down, self.fir, self.skip_rescale = up, down, fir, skip_rescale
        if fir and (up or down):
            self.register_buffer("fir_k", upfirdn.setup_kernel(fir_kernel), persistent=False)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            if self.fir:
                return upfirdn.upsample_2d_prepared(x, self.fir_k, factor=2)
            return upfirdn.naive_upsample_2d(x, factor=2)
        if self.down:
            if self.fir:
                return upfirdn.downsample_2d_prepared(x, self.fir_k, factor=2)
            return upfirdn.naive_downsample_2d(x, factor=2)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.act(self.GroupNorm_0(x))
        h, x = self._resample(h), self._resample(x)
        h = self.Conv_0(h)
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.act(self.GroupNorm_1(h))
        h = self.Conv_1(self.Dropout_0(h))
        if self.in_ch != self.out_ch or self.up or self.down:
            x = self.Conv_2(x)
        if self.skip_rescale:
            return (x + h) / _SQRT2
        return x + h


def compile_blocks(net: nn.Module, **options: Any) -> int:
    """Regional compilation: ``torch.compile`` each residual and attention block of ``net`` in place
    (``nn.Module.compile``, state-dict keys unchanged); returns the number of blocks compiled.

    Blocks of one class share their traced code (dynamo inlines built-in modules), so a U-Net with dozens of blocks
    compiles a handful of graphs: a much shorter start than compiling the whole network (``training.compile``),
    for most of its speed. Use it for sampling and for long runs where the whole-model compile start is the cost;
    ``options`` go to ``torch.compile`` (e.g. ``mode='max-autotune'``). Outputs equal the eager ones to float
    rounding.
    """
    blocks = [m for m in net.modules() if isinstance(m, (ResnetBlockBigGAN, ResnetBlockDDPM, AttnBlock))]
    for block in blocks:
        block.compile(**options)
    return len(blocks)


COMBINE_METHODS = ("cat", "sum")


class Combine(nn.Module):
    """Merge an input-pyramid image into the feature map: 1x1 conv, then concatenate or add (NCSN++)."""

    def __init__(self, dim1: int, dim2: int, method: str = "cat") -> None:
        super().__init__()
        if method not in COMBINE_METHODS:
            raise ValueError(f"unknown combine method {method!r}; allowed: {list(COMBINE_METHODS)}")
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


# ----------------------------------------------------------------------------------------------------------
# The original code's checkpoint layout (the loading itself is scoresde.checkpoint.state_dict's)
# ----------------------------------------------------------------------------------------------------------


class OriginalCheckpointMixin:
    """Maps the original ``all_modules.<i>.<...>`` state-dict keys to this network's named submodules.

    Subclasses record, while building, the qualified names of the submodules in the order the original
    appended them to its ``all_modules`` list (``self._original_order``), and name the top-level tensors kept
    under the same key (``_original_top_level``, e.g. the ``sigmas`` buffer).
    """

    _original_order: list[str]
    _original_top_level: tuple[str, ...] = ()

    def original_key_map(self) -> dict[str, str]:
        """``{original key (no 'module.' prefix): key in self.state_dict()}`` for every persistent tensor."""
        own = self.state_dict()  # type: ignore[attr-defined]
        mapping = {name: name for name in self._original_top_level if name in own}
        for index, qualname in enumerate(self._original_order):
            sub = self.get_submodule(qualname)  # type: ignore[attr-defined]
            for key in sub.state_dict():
                mapping[f"all_modules.{index}.{key}"] = f"{qualname}.{key}"
        unmapped = sorted(set(own) - set(mapping.values()))
        if unmapped:  # a construction bug, not a user error
            raise RuntimeError(f"tensors without an original key: {unmapped}")
        return mapping
