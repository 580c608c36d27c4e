"""The DDPM U-Net of Ho et al., "Denoising Diffusion Probabilistic Models" (NeurIPS 2020, appendix B), as the
``ddpm`` model of the Score SDE code (a PyTorch port of ``diffusion_tf/models/unet.py``).

``forward(x, noise_labels, class_labels=None)`` takes the (discrete or continuous) timestep as ``noise_labels``,
embedded sinusoidally. With ``num_classes > 0`` a :class:`~scoresde.nets.embeddings.ClassEmbedding` of ``class_labels``
is added to that embedding before the embedding MLP (EDM's ``label_dim`` design); with the default 0 (the original)
``class_labels`` must be None. With ``augment_dim > 0`` it also takes ``augment_labels`` (B, augment_dim), EDM's
augmentation labels, added the same way (:class:`~scoresde.nets.embeddings.AugmentEmbedding`).
Original checkpoints (``all_modules.<i>...`` keys) load with
:func:`scoresde.checkpoint.state_dict.load_original_state_dict`.
"""

from __future__ import annotations

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
    Downsample,
    ResnetBlockDDPM,
    Upsample,
    call_block,
    group_norm,
    res_name,
)
from scoresde.numerics.checks import check_flag

__all__ = ["DDPM"]

_IGNORED_MODEL_KEYS = frozenset({"name", "ema_rate", "beta_min", "beta_max", "embedding_type"})
# (data.category and data.tfrecords_path appear in the LSUN / CelebA-HQ / FFHQ configs.)
_IGNORED_DATA_KEYS = frozenset({"dataset", "random_flip", "uniform_dequantization", "channels", "category",
                                "tfrecords_path"})


