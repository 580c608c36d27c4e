"""Building blocks of the RefineNet score networks NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020).

NCSN (v1) is a noise-*conditional* RefineNet: every normalisation layer is a conditional InstanceNorm++ (Song
& Ermon 2019, §4.2 and appendix A.1) whose scale/shift/mean-shift parameters are looked up from the noise
index. NCSNv2 (Song & Ermon 2020, technique 3) removes the conditioning from the network body: it uses the
unconditional InstanceNorm++ in the residual blocks, no normalisation at all in the RefineNet blocks, and
divides the output by ``sigma`` instead.

The module and parameter names reproduce those of the Score SDE PyTorch code (``models/layers.py`` and
``models/normalization.py``) so that its checkpoints load unchanged, including the RCU blocks' attribute names
``"<i>_<j>_conv"`` / ``"<i>_<j>_norm"`` that start with a digit. The registration order of the sub-modules is
also the original one, so ``net.parameters()`` enumerates parameters in the order the original EMA state lists
them.

Two changes to the code at commit cb1f359 are the patches the reference fixtures were produced with
(``../shared/reference/README.md`` §6), which follow the original NCSNv2 code:

* dilated 3x3 convolutions use SAME padding (``padding=dilation``), so the "down" residual blocks that are
  dilated keep the spatial size (patch P3);
* a conditional residual block without a dilation uses dilation 1 (patch P5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..numerics.checks import check_choice

__all__ = [
    "CRPBlock",
    "ConditionalInstanceNorm2dPlus",
    "ConvMeanPool",
    "InstanceNorm2dPlus",
    "MSFBlock",
    "NormFactory",
    "RCUBlock",
    "RefineBlock",
    "ResidualBlock",
    "VarianceNorm2d",
    "ncsn_conv3x3",
]

NormFactory = Callable[[int], nn.Module]
"""``make_norm(num_features) -> module``: builds one normalisation layer for a given number of channels."""

_EPS = 1e-5  # variance floor of every normalisation below (the torch.nn.InstanceNorm2d default)


def ncsn_conv3x3(in_channels: int, out_channels: int, *, bias: bool = True, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with SAME padding (``padding=dilation``) and PyTorch's default init (NCSN)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=dilation, dilation=dilation, bias=bias)


# ----------------------------------------------------------------------------------------------------------
# Normalisations.
# ------------------------------------------------------------------------------------------------------------
def _standardised_channel_means(x: Tensor) -> Tensor:
    """The InstanceNorm++ mean-shift term: per-channel spatial means, standardised across channels.

    The spread across channels is the *unbiased* variance, as in the original code. Shape ``(B, C)``.
    """
    means = x.mean(dim=(2, 3))
    centre = means.mean(dim=-1, keepdim=True)
    spread = means.var(dim=-1, keepdim=True)
    return (means - centre) / torch.sqrt(spread + _EPS)


class InstanceNorm2dPlus(nn.Module):
    """InstanceNorm++ (Song & Ermon 2019, appendix A.1, eq. 9 without the noise conditioning), used by NCSNv2.

    ``z_k = gamma_k * ((x_k - mu_k) / s_k + alpha_k * (mu_k - m) / sqrt(v + eps)) + beta_k``, where ``mu_k``
    and ``s_k`` are the spatial mean and (biased) standard deviation of channel ``k`` and ``m``, ``v`` the
    mean and unbiased variance of the ``mu_k`` over channels. ``alpha`` and ``gamma`` start at N(1, 0.02),
    ``beta`` at 0.

    Args:
        num_features: number of channels ``C``.
        bias: whether the shift ``beta`` exists.
    """

    def __init__(self, num_features: int, bias: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.bias = bool(bias)
        self.alpha = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        self.gamma = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        if self.bias:
            self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        shift = _standardised_channel_means(x)
        h = F.instance_norm(x, eps=_EPS)
        h = h + shift[..., None, None] * self.alpha[..., None, None]
        out = self.gamma.view(-1, self.num_features, 1, 1) * h
        if self.bias:
            out = out + self.beta.view(-1, self.num_features, 1, 1)
        return out


class ConditionalInstanceNorm2dPlus(nn.Module):
    """Conditional InstanceNorm++ (Song & Ermon 2019, appendix A.1, eq. 9), used throughout NCSN v1.

    As :class:`InstanceNorm2dPlus`, but ``gamma``, ``alpha`` and ``beta`` depend on the noise index ``y``:
    they are the three consecutive ``C``-wide slices of row ``y`` of ``embed.weight`` (shape ``(num_classes,
    3C)``, or ``(num_classes, 2C)`` without ``beta``). ``gamma`` and ``alpha`` start at N(1, 0.02), ``beta``
    at 0.

    Args:
        num_features: number of channels ``C``.
        num_classes: number of noise levels ``L`` (the config's ``model.num_scales``).
        bias: whether the shift ``beta`` exists.
    """

    def __init__(self, num_features: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.bias = bool(bias)
        self.embed = nn.Embedding(num_classes, (3 if self.bias else 2) * num_features)
        with torch.no_grad():
            self.embed.weight[:, : 2 * num_features].normal_(1.0, 0.02)
            self.embed.weight[:, 2 * num_features :].zero_()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shift = _standardised_channel_means(x)
        h = F.instance_norm(x, eps=_EPS)
        params = self.embed(y).chunk(3 if self.bias else 2, dim=-1)
        gamma, alpha = params[0], params[1]
        h = h + shift[..., None, None] * alpha[..., None, None]
        out = gamma.view(-1, self.num_features, 1, 1) * h
        if self.bias:
            out = out + params[2].view(-1, self.num_features, 1, 1)
        return out


class VarianceNorm2d(nn.Module):
    """Variance normalisation (NCSNv2 code's ``VarianceNorm``): ``alpha_k * x_k / sqrt(var_k + eps)``.

    ``var_k`` is the unbiased spatial variance of channel ``k``; the mean is kept. ``alpha`` starts at
    N(1, 0.02).

    Args:
        num_features: number of channels ``C``.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.alpha = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))

    def forward(self, x: Tensor) -> Tensor:
        h = x / torch.sqrt(x.var(dim=(2, 3), keepdim=True) + _EPS)
        return self.alpha.view(-1, self.num_features, 1, 1) * h


