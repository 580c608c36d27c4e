"""Weight initialisers of the Score SDE U-Nets and the layers built with them.

:func:`variance_scaling` is JAX/TF's initialiser; :func:`default_init` is DDPM's choice of it (Ho et al. 2020, the
original TF code's ``default_init``), used by :func:`conv1x1`, :func:`conv3x3` and :func:`dense`, the initialised
layers that the blocks of :mod:`scoresde.nets.unet_blocks` and the networks are built from. Every draw comes from
torch's global generator, in construction order, so a seed gives the original code's weights layer by layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from scoresde.numerics.checks import check_choice

__all__ = ["VARIANCE_SCALING_DISTRIBUTIONS", "VARIANCE_SCALING_MODES", "Initializer", "conv1x1", "conv3x3",
           "default_init", "dense", "variance_scaling"]

Initializer = Callable[..., torch.Tensor]
#: ``mode`` values of :func:`variance_scaling`: the fan that divides ``scale``
VARIANCE_SCALING_MODES = ("fan_in", "fan_out", "fan_avg")
#: ``distribution`` values of :func:`variance_scaling`
VARIANCE_SCALING_DISTRIBUTIONS = ("normal", "uniform")


def variance_scaling(
    scale: float, mode: str, distribution: str, in_axis: int = 1, out_axis: int = 0
) -> Initializer:
    """JAX/TF ``variance_scaling`` initialiser: variance ``scale / fan``, normal or uniform (Glorot-type).

    Returns ``init(shape, dtype=torch.float32, device='cpu')``. ``mode`` is ``'fan_in'``, ``'fan_out'`` or
    ``'fan_avg'``; ``distribution`` is ``'normal'`` or ``'uniform'``. Draws from torch's global generator.
    """
    check_choice("variance scaling mode", mode, VARIANCE_SCALING_MODES)
    check_choice("variance scaling distribution", distribution, VARIANCE_SCALING_DISTRIBUTIONS)

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


def dense(in_features: int, out_features: int) -> nn.Linear:
    """Linear layer with DDPM initialisation (``default_init()`` weight, zero bias): the time-embedding MLP's and
    the residual blocks' projection of it."""
    layer = nn.Linear(in_features, out_features)
    layer.weight.data = default_init()(layer.weight.shape)
    nn.init.zeros_(layer.bias)
    return layer

