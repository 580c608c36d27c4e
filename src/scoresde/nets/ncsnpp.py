"""NCSN++ / DDPM++: the U-Net of Song et al., "Score-Based Generative Modeling through Stochastic Differential
Equations" (ICLR 2021, appendix H), as the ``ncsnpp`` model of the Score SDE code.

NCSN++ and DDPM++ are two configurations of :class:`NCSNpp` (see the per-argument comments, and
:meth:`NCSNpp.from_config` for the original config dictionaries). The network is
``forward(x, noise_labels, class_labels=None)``, where ``noise_labels`` is the noise level σ for Fourier
embeddings (VE models) or the (continuous) timestep for positional embeddings. With ``num_classes > 0`` the network
is class-conditional: a :class:`~scoresde.nets.embeddings.ClassEmbedding` of ``class_labels`` (int64 ``(B,)``, ``-1`` or
None = the null label) is added to the noise embedding before the embedding MLP (EDM's ``label_dim`` design); with
the default ``num_classes=0`` it has no such parameter and ``class_labels`` must be None. With ``augment_dim > 0``
the network also takes ``augment_labels`` (B, augment_dim), the augmentation labels of EDM's non-leaking augmentation,
mapped into the noise embedding by an :class:`~scoresde.nets.embeddings.AugmentEmbedding` (module ``augment_embed``).
SDE-specific input/output scalings live outside the network.

Checkpoints of the original code (``all_modules.<i>...`` keys) load with
:func:`scoresde.checkpoint.state_dict.load_original_state_dict`; submodules here have descriptive names instead
(``enc['16x16_block0']``, ``dec['8x8_up']``, ...), and the list of those names in the original module order
provides the key mapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from scoresde.nets.activations import get_activation
from scoresde.nets.config_checks import (
    check_attn_resolutions,
    check_config_keys,
    check_config_types,
    check_config_value,
)
from scoresde.nets.embeddings import (
    AugmentEmbedding,
    ClassEmbedding,
    GaussianFourierProjection,
    add_augment_labels,
    build_augment_embedding,
    build_class_embedding,
    class_options,
    get_timestep_embedding,
    reject_class_labels,
    sigma_table,
)
from scoresde.nets.init import conv3x3, dense
from scoresde.nets.original_keys import OriginalCheckpointMixin
from scoresde.nets.unet_blocks import (
    AttnBlock,
    Combine,
    Downsample,
    ResnetBlockBigGAN,
    ResnetBlockDDPM,
    Upsample,
    call_block,
    group_norm,
    res_name,
)
from scoresde.numerics.checks import check_choice, check_flag

__all__ = ["NCSNpp"]

PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
PROGRESSIVE_COMBINE = ("sum", "cat")
RESBLOCK_TYPES = ("biggan", "ddpm")
EMBEDDING_TYPES = ("fourier", "positional")

# Config entries that do not change the network (or only hold SDE hyper-parameters).
# sigma_begin: set by configs/ve/celeba_ncsnpp.py, never read by the original code.
_IGNORED_MODEL_KEYS = frozenset({"name", "ema_rate", "beta_min", "beta_max", "sigma_begin"})
# (data.category and data.tfrecords_path appear in the LSUN / CelebA-HQ / FFHQ configs.)
_IGNORED_DATA_KEYS = frozenset({"dataset", "random_flip", "uniform_dequantization", "channels", "category",
                                "tfrecords_path"})


class NCSNpp(OriginalCheckpointMixin, nn.Module):
    """NCSN++/DDPM++ U-Net (Song et al. 2021, appendix H; ``models/ncsnpp.py`` of Score SDE).

    ``forward(x, noise_labels, class_labels=None)``: ``x`` is (B, in_channels, H, W); ``noise_labels`` (B,) is
    σ for ``embedding_type='fourier'`` (its log is embedded; with ``fourier_log=False`` the labels themselves, EDM's
    ``c_noise``, already a log) or the timestep for ``'positional'`` (or any real label, e.g. EDM's ``c_noise``).
    The output is (B, out_channels, H, W), divided by σ when ``scale_by_sigma`` (σ = ``noise_labels`` for Fourier
    embeddings, ``sigmas[noise_labels.long()]`` for positional ones). With ``num_classes > 0`` (needs
    ``conditional=True``), ``class_labels`` selects the class (module ``label_embed``, see
    :class:`~scoresde.nets.embeddings.ClassEmbedding` for the conventions); with ``num_classes=0`` (the original
    networks) ``class_labels`` other than None raise ``ValueError``. ``augment_labels`` (B, ``augment_dim``) are
    the augmentation labels of networks built with ``augment_dim > 0`` (module ``augment_embed``; ``None`` = not
    augmented), a ``ValueError`` for the others.

    The defaults are DDPM++ (``configs/vp/cifar10_ddpmpp_continuous.py``) apart from ``image_size``; NCSN++
    (``configs/ve/cifar10_ncsnpp_continuous.py``) is ``fir=True, progressive_input='residual',
    embedding_type='fourier', scale_by_sigma=True, centered=False``.
    """

    # label_embed.weight and augment_embed.weight (class-conditional / augment_dim networks only) are our
    # extensions, exported under their own names
    _original_top_level = ("sigmas", "label_embed.weight", "augment_embed.weight")

    #: the ``model.name`` values that build this network
    config_names: ClassVar[tuple[str, ...]] = ("ncsnpp",)
    #: whether it takes ``class_labels`` (when built with ``num_classes > 0``); the one record of it, read by
    #: :data:`scoresde.nets.catalog.CONDITIONAL_NETWORKS`
    class_conditional: ClassVar[bool] = True

    def __init__(
        self,
        image_size: int,                            # Input resolution (square). CIFAR-10: 32.
        in_channels: int = 3,                       # Input channels (data.num_channels).
        out_channels: int | None = None,            # Output channels; None = in_channels.
        nf: int = 128,                              # Base channel count. DDPM++ and NCSN++: 128.
        ch_mult: Sequence[int] = (1, 2, 2, 2),      # Channel multiplier per resolution. CIFAR-10: (1,2,2,2).
        num_res_blocks: int = 4,                    # Residual blocks per resolution. 4; "deep" variants: 8.
        attn_resolutions: Sequence[int] = (16,),    # Resolutions with self-attention. CIFAR-10: (16,).
        dropout: float = 0.1,                       # Dropout in residual blocks. CIFAR-10: 0.1.
        resamp_with_conv: bool = True,              # Conv in Up/Downsample ('ddpm' resblocks). Both: True.
        conditional: bool = True,                   # Condition on the noise level / time. Both: True.
        fir: bool = False,                          # FIR [1,3,3,1] resampling. DDPM++: False, NCSN++: True.
        fir_kernel: Sequence[int] = (1, 3, 3, 1),   # FIR filter taps. Both: (1, 3, 3, 1).
        skip_rescale: bool = True,                  # Divide residual sums by sqrt(2). Both: True.
        resblock_type: str = "biggan",              # 'biggan' or 'ddpm' residual blocks. Both: 'biggan'.
        progressive: str = "none",                  # Output pyramid 'none'/'output_skip'/'residual'.
                                                    #   CIFAR-10: 'none'; NCSN++ FFHQ: 'output_skip'.
        progressive_input: str = "none",            # Input pyramid 'none'/'input_skip'/'residual'.
                                                    #   DDPM++: 'none'; NCSN++: 'residual'/'input_skip'.
        progressive_combine: str = "sum",           # 'input_skip' merge: 'sum' or 'cat'. Both: 'sum'.
        embedding_type: str = "positional",         # 'positional' (noise_labels = t) or 'fourier' (= σ).
                                                    #   DDPM++: 'positional', NCSN++: 'fourier'.
        fourier_scale: float = 16.0,                # Std of the Fourier frequencies W. NCSN++: 16.
        init_scale: float = 0.0,                    # Init scale of output-side convs (0 = 1e-10). Both: 0.
        scale_by_sigma: bool = False,               # Divide the output by σ. DDPM++: False, NCSN++: True.
        centered: bool = True,                      # Input already in [-1, 1]; False: apply 2x - 1 first.
                                                    #   DDPM++ (VP): True, NCSN++ (VE): False.
        nonlinearity: str = "swish",                # 'swish', 'elu', 'relu' or 'lrelu'. Both: 'swish'.
        sigma_min: float = 0.01,                    # σ table (buffer 'sigmas', used with positional
        sigma_max: float = 50.0,                    #   embeddings and scale_by_sigma): geometric from
        num_scales: int = 1000,                     #   sigma_max down to sigma_min, num_scales entries.
        num_classes: int = 0,                       # Class-conditional with this many classes; 0: unconditional
                                                    #   (the original: no label parameters at all).
        null_label: str = "learned",                # Null label (-1/None): 'learned' row or 'zero' vector.
        checkpointing: bool = False,                # Activation checkpointing per residual/attention block
                                                    #   (unet_blocks.call_block): less memory, ~1 more forward.
        augment_dim: int = 0,                       # Length of the augmentation labels (EDM's augment_dim: 9 with
                                                    #   its pipeline); 0: none (no parameter, as the original).
        fourier_log: bool = True,                   # Fourier features of log(noise_labels) (Score SDE: labels σ);
                                                    #   False: of the labels themselves (EDM's SongUNet, fed
                                                    #   c_noise = ln(σ)/4 or ln(σ/2) by the preconditioning).
        noise_channels: int | None = None,          # Width of the noise embedding; None: nf (positional) or 2 nf
                                                    #   (fourier), as the original. EDM: nf * channel_mult_noise.
    ) -> None:
        super().__init__()
        #: recompute each block's activations in the backward pass (settable after construction)
        self.checkpointing = check_flag("checkpointing", checkpointing)
        self.resblock_type = check_choice("resblock_type", resblock_type, RESBLOCK_TYPES, ignore_case=True)
        self.progressive = check_choice("progressive", progressive, PROGRESSIVE, ignore_case=True)
        self.progressive_input = check_choice("progressive_input", progressive_input, PROGRESSIVE_INPUT,
                                              ignore_case=True)
        self.progressive_combine = check_choice("progressive_combine", progressive_combine, PROGRESSIVE_COMBINE,
                                                ignore_case=True)
        self.embedding_type = check_choice("embedding_type", embedding_type, EMBEDDING_TYPES, ignore_case=True)
        self.fourier_log = check_flag("fourier_log", fourier_log)
        if not self.fourier_log and (self.embedding_type != "fourier" or scale_by_sigma):
            raise ValueError("fourier_log=False needs embedding_type='fourier' and scale_by_sigma=False (the labels "
                             "are then no noise level to divide by)")
        default_channels = 2 * nf if self.embedding_type == "fourier" else nf
        if noise_channels is not None and (isinstance(noise_channels, bool) or not isinstance(noise_channels, int)
                                           or noise_channels < 4 or noise_channels % 2):
            raise ValueError(f"noise_channels must be an even integer >= 4 (None: {default_channels}), got "
                             f"{noise_channels!r}")
        self.noise_channels = default_channels if noise_channels is None else noise_channels
        num_levels = len(ch_mult)
        if image_size % 2 ** (num_levels - 1):
            raise ValueError(f"image_size {image_size} is not divisible by 2**(len(ch_mult)-1)")
        self.in_channels, self.out_channels = in_channels, out_channels or in_channels
        self.nf, self.ch_mult, self.num_res_blocks = nf, tuple(ch_mult), num_res_blocks
        self.resolutions = [image_size // 2**i for i in range(num_levels)]
        check_attn_resolutions(attn_resolutions, self.resolutions, image_size)
        self.attn_resolutions = tuple(attn_resolutions)
        self.conditional, self.skip_rescale = conditional, skip_rescale
        self.scale_by_sigma, self.centered = scale_by_sigma, centered
        self.act = get_activation(nonlinearity)
        self.register_buffer("sigmas", sigma_table(sigma_min, sigma_max, num_scales))
        self._original_order = []

        self._build_embedding(fourier_scale)
        # Keyword arguments shared by the residual blocks / resamplers.
        # As in the original, residual blocks get their Dense_0 even when the network is unconditional.
        self._block_kw: dict[str, Any] = dict(
            act=self.act, dropout=dropout, init_scale=init_scale, skip_rescale=skip_rescale, temb_dim=4 * nf
        )
        if self.resblock_type == "biggan":
            self._block_kw.update(fir=fir, fir_kernel=tuple(fir_kernel))
        self._resample_kw: dict[str, Any] = dict(fir=fir, fir_kernel=tuple(fir_kernel))
        self._attn_kw: dict[str, Any] = dict(skip_rescale=skip_rescale, init_scale=init_scale)
        hs_channels = self._build_encoder(resamp_with_conv)
        self._build_decoder(hs_channels, resamp_with_conv, init_scale)
        # Last, so that the other weights draw the same random numbers as the unconditional network's.
        embed_dim = self.noise_channels
        self.label_embed: ClassEmbedding | None = build_class_embedding(self, num_classes, embed_dim, null_label,
                                                                        time_conditional=conditional)
        self.num_classes = num_classes  # 0: class-unconditional
        # After the class embedding, for the same reason.
        self.augment_embed: AugmentEmbedding | None = build_augment_embedding(self, augment_dim, embed_dim,
                                                                             time_conditional=conditional)
        self.augment_dim = augment_dim  # 0: no augmentation labels

    # ---- construction (modules are registered in the original all_modules order) -------------------------

    def _add(self, where: str | None, name: str, module: nn.Module, original: bool = True) -> None:
        """Register ``module`` as ``self.<name>`` or ``self.<where>[name]``; record the original order."""
        if where is None:
            self.add_module(name, module)
        else:
            getattr(self, where)[name] = module
        if original:
            self._original_order.append(name if where is None else f"{where}.{name}")

    def _block(self, in_ch: int, out_ch: int | None = None, **kw: Any) -> nn.Module:
        cls = ResnetBlockBigGAN if self.resblock_type == "biggan" else ResnetBlockDDPM
        return cls(in_ch=in_ch, out_ch=out_ch, **self._block_kw, **kw)

    def _build_embedding(self, fourier_scale: float) -> None:
        nf, embed_dim = self.nf, self.noise_channels
        if self.embedding_type == "fourier":
            self._add(None, "fourier_proj", GaussianFourierProjection(embedding_size=embed_dim // 2,
                                                                      scale=fourier_scale))
        if self.conditional:
            self._add(None, "temb_dense0", dense(embed_dim, 4 * nf))
            self._add(None, "temb_dense1", dense(4 * nf, 4 * nf))

    def _build_encoder(self, resamp_with_conv: bool) -> list[int]:
        nf = self.nf
        self.enc = nn.ModuleDict()
        self._add(None, "conv_in", conv3x3(self.in_channels, nf))
        hs_channels, in_ch, pyramid_ch = [nf], nf, self.in_channels
        for level, res in enumerate(self.resolutions):
            r = res_name(res)
            for i in range(self.num_res_blocks):
                out_ch = nf * self.ch_mult[level]
                self._add("enc", f"{r}_block{i}", self._block(in_ch, out_ch))
                in_ch = out_ch
                if res in self.attn_resolutions:
                    self._add("enc", f"{r}_attn{i}", AttnBlock(in_ch, **self._attn_kw))
                hs_channels.append(in_ch)
            if level == len(self.resolutions) - 1:
                break
            r = res_name(self.resolutions[level + 1])
            if self.resblock_type == "ddpm":
                down = Downsample(in_ch, with_conv=resamp_with_conv, **self._resample_kw)
            else:
                down = self._block(in_ch, down=True)
            self._add("enc", f"{r}_down", down)
            if self.progressive_input == "input_skip":
                # Parameter-free, and not part of the original module list.
                pyramid_down = Downsample(pyramid_ch, **self._resample_kw)
                self._add("enc", f"{r}_pyramid_down", pyramid_down, original=False)
                self._add("enc", f"{r}_combine", Combine(pyramid_ch, in_ch, method=self.progressive_combine))
                if self.progressive_combine == "cat":
                    in_ch *= 2
            elif self.progressive_input == "residual":
                self._add("enc", f"{r}_pyramid_down",
                          Downsample(pyramid_ch, in_ch, with_conv=True, **self._resample_kw))
                pyramid_ch = in_ch
            hs_channels.append(in_ch)
        return hs_channels

    def _build_decoder(self, hs_channels: list[int], resamp_with_conv: bool, init_scale: float) -> None:
        nf = self.nf
        self.mid, self.dec = nn.ModuleDict(), nn.ModuleDict()
        in_ch = hs_channels[-1]
        self._add("mid", "block0", self._block(in_ch))
        self._add("mid", "attn", AttnBlock(in_ch, **self._attn_kw))
        self._add("mid", "block1", self._block(in_ch))
        pyramid_ch, top = 0, len(self.resolutions) - 1
        for level in reversed(range(len(self.resolutions))):
            res = self.resolutions[level]
            r = res_name(res)
            for i in range(self.num_res_blocks + 1):
                out_ch = nf * self.ch_mult[level]
                self._add("dec", f"{r}_block{i}", self._block(in_ch + hs_channels.pop(), out_ch))
                in_ch = out_ch
            if res in self.attn_resolutions:
                self._add("dec", f"{r}_attn", AttnBlock(in_ch, **self._attn_kw))
            if self.progressive != "none":
                if level != top and self.progressive == "output_skip":
                    pyramid_up = Upsample(pyramid_ch, **self._resample_kw)  # parameter-free, not in the list
                    self._add("dec", f"{r}_pyramid_up", pyramid_up, original=False)
                elif level != top:
                    self._add("dec", f"{r}_pyramid_up",
                              Upsample(pyramid_ch, in_ch, with_conv=True, **self._resample_kw))
                if self.progressive == "output_skip":
                    self._add("dec", f"{r}_pyramid_norm", group_norm(in_ch, None))
                    pyramid_conv = conv3x3(in_ch, self.out_channels, init_scale=init_scale)
                    self._add("dec", f"{r}_pyramid_conv", pyramid_conv)
                    pyramid_ch = self.out_channels
                elif level == top:  # 'residual': the pyramid starts from the coarsest decoder features
                    self._add("dec", f"{r}_pyramid_norm", group_norm(in_ch, None))
                    self._add("dec", f"{r}_pyramid_conv", conv3x3(in_ch, in_ch))
                    pyramid_ch = in_ch
                else:
                    pyramid_ch = in_ch
            if level != 0:
                r_up = res_name(self.resolutions[level - 1])
                if self.resblock_type == "ddpm":
                    up = Upsample(in_ch, with_conv=resamp_with_conv, **self._resample_kw)
                else:
                    up = self._block(in_ch, up=True)
                self._add("dec", f"{r_up}_up", up)
        if hs_channels:
            raise RuntimeError("internal error: unused skip connections")
        if self.progressive != "output_skip":
            self._add(None, "norm_out", group_norm(in_ch, None))
            self._add(None, "conv_out", conv3x3(in_ch, self.out_channels, init_scale=init_scale))

    # ---- forward -------------------------------------------------------------------------------------------

    def _embed(self, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None,
               augment_labels: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Time (+ class, + augmentation) embedding and the σ used by ``scale_by_sigma`` (None where not needed)."""
        if self.embedding_type == "fourier":
            used_sigmas = noise_labels
            temb = (self.fourier_proj(torch.log(noise_labels)) if self.fourier_log else
                    self.fourier_proj(noise_labels, scale_first=True))  # (EDM's rounding, module docstring)
        else:
            used_sigmas = self.sigmas[noise_labels.long()] if self.scale_by_sigma else None
            temb = None
            if self.conditional:
                weight_dtype = self.temb_dense0.weight.dtype
                # float32 as in the reference; float64 when the network itself is float64.
                emb_dtype = torch.float64 if weight_dtype == torch.float64 else torch.float32
                temb = get_timestep_embedding(noise_labels, self.noise_channels, dtype=emb_dtype).to(weight_dtype)
        if self.conditional:
            if self.label_embed is not None:
                temb = self.label_embed.add_to(temb, class_labels)
            temb = add_augment_labels(self, self.augment_embed, temb, augment_labels)
            temb = self.temb_dense1(self.act(self.temb_dense0(temb)))
        else:
            temb = None
        return temb, used_sigmas

    def _call_block(self, module: nn.Module, h: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """``module(h, temb)`` (``module(h)`` for resamplers and attention), checkpointed per ``self.checkpointing``."""
        args = (h,) if isinstance(module, (Upsample, Downsample, AttnBlock)) else (h, temb)
        return call_block(module, *args, checkpointing=self.checkpointing)

    def _skip_sum(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + b) / math.sqrt(2.0) if self.skip_rescale else a + b

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None, *,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Network output for ``x`` (B, in_channels, H, W) at noise levels / timesteps ``noise_labels`` (B,),
        classes ``class_labels`` (B,) (conditional networks only; None = null label) and augmentation labels
        ``augment_labels`` (B, augment_dim) (networks built with ``augment_dim > 0``); see the class docstring."""
        if self.label_embed is None:
            reject_class_labels(self, class_labels)
        if self.augment_embed is None and augment_labels is not None:
            add_augment_labels(self, None, x, augment_labels)  # the one error: built without augment_dim
        temb, used_sigmas = self._embed(noise_labels, class_labels, augment_labels)
        if not self.centered:
            x = 2 * x - 1.0  # data in [0, 1] -> [-1, 1]
        enc, dec = self.enc, self.dec
        input_pyramid = x if self.progressive_input != "none" else None

        hs = [self.conv_in(x)]
        for level, res in enumerate(self.resolutions):
            r = res_name(res)
            for i in range(self.num_res_blocks):
                h = self._call_block(enc[f"{r}_block{i}"], hs[-1], temb)
                if res in self.attn_resolutions:
                    h = self._call_block(enc[f"{r}_attn{i}"], h)
                hs.append(h)
            if level == len(self.resolutions) - 1:
                break
            r = res_name(self.resolutions[level + 1])
            h = self._call_block(enc[f"{r}_down"], hs[-1], temb)
            if self.progressive_input == "input_skip":
                input_pyramid = enc[f"{r}_pyramid_down"](input_pyramid)
                h = enc[f"{r}_combine"](input_pyramid, h)
            elif self.progressive_input == "residual":
                input_pyramid = self._skip_sum(enc[f"{r}_pyramid_down"](input_pyramid), h)
                h = input_pyramid
            hs.append(h)

        h = self._call_block(self.mid["block0"], hs[-1], temb)
        h = self._call_block(self.mid["attn"], h)
        h = self._call_block(self.mid["block1"], h, temb)

        pyramid, top = None, len(self.resolutions) - 1
        for level in reversed(range(len(self.resolutions))):
            res = self.resolutions[level]
            r = res_name(res)
            for i in range(self.num_res_blocks + 1):
                h = self._call_block(dec[f"{r}_block{i}"], torch.cat([h, hs.pop()], dim=1), temb)
            if res in self.attn_resolutions:
                h = self._call_block(dec[f"{r}_attn"], h)
            if self.progressive == "output_skip":
                pyramid_h = dec[f"{r}_pyramid_conv"](self.act(dec[f"{r}_pyramid_norm"](h)))
                pyramid = pyramid_h if level == top else dec[f"{r}_pyramid_up"](pyramid) + pyramid_h
            elif self.progressive == "residual":
                if level == top:
                    pyramid = dec[f"{r}_pyramid_conv"](self.act(dec[f"{r}_pyramid_norm"](h)))
                else:
                    pyramid = self._skip_sum(dec[f"{r}_pyramid_up"](pyramid), h)
                    h = pyramid
            if level != 0:
                h = self._call_block(dec[f"{res_name(self.resolutions[level - 1])}_up"], h, temb)

        if self.progressive == "output_skip":
            h = pyramid
        else:
            h = self.conv_out(self.act(self.norm_out(h)))
        if self.scale_by_sigma:
            # The reference divides by the float64 σ table for positional embeddings (float64 output); here
            # σ is cast to the output dtype so that the network keeps the dtype of its input.
            h = h / used_sigmas.to(h.dtype).reshape(-1, *([1] * (h.ndim - 1)))
        return h

    # ---- config -------------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg_model: Mapping[str, Any], cfg_data: Mapping[str, Any], *,
                    in_channels: int | None = None, out_channels: int | None = None) -> NCSNpp:
        """Build from the ``model`` and ``data`` sections of an original Score SDE config (as plain dicts).

        Unknown keys and unsupported values raise ``ValueError``; ``in_channels``/``out_channels`` override
        ``data.num_channels`` (e.g. for 6-channel conditional models).
        """
        model, data = dict(cfg_model), dict(cfg_data)
        if model.get("name", "ncsnpp") != "ncsnpp":
            raise ValueError(f"config model.name is {model['name']!r}, expected 'ncsnpp'")
        check_config_value(model, "normalization", ("GroupNorm",), "NCSN++ always uses GroupNorm")
        check_config_value(model, "attention_type", ("ddpm",), "the original has only DDPM attention")
        check_config_value(model, "conv_size", (3,), "the original NCSN++ always uses 3x3 convolutions")
        names = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "resamp_with_conv",
                 "conditional", "fir", "fir_kernel", "skip_rescale", "resblock_type", "progressive",
                 "progressive_input", "progressive_combine", "embedding_type", "fourier_scale", "init_scale",
                 "scale_by_sigma", "nonlinearity", "sigma_min", "sigma_max", "num_scales", "num_classes", "null_label",
                 "checkpointing", "augment_dim", "fourier_log", "noise_channels")
        known = set(names) | _IGNORED_MODEL_KEYS | {"normalization", "attention_type", "conv_size"}
        check_config_keys("model", model, known)
        check_config_keys("data", data, {"image_size", "num_channels", "centered"} | _IGNORED_DATA_KEYS)
        kwargs = {k: model[k] for k in names if k in model}
        kwargs = check_config_types("model", kwargs, cls)
        for key in ("ch_mult", "attn_resolutions", "fir_kernel"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        kwargs.update(class_options(model))
        in_channels = in_channels or data.get("num_channels", 3)
        return cls(image_size=data["image_size"], in_channels=in_channels,
                   out_channels=out_channels or in_channels, centered=data.get("centered", False), **kwargs)