# ----------------------------------------------------------------------------------------------------------
# Residual encoder blocks.
# ------------------------------------------------------------------------------------------------------------
class ConvMeanPool(nn.Module):
    """A stride-1 convolution followed by 2x2 mean pooling (NCSN's downsampling; Gulrajani et al. 2017 style).

    The pooling averages the four pixels of each 2x2 cell; height and width must be even.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: odd kernel size of the (SAME-padded, biased) convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        return (h[:, :, ::2, ::2] + h[:, :, 1::2, ::2] + h[:, :, ::2, 1::2] + h[:, :, 1::2, 1::2]) / 4.0


class ResidualBlock(nn.Module):
    """Pre-activation residual block of the NCSN/NCSNv2 encoder (Song & Ermon 2019, appendix A.1).

    ``out = shortcut(x) + conv2(act(norm2(conv1(act(norm1(x))))))``. With ``downsample=True`` and ``dilation
    == 1``, ``conv2`` and the shortcut are :class:`ConvMeanPool` (3x3 and 1x1) and the block halves the
    resolution; with ``dilation > 1`` they are dilated SAME-padded 3x3 convolutions and the resolution is kept
    (this is how the original NCSNv2 builds its dilated stages). The shortcut is the identity when the block
    neither resamples nor changes the channel count.

    Args:
        in_channels, out_channels: channel counts.
        act: the nonlinearity (shared, parameter-free).
        make_norm: builds the normalisation for a channel count (conditional or not, see ``conditional``).
        conditional: whether the normalisations take the noise index (``norm(h, y)``, NCSN v1) or not.
        downsample: the original's ``resample='down'``.
        dilation: dilation of the 3x3 convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        act: nn.Module,
        make_norm: NormFactory,
        conditional: bool,
        downsample: bool = False,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.act = act
        self.conditional = conditional
        # Sub-modules are registered in the original order: conv1, normalize2, conv2, shortcut, normalize1.
        shortcut: nn.Module | None
        if downsample and dilation > 1:
            self.conv1 = ncsn_conv3x3(in_channels, in_channels, dilation=dilation)
            self.normalize2 = make_norm(in_channels)
            self.conv2 = ncsn_conv3x3(in_channels, out_channels, dilation=dilation)
            shortcut = ncsn_conv3x3(in_channels, out_channels, dilation=dilation)
        elif downsample:
            self.conv1 = ncsn_conv3x3(in_channels, in_channels)
            self.normalize2 = make_norm(in_channels)
            self.conv2 = ConvMeanPool(in_channels, out_channels, 3)
            shortcut = ConvMeanPool(in_channels, out_channels, 1)
        else:
            self.conv1 = ncsn_conv3x3(in_channels, out_channels, dilation=dilation)
            self.normalize2 = make_norm(out_channels)
            self.conv2 = ncsn_conv3x3(out_channels, out_channels, dilation=dilation)
            if in_channels == out_channels:
                shortcut = None
            elif dilation > 1:
                shortcut = ncsn_conv3x3(in_channels, out_channels, dilation=dilation)
            else:
                shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.shortcut = shortcut
        self.normalize1 = make_norm(in_channels)

    def _norm(self, norm: nn.Module, h: Tensor, y: Tensor | None) -> Tensor:
        return norm(h, y) if self.conditional else norm(h)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.conv1(self.act(self._norm(self.normalize1, x, y)))
        h = self.conv2(self.act(self._norm(self.normalize2, h, y)))
        skip = x if self.shortcut is None else self.shortcut(x)
        return skip + h


