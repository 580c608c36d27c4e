"""FIR up/down-sampling (``upfirdn2d``) and the fused bias + leaky-ReLU, in plain PyTorch.

These are the resampling operators of StyleGAN2 (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", 2020, appendix B) that NCSN++ uses with the ``[1, 3, 3, 1]`` kernel (Song et al., "Score-Based
Generative Modeling through Stochastic Differential Equations", ICLR 2021, appendix H: FIR resampling).

Everything here is built from ``F.conv2d`` / ``F.conv_transpose2d`` / ``F.pad`` with depthwise (``groups=C``)
kernels, so it runs on any device and dtype, needs no compilation, supports autograd of any order, and
computes the same sums as the CPU "native" path of the reference ``upfirdn2d`` (only the floating-point
summation order differs).

Kernel convention (as in the reference): a 1-D kernel ``k`` becomes the separable 2-D kernel
``outer(k, k)``, normalised to sum 1 and multiplied by ``gain`` (times ``factor**2`` for upsampling). This
arithmetic is done in float32, as the reference does; the kernel is cast to the input dtype only when used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FusedLeakyReLU",
    "conv_downsample_2d",
    "downsample_2d",
    "fused_leaky_relu",
    "naive_downsample_2d",
    "naive_upsample_2d",
    "setup_kernel",
    "upfirdn2d",
    "upsample_2d",
    "upsample_conv_2d",
]

KernelLike = Sequence[float] | np.ndarray | torch.Tensor


def setup_kernel(k: KernelLike) -> torch.Tensor:
    """Normalised 2-D FIR kernel (StyleGAN2 ``_setup_kernel``) as a float32 CPU tensor.

    A 1-D ``k`` gives the separable kernel ``outer(k, k)``; the result is divided by its sum (in float32).
    """
    if isinstance(k, torch.Tensor):
        k = k.detach().cpu().numpy()
    arr = np.asarray(k, dtype=np.float32)
    if arr.ndim == 1:
        arr = np.outer(arr, arr)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"FIR kernel must be 1-D or square 2-D, got shape {arr.shape}")
    total = np.sum(arr)
    if total == 0:
        raise ValueError("FIR kernel sums to zero and cannot be normalised")
    arr = arr / total
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _depthwise(kernel: torch.Tensor, channels: int, x: torch.Tensor) -> torch.Tensor:
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    return kernel[None, None].expand(channels, 1, *kernel.shape).contiguous()


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with a 2-D FIR ``kernel``, keep every ``down``-th sample.

    Semantics of StyleGAN2's ``upfirdn_2d`` (the reference CPU "native" path), per channel of ``x`` (N,C,H,W):

    1. insert ``up - 1`` zeros after every sample (length ``H * up``);
    2. pad ``pad[0]`` zeros before and ``pad[1]`` after, on both axes (negative values crop);
    3. true convolution ("valid") with ``kernel``: output length ``H*up + pad[0] + pad[1] - kH + 1``;
    4. keep samples ``0, down, 2*down, ...``.

    ``kernel`` is used as given (no normalisation) and cast to ``x.dtype``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 2-D kernel, got shape {tuple(kernel.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    _, channels, height, width = x.shape
    kh, kw = kernel.shape
    p0, p1 = int(pad[0]), int(pad[1])
    out_h = height * up + p0 + p1 - kh + 1
    out_w = width * up + p0 + p1 - kw + 1
    if out_h <= 0 or out_w <= 0:
        raise ValueError(
            f"upfirdn2d output would be empty (input {height}x{width}, kernel {kh}x{kw}, pad {pad})"
        )

    if up == 1:
        # conv2d is a correlation: flip the kernel to get a true convolution.
        weight = _depthwise(kernel.flip(0, 1), channels, x)
        x = F.pad(x, (p0, p1, p0, p1))
        return F.conv2d(x, weight, stride=down, groups=channels)

    # conv_transpose2d(stride=up) == zero insertion followed by a *full* true convolution with the kernel.
    weight = _depthwise(kernel, channels, x)
    y = F.conv_transpose2d(x, weight, stride=up, groups=channels)
    # Full-convolution index j equals "valid" index o + (k - 1) - p0; crop (or zero-extend) accordingly.
    top, left = kh - 1 - p0, kw - 1 - p0
    bottom = top + out_h - y.shape[2]
    right = left + out_w - y.shape[3]
    y = F.pad(y, (-left, right, -top, bottom))
    if down > 1:
        y = y[:, :, ::down, ::down]
    return y


def _scaled(kernel: torch.Tensor, scale: float) -> torch.Tensor:
    # The reference scales the float32 kernel before use; do the same (exact for power-of-two scales).
    return kernel if scale == 1 else kernel * scale


def upsample_2d_prepared(
    x: torch.Tensor, kernel: torch.Tensor, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """:func:`upsample_2d` with a kernel already prepared by :func:`setup_kernel`."""
    kernel = _scaled(kernel, gain * factor**2)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d_prepared(
    x: torch.Tensor, kernel: torch.Tensor, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """:func:`downsample_2d` with a kernel already prepared by :func:`setup_kernel`."""
    kernel = _scaled(kernel, gain)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d_prepared(
    x: torch.Tensor, w: torch.Tensor, kernel: torch.Tensor, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """:func:`upsample_conv_2d` with a kernel already prepared by :func:`setup_kernel`."""
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"conv weight must be (out, in, k, k), got shape {tuple(w.shape)}")
    in_c, conv_k = w.shape[1], w.shape[3]
    if x.shape[1] != in_c:
        raise ValueError(
            f"input has {x.shape[1]} channels but the conv weight expects {in_c} (groups are not supported)"
        )
    kernel = _scaled(kernel, gain * factor**2)
    p = (kernel.shape[0] - factor) - (conv_k - 1)
    # Transposed convolution with the spatially flipped weight = zero insertion + full convolution with w
    # (TF's conv2d_transpose as used by StyleGAN2); conv_transpose2d wants (in, out, k, k).
    w_t = w.flip(2, 3).transpose(0, 1)
    x = F.conv_transpose2d(x, w_t, stride=factor)
    return upfirdn2d(x, kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d_prepared(
    x: torch.Tensor, w: torch.Tensor, kernel: torch.Tensor, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """:func:`conv_downsample_2d` with a kernel already prepared by :func:`setup_kernel`."""
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"conv weight must be (out, in, k, k), got shape {tuple(w.shape)}")
    conv_k = w.shape[3]
    kernel = _scaled(kernel, gain)
    p = (kernel.shape[0] - factor) + (conv_k - 1)
    x = upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2))
    return F.conv2d(x, w, stride=factor)


def _kernel_or_box(k: KernelLike | None, factor: int) -> torch.Tensor:
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    return setup_kernel([1] * factor if k is None else k)


def upsample_2d(
    x: torch.Tensor, k: KernelLike | None = None, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """Upsample (N, C, H, W) images by ``factor`` with FIR filter ``k`` (StyleGAN2 ``upsample_2d``).

    The filter is normalised so that a constant image is scaled by ``gain``. ``k=None`` is ``[1] * factor``,
    i.e. nearest-neighbour upsampling. Returns (N, C, H*factor, W*factor).
    """
    return upsample_2d_prepared(x, _kernel_or_box(k, factor), factor, gain)


def downsample_2d(
    x: torch.Tensor, k: KernelLike | None = None, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """Downsample (N, C, H, W) images by ``factor`` with FIR filter ``k`` (StyleGAN2 ``downsample_2d``).

    ``k=None`` is ``[1] * factor``, i.e. average pooling. Returns (N, C, H//factor, W//factor).
    """
    return downsample_2d_prepared(x, _kernel_or_box(k, factor), factor, gain)


def upsample_conv_2d(
    x: torch.Tensor, w: torch.Tensor, k: KernelLike | None = None, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """Fused FIR upsampling followed by a convolution with weight ``w`` (out, in, k, k) (StyleGAN2).

    Implemented as a stride-``factor`` transposed convolution with the flipped weight followed by FIR
    filtering, as in StyleGAN2's ``upsample_conv_2d``. (The reference PyTorch port cannot execute this path:
    it slices with a negative step; this is the operation it was ported from.) Returns (N, out, 2H, 2W) for
    ``factor=2``.
    """
    return upsample_conv_2d_prepared(x, w, _kernel_or_box(k, factor), factor, gain)


def conv_downsample_2d(
    x: torch.Tensor, w: torch.Tensor, k: KernelLike | None = None, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """Fused convolution with weight ``w`` (out, in, k, k) followed by FIR downsampling (StyleGAN2).

    FIR-filter with padding, then a stride-``factor`` "valid" convolution. Returns (N, out, H/f, W/f).
    """
    return conv_downsample_2d_prepared(x, w, _kernel_or_box(k, factor), factor, gain)


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling by repetition (BigGAN-style resblocks without FIR)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1).expand(n, c, h, factor, w, factor)
    return x.reshape(n, c, h * factor, w * factor)


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling over non-overlapping ``factor`` x ``factor`` windows (``F.avg_pool2d``: one pass, ~5x faster
    on CPU than a reshape + mean over the window axes, equal to float rounding)."""
    return F.avg_pool2d(x, kernel_size=factor, stride=factor)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2, scale: float = math.sqrt(2.0)
) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale`` with ``bias`` broadcast over dim 1 (StyleGAN2).

    This is the CPU branch of the reference ``fused_leaky_relu``; the fused CUDA kernel computes the same.
    """
    shape = [1, bias.shape[0]] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.reshape(shape), negative_slope=negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias followed by scaled leaky ReLU (StyleGAN2's ``FusedLeakyReLU``)."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = math.sqrt(2.0)) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)
