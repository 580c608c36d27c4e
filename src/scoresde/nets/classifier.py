"""Time-conditional classifiers ``logits = net(x_t, noise_labels)`` for classifier guidance: the noise-conditional
classifiers ``p_t(y | x_t)`` of Song et al. 2021 (§5, "controllable generation"; their JAX release used a
time-conditional Wide-ResNet) and of PSLD (Pandey & Mandt 2023, whose classifier is the encoder of its NCSN++).

* :class:`NCSNppClassifier`: the downsampling half of NCSN++/DDPM++ (:mod:`scoresde.nets.ncsnpp`), built from the same
  blocks of :mod:`scoresde.nets.unet_blocks` (residual blocks fed the time embedding, attention, resamplers), then
  GroupNorm, global average pooling and a linear head. Use it for images.
* :class:`MLPClassifier`: the toy MLP of :mod:`scoresde.nets.toy` with a ``num_classes``-wide output layer. Use it for
  2-D / low-dimensional data.

As for the score networks, ``noise_labels`` is whatever the adapter feeds (``sigma(t)``, ``999 t`` or ``t``: see
:class:`scoresde.models.ClassifierModel`) and the network never reads the SDE. Input channels are those of the SDE's
state: ``2 C`` for PSLD/CLD, whose classifiers see ``[x, m]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..numerics.checks import check_choice
from .activations import get_activation
from .embeddings import GaussianFourierProjection, get_timestep_embedding
from .init import conv3x3, dense
from .toy import ToyMLP
from .unet_blocks import AttnBlock, Downsample, ResnetBlockBigGAN, ResnetBlockDDPM, group_norm, res_name

__all__ = ["CLASSIFIER_EMBEDDINGS", "MLPClassifier", "NCSNppClassifier"]

#: time embeddings of :class:`NCSNppClassifier`: NCSN++'s Fourier features of ``log(label)`` (for ``sigma(t)`` or raw
#: ``t`` labels) or DDPM++'s sinusoidal features of the label (for ``999 t``)
CLASSIFIER_EMBEDDINGS = ("fourier", "positional")
_RESBLOCKS = ("biggan", "ddpm")


def _check_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return num_classes


class NCSNppClassifier(nn.Module):
    """The encoder of NCSN++/DDPM++ (Song et al. 2021, App. H) plus pooling and a linear head: ``forward(x,
    noise_labels) -> logits (B, num_classes)``.

    Per resolution ``num_res_blocks`` residual blocks (each fed the time embedding; attention after each at
    ``attn_resolutions``), then a 2x downsampling (a BigGAN block with ``down=True``, or DDPM's strided conv), as in
    :class:`~scoresde.nets.NCSNpp`'s encoder; after the coarsest level one more residual block, GroupNorm, the
    activation, a global average over space and a linear layer. PSLD's classifier is the same shape (its NCSN++
    encoder and a pooled head).

    Args (NCSN++'s meanings; defaults sized for the 16x16 digits on a CPU):
        image_size: input resolution (square), divisible by ``2 ** (len(ch_mult) - 1)``.
        in_channels: input channels: the SDE state's (``2 C`` for PSLD/CLD).
        num_classes: number of classes (>= 2).
        nf: base channel count.
        ch_mult: channel multiplier per resolution.
        num_res_blocks: residual blocks per resolution.
        attn_resolutions: resolutions with self-attention.
        dropout: dropout in the residual blocks.
        resblock_type: ``'biggan'`` (NCSN++/DDPM++) or ``'ddpm'``.
        embedding_type: ``'fourier'`` (features of ``log(noise_labels)``: labels ``sigma(t)`` or ``t``) or
            ``'positional'`` (sinusoidal features of ``noise_labels``: labels ``999 t``).
        fourier_scale: standard deviation of the Fourier frequencies (NCSN++: 16).
        fir: FIR resampling in the downsampling blocks (NCSN++: True, DDPM++: False).
        skip_rescale: divide residual sums by sqrt(2).
        nonlinearity: ``'swish'``, ``'elu'``, ``'relu'`` or ``'lrelu'``.
    """

    def __init__(self, image_size: int, in_channels: int, num_classes: int, *, nf: int = 32,
                 ch_mult: Sequence[int] = (1, 2, 2), num_res_blocks: int = 1, attn_resolutions: Sequence[int] = (),
                 dropout: float = 0.0, resblock_type: str = "biggan", embedding_type: str = "positional",
                 fourier_scale: float = 16.0, fir: bool = False, skip_rescale: bool = True,
                 nonlinearity: str = "swish") -> None:
        super().__init__()
        self.num_classes = _check_classes(num_classes)
        self.resblock_type = check_choice("resblock_type", resblock_type, _RESBLOCKS, ignore_case=True)
        self.embedding_type = check_choice("embedding_type", embedding_type, CLASSIFIER_EMBEDDINGS, ignore_case=True)
        if image_size % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"image_size {image_size} is not divisible by 2**(len(ch_mult)-1) = "
                             f"{2 ** (len(ch_mult) - 1)}")
        if in_channels < 1 or nf < 1 or num_res_blocks < 1:
            raise ValueError(f"in_channels, nf and num_res_blocks must be positive, got {in_channels}, {nf}, "
                             f"{num_res_blocks}")
        self.in_channels, self.nf = in_channels, nf
        self.resolutions = [image_size // 2**i for i in range(len(ch_mult))]
        self.act = get_activation(nonlinearity)
        block_kw: dict[str, Any] = dict(act=self.act, dropout=dropout, skip_rescale=skip_rescale, temb_dim=4 * nf)
        if self.resblock_type == "biggan":
            block_kw["fir"] = fir
        block_cls = ResnetBlockBigGAN if self.resblock_type == "biggan" else ResnetBlockDDPM
        if self.embedding_type == "fourier":
            self.fourier_proj = GaussianFourierProjection(embedding_size=nf, scale=fourier_scale)
        self.temb = nn.Sequential(dense(2 * nf if self.embedding_type == "fourier" else nf, 4 * nf), get_activation(
            nonlinearity), dense(4 * nf, 4 * nf))
        self.conv_in = conv3x3(in_channels, nf)
        self.blocks = nn.ModuleDict()
        ch = nf
        for level, res in enumerate(self.resolutions):
            for i in range(num_res_blocks):
                self.blocks[f"{res_name(res)}_block{i}"] = block_cls(in_ch=ch, out_ch=nf * ch_mult[level], **block_kw)
                ch = nf * ch_mult[level]
                if res in attn_resolutions:
                    self.blocks[f"{res_name(res)}_attn{i}"] = AttnBlock(ch, skip_rescale=skip_rescale)
            if level < len(self.resolutions) - 1:
                name = f"{res_name(self.resolutions[level + 1])}_down"
                self.blocks[name] = (block_cls(in_ch=ch, down=True, **block_kw) if self.resblock_type == "biggan"
                                     else Downsample(ch, with_conv=True, fir=fir))
        self.blocks["out_block"] = block_cls(in_ch=ch, **block_kw)
        self.norm_out = group_norm(ch, None)
        self.head = nn.Linear(ch, self.num_classes)

    def embed(self, noise_labels: Tensor) -> Tensor:
        """Time embedding ``(B, 4 nf)``: NCSN++'s Fourier features of ``log(noise_labels)`` or DDPM++'s sinusoidal
        features of ``noise_labels``, through a two-layer MLP."""
        if noise_labels.dim() != 1:
            raise ValueError(f"noise_labels must have shape (B,), got {tuple(noise_labels.shape)}")
        if self.embedding_type == "fourier":
            emb = self.fourier_proj(torch.log(noise_labels.to(self.conv_in.weight.dtype)))
        else:
            emb = get_timestep_embedding(noise_labels, self.nf).to(self.conv_in.weight.dtype)
        return self.temb(emb)

    def forward(self, x: Tensor, noise_labels: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of a batch ``x`` ``(B, in_channels, H, W)`` at noise labels ``(B,)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects inputs of shape (B, {self.in_channels}, H, W), got "
                             f"{tuple(x.shape)}")
        if noise_labels.shape != (x.shape[0],):
            raise ValueError(f"noise_labels must have shape ({x.shape[0]},), got {tuple(noise_labels.shape)}")
        temb = self.embed(noise_labels)
        h = self.conv_in(x)
        for module in self.blocks.values():
            h = module(h) if isinstance(module, (AttnBlock, Downsample)) else module(h, temb)
        h = self.act(self.norm_out(h)).mean(dim=(2, 3))
        return self.head(h)


class MLPClassifier(nn.Module):
    """A time-conditional MLP classifier for low-dimensional data: :class:`~scoresde.nets.toy.ToyMLP` (sinusoidal
    features of the noise label, a residual SiLU stack) with a ``num_classes``-wide output layer. ``forward(x,
    noise_labels) -> logits (B, num_classes)`` for ``x`` of shape ``(B, dim)`` (the state: ``2 d`` for PSLD/CLD).

    Args:
        dim: input dimension.
        num_classes: number of classes (>= 2).
        hidden, depth, time_embed_dim, max_period: as in :class:`~scoresde.nets.toy.ToyMLP` (``max_period=1e-3``
            gives angular frequencies 1..1000, for raw-``t`` labels as PSLD/CLD models are fed).
    """

    def __init__(self, dim: int, num_classes: int, *, hidden: int = 128, depth: int = 3, time_embed_dim: int = 32,
                 max_period: float = 10000.0) -> None:
        super().__init__()
        self.num_classes = _check_classes(num_classes)
        self.body = ToyMLP(dim=dim, hidden=hidden, depth=depth, time_embed_dim=time_embed_dim, max_period=max_period)
        self.body.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, self.num_classes))
        self.dim = dim

    def forward(self, x: Tensor, noise_labels: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of ``x`` ``(B, dim)`` at noise labels ``(B,)``."""
        return self.body(x, noise_labels)