# ----------------------------------------------------------------------------------------------------------
# RefineNet decoder blocks (Lin et al. 2017), with optional conditional normalisation (NCSN v1).
# ------------------------------------------------------------------------------------------------------------
class RCUBlock(nn.Module):
    """Residual convolution unit (RefineNet, Lin et al. 2017): ``n_blocks`` residual units of ``n_stages``
    (norm ->) act -> bias-free 3x3 conv stages.

    Args:
        features: channel count.
        n_blocks, n_stages: number of residual units and of conv stages per unit.
        act: the nonlinearity.
        make_norm: if given, a *conditional* normalisation precedes every activation (NCSN v1); NCSNv2 has
            none.
    """

    def __init__(
        self,
        features: int,
        n_blocks: int,
        n_stages: int,
        act: nn.Module,
        make_norm: NormFactory | None = None,
    ) -> None:
        super().__init__()
        self.n_blocks = n_blocks
        self.n_stages = n_stages
        self.act = act
        self.normalized = make_norm is not None
        for i in range(1, n_blocks + 1):
            for j in range(1, n_stages + 1):
                if make_norm is not None:
                    self.add_module(f"{i}_{j}_norm", make_norm(features))
                self.add_module(f"{i}_{j}_conv", ncsn_conv3x3(features, features, bias=False))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        for i in range(1, self.n_blocks + 1):
            residual = x
            for j in range(1, self.n_stages + 1):
                if self.normalized:
                    x = self.get_submodule(f"{i}_{j}_norm")(x, y)
                x = self.act(x)
                x = self.get_submodule(f"{i}_{j}_conv")(x)
            x = x + residual
        return x