class DDPM(OriginalCheckpointMixin, nn.Module):
    """DDPM U-Net (Ho et al. 2020; Score SDE ``models/ddpm.py``).

    ``forward(x, noise_labels, class_labels=None)``: ``x`` (B, in_channels, H, W), ``noise_labels`` (B,)
    timesteps (int or float). Output (B, out_channels, H, W); divided by ``sigmas[noise_labels]`` when
    ``scale_by_sigma`` (``noise_labels`` must then be integer indices into the σ table). With
    ``num_classes > 0`` (needs ``conditional=True``) ``class_labels`` (B,) selects the class (module
    ``label_embed``, conventions of :class:`~scoresde.nets.embeddings.ClassEmbedding`); with ``num_classes=0`` (the
    original) ``class_labels`` other than None raise ``ValueError``. ``augment_labels`` (B, ``augment_dim``): the
    augmentation labels of networks built with ``augment_dim > 0`` (module ``augment_embed``), a ``ValueError`` for
    the others.
    """

    # label_embed.weight and augment_embed.weight (class-conditional / augment_dim networks only) are our
    # extensions, exported under their own names
    _original_top_level = ("sigmas", "label_embed.weight", "augment_embed.weight")

    #: the ``model.name`` values that build this network
    config_names: ClassVar[tuple[str, ...]] = ("ddpm",)
    #: whether it takes ``class_labels`` (when built with ``num_classes > 0``); the one record of it, read by
    #: :data:`scoresde.nets.catalog.CONDITIONAL_NETWORKS`
    class_conditional: ClassVar[bool] = True

    def __init__(
        self,
        image_size: int,                            # Input resolution (square). CIFAR-10: 32.
        in_channels: int = 3,                       # Input channels (data.num_channels).
        out_channels: int | None = None,            # Output channels; None = in_channels.
        nf: int = 128,                              # Base channel count. DDPM CIFAR-10: 128.
        ch_mult: Sequence[int] = (1, 2, 2, 2),      # Channel multiplier per resolution. CIFAR-10: (1,2,2,2).
        num_res_blocks: int = 2,                    # Residual blocks per resolution. CIFAR-10: 2.
        attn_resolutions: Sequence[int] = (16,),    # Resolutions with self-attention. CIFAR-10: (16,).
        dropout: float = 0.1,                       # Dropout in residual blocks. CIFAR-10: 0.1.
        resamp_with_conv: bool = True,              # Conv in Upsample/Downsample. DDPM: True.
        conditional: bool = True,                   # Time conditioning (the original only supports True).
        centered: bool = True,                      # Input in [-1, 1]; False: apply 2x - 1 first. DDPM: True.
        scale_by_sigma: bool = False,               # Divide the output by sigmas[noise_labels]. DDPM: False.
        nonlinearity: str = "swish",                # 'swish', 'elu', 'relu' or 'lrelu'. DDPM: 'swish'.
        num_groups: int = 32,                       # GroupNorm groups (hard-coded 32 in the original).
        sigma_min: float = 0.01,                    # σ table (buffer 'sigmas', only used with
        sigma_max: float = 50.0,                    #   scale_by_sigma): geometric from sigma_max down
        num_scales: int = 1000,                     #   to sigma_min, num_scales entries.
        num_classes: int = 0,                       # Class-conditional with this many classes; 0: unconditional
                                                    #   (the original: no label parameters at all).
        null_label: str = "learned",                # Null label (-1/None): 'learned' row or 'zero' vector.
        decoder_attn_per_block: bool = False,       # Decoder attention after every block (Ho et al.'s TF code,
                                                    #   diffusers' AttnUpBlock2D) instead of once per resolution
                                                    #   (Score SDE's port, the original checkpoints: False).
        checkpointing: bool = False,                # Activation checkpointing per residual/attention block
                                                    #   (unet_blocks.call_block): less memory, ~1 more forward.
        augment_dim: int = 0,                       # Length of the augmentation labels (EDM's augment_dim: 9 with
                                                    #   its pipeline); 0: none (no parameter, as the original).
    ) -> None:
        super().__init__()
        #: recompute each block's activations in the backward pass (settable after construction)
        self.checkpointing = check_flag("checkpointing", checkpointing)
        num_levels = len(ch_mult)
        if image_size % 2 ** (num_levels - 1):
            raise ValueError(f"image_size {image_size} is not divisible by 2**(len(ch_mult)-1)")
        self.in_channels, self.out_channels = in_channels, out_channels or in_channels
        self.nf, self.ch_mult, self.num_res_blocks = nf, tuple(ch_mult), num_res_blocks
        self.resolutions = [image_size // 2**i for i in range(num_levels)]
        check_attn_resolutions(attn_resolutions, self.resolutions, image_size)
        self.attn_resolutions = tuple(attn_resolutions)
        self.conditional, self.centered, self.scale_by_sigma = conditional, centered, scale_by_sigma
        self.decoder_attn_per_block = bool(decoder_attn_per_block)
        self.act = get_activation(nonlinearity)
        self.register_buffer("sigmas", sigma_table(sigma_min, sigma_max, num_scales))
        self._original_order = []
        # Residual blocks get their Dense_0 even when unconditional (as NCSN++ does in the original).
        self._block_kw: dict[str, Any] = dict(act=self.act, temb_dim=4 * nf, dropout=dropout,
                                              num_groups=num_groups)
        self._num_groups = num_groups

        if conditional:
            self._add(None, "temb_dense0", dense(nf, 4 * nf))
            self._add(None, "temb_dense1", dense(4 * nf, 4 * nf))
        hs_channels = self._build_encoder(resamp_with_conv)
        self._build_decoder(hs_channels, resamp_with_conv)
        # Last, so that the other weights draw the same random numbers as the unconditional network's.
        self.label_embed: ClassEmbedding | None = build_class_embedding(self, num_classes, nf, null_label,
                                                                        time_conditional=conditional)
        self.num_classes = num_classes  # 0: class-unconditional
        # After the class embedding, for the same reason.
        self.augment_embed: AugmentEmbedding | None = build_augment_embedding(self, augment_dim, nf,
                                                                             time_conditional=conditional)
        self.augment_dim = augment_dim  # 0: no augmentation labels

    def _add(self, where: str | None, name: str, module: nn.Module) -> None:
        """Register ``module`` as ``self.<name>`` or ``self.<where>[name]``; record the original order."""
        if where is None:
            self.add_module(name, module)
        else:
            getattr(self, where)[name] = module
        self._original_order.append(name if where is None else f"{where}.{name}")

    def _attn(self, channels: int) -> AttnBlock:
        return AttnBlock(channels, num_groups=self._num_groups, skip_rescale=False, init_scale=0.0)

    def _build_encoder(self, resamp_with_conv: bool) -> list[int]:
        nf = self.nf
        self.enc = nn.ModuleDict()
        self._add(None, "conv_in", conv3x3(self.in_channels, nf))
        hs_channels, in_ch = [nf], nf
        for level, res in enumerate(self.resolutions):
            r = res_name(res)
            for i in range(self.num_res_blocks):
                out_ch = nf * self.ch_mult[level]
                block = ResnetBlockDDPM(in_ch=in_ch, out_ch=out_ch, **self._block_kw)
                self._add("enc", f"{r}_block{i}", block)
                in_ch = out_ch
                if res in self.attn_resolutions:
                    self._add("enc", f"{r}_attn{i}", self._attn(in_ch))
                hs_channels.append(in_ch)
            if level != len(self.resolutions) - 1:
                r_down = res_name(self.resolutions[level + 1])
                self._add("enc", f"{r_down}_down", Downsample(in_ch, with_conv=resamp_with_conv))
                hs_channels.append(in_ch)
        return hs_channels

    def _build_decoder(self, hs_channels: list[int], resamp_with_conv: bool) -> None:
        nf = self.nf
        self.mid, self.dec = nn.ModuleDict(), nn.ModuleDict()
        in_ch = hs_channels[-1]
        self._add("mid", "block0", ResnetBlockDDPM(in_ch=in_ch, **self._block_kw))
        self._add("mid", "attn", self._attn(in_ch))
        self._add("mid", "block1", ResnetBlockDDPM(in_ch=in_ch, **self._block_kw))
        for level in reversed(range(len(self.resolutions))):
            res = self.resolutions[level]
            r = res_name(res)
            for i in range(self.num_res_blocks + 1):
                out_ch = nf * self.ch_mult[level]
                block = ResnetBlockDDPM(in_ch=in_ch + hs_channels.pop(), out_ch=out_ch, **self._block_kw)
                self._add("dec", f"{r}_block{i}", block)
                in_ch = out_ch
                if res in self.attn_resolutions and self.decoder_attn_per_block:
                    self._add("dec", f"{r}_attn{i}", self._attn(in_ch))
            if res in self.attn_resolutions and not self.decoder_attn_per_block:
                self._add("dec", f"{r}_attn", self._attn(in_ch))
            if level != 0:
                r_up = res_name(self.resolutions[level - 1])
                self._add("dec", f"{r_up}_up", Upsample(in_ch, with_conv=resamp_with_conv))
        if hs_channels:
            raise RuntimeError("internal error: unused skip connections")
        self._add(None, "norm_out", group_norm(in_ch, self._num_groups))
        self._add(None, "conv_out", conv3x3(in_ch, self.out_channels, init_scale=0.0))

    def _run(self, module: nn.Module, *args: torch.Tensor | None) -> torch.Tensor:
        """``module(*args)``, checkpointed per ``self.checkpointing``
        (:func:`~scoresde.nets.unet_blocks.call_block`)."""
        return call_block(module, *args, checkpointing=self.checkpointing)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None, *,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Network output for ``x`` (B, in_channels, H, W) at timesteps ``noise_labels`` (B,), classes
        ``class_labels`` (B,) (conditional networks only; None = null label) and augmentation labels
        ``augment_labels`` (B, augment_dim) (networks built with ``augment_dim > 0``); see the class docstring."""
        if self.label_embed is None:
            reject_class_labels(self, class_labels)
        if self.augment_embed is None and augment_labels is not None:
            add_augment_labels(self, None, x, augment_labels)  # the one error: built without augment_dim
        temb = None
        if self.conditional:
            weight_dtype = self.temb_dense0.weight.dtype
            # float32 as in the reference; float64 when the network itself is float64.
            emb_dtype = torch.float64 if weight_dtype == torch.float64 else torch.float32
            temb = get_timestep_embedding(noise_labels, self.nf, dtype=emb_dtype).to(weight_dtype)
            if self.label_embed is not None:
                temb = self.label_embed.add_to(temb, class_labels)
            temb = add_augment_labels(self, self.augment_embed, temb, augment_labels)
            temb = self.temb_dense1(self.act(self.temb_dense0(temb)))
        h = x if self.centered else 2 * x - 1.0

        hs = [self.conv_in(h)]
        for level, res in enumerate(self.resolutions):
            r = res_name(res)
            for i in range(self.num_res_blocks):
                h = self._run(self.enc[f"{r}_block{i}"], hs[-1], temb)
                if res in self.attn_resolutions:
                    h = self._run(self.enc[f"{r}_attn{i}"], h)
                hs.append(h)
            if level != len(self.resolutions) - 1:
                hs.append(self.enc[f"{res_name(self.resolutions[level + 1])}_down"](hs[-1]))

        h = self._run(self.mid["block0"], hs[-1], temb)
        h = self._run(self.mid["attn"], h)
        h = self._run(self.mid["block1"], h, temb)

        for level in reversed(range(len(self.resolutions))):
            res = self.resolutions[level]
            r = res_name(res)
            for i in range(self.num_res_blocks + 1):
                h = self._run(self.dec[f"{r}_block{i}"], torch.cat([h, hs.pop()], dim=1), temb)
                if res in self.attn_resolutions and self.decoder_attn_per_block:
                    h = self._run(self.dec[f"{r}_attn{i}"], h)
            if res in self.attn_resolutions and not self.decoder_attn_per_block:
                h = self._run(self.dec[f"{r}_attn"], h)
            if level != 0:
                h = self.dec[f"{res_name(self.resolutions[level - 1])}_up"](h)

        h = self.conv_out(self.act(self.norm_out(h)))
        if self.scale_by_sigma:
            # σ cast to the output dtype (the reference would return float64 here).
            h = h / self.sigmas[noise_labels].to(h.dtype)[:, None, None, None]
        return h

    @classmethod
    def from_config(cls, cfg_model: Mapping[str, Any], cfg_data: Mapping[str, Any], *,
                    in_channels: int | None = None, out_channels: int | None = None) -> DDPM:
        """Build from the ``model`` and ``data`` sections of an original Score SDE config (as plain dicts).

        ``model.embedding_type`` is ignored (DDPM always uses sinusoidal embeddings); unknown keys and
        unsupported values raise ``ValueError``.
        """
        model, data = dict(cfg_model), dict(cfg_data)
        if model.get("name", "ddpm") != "ddpm":
            raise ValueError(f"config model.name is {model['name']!r}, expected 'ddpm'")
        check_config_value(model, "normalization", ("GroupNorm",), "DDPM always uses GroupNorm")
        check_config_value(model, "conv_size", (3,), "the original DDPM always uses 3x3 convolutions")
        names = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "resamp_with_conv",
                 "conditional", "scale_by_sigma", "nonlinearity", "sigma_min", "sigma_max", "num_scales", "num_classes",
                 "null_label", "decoder_attn_per_block", "checkpointing", "num_groups", "augment_dim")
        check_config_keys("model", model, set(names) | _IGNORED_MODEL_KEYS | {"normalization", "conv_size"})
        check_config_keys("data", data, {"image_size", "num_channels", "centered"} | _IGNORED_DATA_KEYS)
        kwargs = {k: model[k] for k in names if k in model}
        kwargs = check_config_types("model", kwargs, cls)
        for key in ("ch_mult", "attn_resolutions"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        kwargs.update(class_options(model))
        in_channels = in_channels or data.get("num_channels", 3)
        return cls(image_size=data["image_size"], in_channels=in_channels,
                   out_channels=out_channels or in_channels, centered=data.get("centered", False), **kwargs)
