"""Building blocks shared by the DDPM and NCSN++/DDPM++ U-Nets of Score SDE (and the noise-conditional classifier).

References: Ho et al., "Denoising Diffusion Probabilistic Models" (NeurIPS 2020, appendix B: U-Net with
GroupNorm, sinusoidal time embedding and self-attention); Song et al., "Score-Based Generative Modeling
through Stochastic Differential Equations" (ICLR 2021, appendix H: BigGAN-type residual blocks, FIR
resampling, rescaled skip connections, progressive input/output pyramids).

Submodule attribute names (``GroupNorm_0``, ``Conv_0``, ``Dense_0``, ``NIN_0``, ``Conv2d_0``, ...) and
parameter shapes follow the original Score SDE PyTorch code so that its checkpoints load after the top-level
key mapping of :class:`~scoresde.nets.original_keys.OriginalCheckpointMixin`. :func:`call_block` runs a block under
activation checkpointing, :func:`compile_blocks` compiles each block (regional compilation). The embeddings of the
noise level and class are in :mod:`scoresde.nets.embeddings`, the initialisers in :mod:`scoresde.nets.init`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from scoresde.nets import upfirdn
from scoresde.nets.init import Initializer, conv1x1, conv3x3, default_init, dense
from scoresde.numerics.checks import check_choice

__all__ = ["COMBINE_METHODS", "NIN", "AttnBlock", "Combine", "Downsample", "FIRConv2d", "ResnetBlockBigGAN",
           "ResnetBlockDDPM", "Upsample", "call_block", "compile_blocks", "group_norm", "res_name"]

_SQRT2 = math.sqrt(2.0)


def group_norm(channels: int, num_groups: int | None) -> nn.GroupNorm:
    """GroupNorm (eps 1e-6) with ``num_groups`` groups, or ``min(channels // 4, 32)`` for None (NCSN++)."""
    # NCSN++/DDPM++ use min(C // 4, 32) groups; the original DDPM hard-codes 32.
    groups = min(channels // 4, 32) if num_groups is None else num_groups
    if groups < 1 or channels % groups:
        raise ValueError(f"GroupNorm with {groups} groups cannot normalise {channels} channels")
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6)


def res_name(res: int) -> str:
    """Prefix of the submodule names at one resolution, e.g. ``'16x16'`` (as in EDM's U-Nets)."""
    return f"{res}x{res}"


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
        self.GroupNorm_0 = group_norm(channels, num_groups)
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
        self.GroupNorm_0 = group_norm(in_ch, num_groups)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch, num_groups)
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
        self.GroupNorm_0 = group_norm(in_ch, None)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = dense(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch, None)
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
        check_choice("combine method", method, COMBINE_METHODS)
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y