class CRPBlock(nn.Module):
    """Chained residual pooling (RefineNet, Lin et al. 2017): ``x <- act(x)``, then ``n_stages`` times
    ``path <- conv(pool(norm(path)))``, ``x <- path + x``, with 5x5 stride-1 pooling.

    Args:
        features: channel count.
        n_stages: number of pooling stages.
        act: the nonlinearity.
        make_norm: if given, a conditional normalisation precedes each pooling (NCSN v1).
        pool: ``"max"`` (NCSNv2) or ``"avg"`` (NCSN v1; zero padding counted in the average).
    """

    def __init__(
        self,
        features: int,
        n_stages: int,
        act: nn.Module,
        make_norm: NormFactory | None = None,
        pool: str = "max",
    ) -> None:
        super().__init__()
        check_choice("pool", pool, ("max", "avg"))
        # Created norm-then-conv per stage (the original's initialisation order), registered convs first.
        convs, norms = [], []
        for _ in range(n_stages):
            if make_norm is not None:
                norms.append(make_norm(features))
            convs.append(ncsn_conv3x3(features, features, bias=False))
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        if pool == "max":
            self.pool: nn.Module = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)
        else:
            self.pool = nn.AvgPool2d(kernel_size=5, stride=1, padding=2)
        self.act = act

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        x = self.act(x)
        path = x
        for i, conv in enumerate(self.convs):
            if len(self.norms):
                path = self.norms[i](path, y)
            path = conv(self.pool(path))
            x = path + x
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion (RefineNet, Lin et al. 2017): each input goes through (a conditional norm and)
    a biased 3x3 conv to ``features`` channels, is resized bilinearly (``align_corners=True``) to the output
    shape, and the results are summed.

    Args:
        in_planes: channel count of each input.
        features: output channel count.
        make_norm: if given, a conditional normalisation precedes each conv (NCSN v1).
    """

    def __init__(self, in_planes: Sequence[int], features: int, make_norm: NormFactory | None = None) -> None:
        super().__init__()
        self.features = features
        # Created conv-then-norm per input (the original's initialisation order), registered convs first.
        convs, norms = [], []
        for c in in_planes:
            convs.append(ncsn_conv3x3(c, features))
            if make_norm is not None:
                norms.append(make_norm(c))
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)

    def forward(self, xs: Sequence[Tensor], y: Tensor | None, shape: Sequence[int]) -> Tensor:
        total: Tensor | None = None
        for i, conv in enumerate(self.convs):
            h = xs[i]
            if len(self.norms):
                h = self.norms[i](h, y)
            h = F.interpolate(conv(h), size=tuple(shape), mode="bilinear", align_corners=True)
            total = h if total is None else total + h
        assert total is not None
        return total


class RefineBlock(nn.Module):
    """RefineNet block (Lin et al. 2017) as used by NCSN/NCSNv2: two RCUs per input (``adapt_convs``),
    multi-resolution fusion of the inputs (``msf``, absent for the first, single-input block), chained
    residual pooling (``crp``) and output RCUs (``output_convs``: three for the last block, else one).

    Args:
        in_planes: channel count of each input (one for the deepest block, two otherwise).
        features: output channel count.
        act: the nonlinearity.
        start: first (deepest) block of the decoder, which has a single input and no ``msf``.
        end: last block of the decoder (three output RCUs).
        make_norm: conditional normalisation of NCSN v1, or ``None`` (NCSNv2: no normalisation).
        pool: pooling of the CRP, ``"max"`` (NCSNv2) or ``"avg"`` (NCSN v1).
    """

    def __init__(
        self,
        in_planes: Sequence[int],
        features: int,
        act: nn.Module,
        *,
        start: bool = False,
        end: bool = False,
        make_norm: NormFactory | None = None,
        pool: str = "max",
    ) -> None:
        super().__init__()
        in_planes = list(in_planes)
        if start and len(in_planes) != 1:
            raise ValueError(f"a start RefineBlock takes exactly one input, got in_planes={in_planes}")
        if not start and len(in_planes) < 2:
            raise ValueError(f"a RefineBlock that is not the start one fuses >= 2 inputs, got {in_planes}")
        self.n_blocks = len(in_planes)
        self.adapt_convs = nn.ModuleList(RCUBlock(c, 2, 2, act, make_norm) for c in in_planes)
        self.output_convs = RCUBlock(features, 3 if end else 1, 2, act, make_norm)
        if not start:
            self.msf = MSFBlock(in_planes, features, make_norm)
        self.crp = CRPBlock(features, 2, act, make_norm, pool)

    def forward(self, xs: Sequence[Tensor], y: Tensor | None, output_shape: Sequence[int]) -> Tensor:
        hs = [adapt(x, y) for adapt, x in zip(self.adapt_convs, xs, strict=True)]
        h = self.msf(hs, y, output_shape) if self.n_blocks > 1 else hs[0]
        h = self.crp(h, y)
        return self.output_convs(h, y)
