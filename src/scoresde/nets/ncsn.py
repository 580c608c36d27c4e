"""NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020): RefineNet score networks for SMLD / the VE SDE.

Both networks take ``forward(x, noise_labels, class_labels=None)`` with ``noise_labels`` the integer noise index,
index 0 being the *largest* sigma (the order of ``sigmas = exp(linspace(log sigma_max, log sigma_min,
num_scales))``); neither has class conditioning, so ``class_labels`` must be None.

* :class:`NCSN` (config name ``ncsn``) is conditioned through the embeddings of its conditional InstanceNorm++
  layers (one row per noise level) and returns the raw network output (no division by sigma).
* :class:`NCSNv2` (config names ``ncsnv2_64``, ``ncsnv2_128``, ``ncsnv2_256``) is unconditional in its body
  and returns ``output / sigmas[noise_labels]`` (Song & Ermon 2020, technique 3). ``sigmas`` is a **float64**
  buffer, so, as in the original, the output is float64 whatever the network dtype; pass
  ``keep_input_dtype=True`` to get it back in the dtype of ``x`` (the division is still done in float64, then
  rounded once).

The computation is that of the Score SDE PyTorch code (``models/ncsnv2.py`` at cb1f359) with the patches the
reference fixtures use (``../shared/reference/README.md`` §6): SAME padding for the dilated convolutions (the
dilated "down" stages keep the resolution), NCSN v1 with *conditional* InstanceNorm++ (``num_classes =
num_scales``), and the image channel count as an argument (the config's ``data.channels``). State-dict keys
are the original ones; :func:`load_original_state_dict` loads a checkpoint's ``'model'`` entry and
:func:`load_original_ema` its ``'ema'`` entry.

Example::

    net = ncsn_from_config(config["model"], config["data"])
    load_original_state_dict(net, checkpoint["model"])
    score = net.eval()(x, noise_labels)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..numerics.checks import check_choice
from .activations import get_activation
from .embeddings import reject_class_labels
from .ncsn_blocks import (
    ConditionalInstanceNorm2dPlus,
    InstanceNorm2dPlus,
    NormFactory,
    RefineBlock,
    ResidualBlock,
    VarianceNorm2d,
)

__all__ = [
    "NCSN",
    "NCSNV2_VARIANTS",
    "NCSN_NORMALIZATIONS",
    "NCSN_V2_NORMALIZATIONS",
    "NCSNv2",
    "ncsn_from_config",
]


class _Stage(NamedTuple):
    """One encoder stage (two residual blocks) and the RefineNet block that decodes it."""

    res: str  # attribute name of the residual stage in the original code
    refine: str  # attribute name of the matching RefineNet block
    mult: int  # channel multiplier: the stage outputs mult * nf channels
    down: bool  # the original's resample='down' on the first block (no-op on the resolution if dilated)
    dilation: int


# Layouts of the original networks, shallowest stage first. Only undilated "down" stages halve the resolution.
_LAYOUTS: dict[str, tuple[_Stage, ...]] = {
    "ncsnv2_64": (
        _Stage("res1", "refine4", 1, False, 1),
        _Stage("res2", "refine3", 2, True, 1),
        _Stage("res3", "refine2", 2, True, 2),
        _Stage("res4", "refine1", 2, True, 4),
    ),
    "ncsnv2_128": (
        _Stage("res1", "refine5", 1, False, 1),
        _Stage("res2", "refine4", 2, True, 1),
        _Stage("res3", "refine3", 2, True, 1),
        _Stage("res4", "refine2", 4, True, 2),
        _Stage("res5", "refine1", 4, True, 4),
    ),
    "ncsnv2_256": (
        _Stage("res1", "refine5", 1, False, 1),
        _Stage("res2", "refine4", 2, True, 1),
        _Stage("res3", "refine3", 2, True, 1),
        _Stage("res31", "refine31", 2, True, 1),
        _Stage("res4", "refine2", 4, True, 2),
        _Stage("res5", "refine1", 4, True, 4),
    ),
}

NCSNV2_VARIANTS = tuple(_LAYOUTS)
"""Architectures of :class:`NCSNv2` (original ``model.name`` values); NCSN v1 has the ``ncsnv2_64`` layout."""

NCSN_NORMALIZATIONS = ("InstanceNorm++",)
"""``model.normalization`` values of :class:`NCSN` (conditional InstanceNorm++ only, as in the original)."""

NCSN_V2_NORMALIZATIONS = ("InstanceNorm++", "InstanceNorm", "VarianceNorm")
"""``model.normalization`` values of :class:`NCSNv2` (the original's ``GroupNorm`` option cannot be built)."""


def _downsampling_factor(stages: Iterable[_Stage]) -> int:
    return 2 ** sum(1 for s in stages if s.down and s.dilation == 1)


def _geometric_sigmas(sigma_min: float, sigma_max: float, num_scales: int) -> Tensor:
    """``exp(linspace(log sigma_max, log sigma_min, num_scales))`` in float64, largest first (as numpy
    computes it in the original, so that the buffer equals a checkpoint's bit for bit)."""
    values = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_scales))
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))


class _RefineNetScoreNet(nn.Module):
    """The shared RefineNet body of NCSN and NCSNv2 (Song & Ermon 2019, appendix A.1): ``begin_conv``,
    residual stages ``res*``, RefineNet blocks ``refine*``, then ``normalizer`` -> act -> ``end_conv``."""

    def __init__(
        self,
        *,
        layout: str,
        in_channels: int,
        out_channels: int,
        nf: int,
        nonlinearity: str,
        centered: bool,
        conditional: bool,
        block_norm: NormFactory,
        refine_norm: NormFactory | None,
        final_norm: NormFactory,
        pool: str,
    ) -> None:
        super().__init__()
        check_choice("NCSN layout", layout, NCSNV2_VARIANTS)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("nf", nf)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.centered = bool(centered)
        self.conditional = conditional
        self.stages = _LAYOUTS[layout]
        self.act = act = get_activation(nonlinearity)

        # Creation/registration order of the original: begin_conv, normalizer, end_conv, res*, refine* (in
        # sorted name order, also the original's order for ncsnv2_256). This fixes net.parameters()' order.
        self.begin_conv = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.normalizer = final_norm(nf)
        self.end_conv = nn.Conv2d(nf, out_channels, 3, padding=1)
        channels = [s.mult * nf for s in self.stages]
        prev = nf
        for stage, ch in zip(self.stages, channels, strict=True):
            blocks = [
                ResidualBlock(prev, ch, act=act, make_norm=block_norm, conditional=conditional,
                              downsample=stage.down, dilation=stage.dilation),
                ResidualBlock(ch, ch, act=act, make_norm=block_norm, conditional=conditional,
                              dilation=stage.dilation),
            ]
            self.add_module(stage.res, nn.ModuleList(blocks))
            prev = ch
        order = sorted(range(len(self.stages)), key=lambda i: self.stages[i].refine)
        for i in order:
            deepest = i == len(self.stages) - 1
            ch = channels[i]
            block = RefineBlock(
                [ch] if deepest else [ch, ch], channels[i - 1] if i > 0 else nf, act,
                start=deepest, end=i == 0, make_norm=refine_norm, pool=pool,
            )
            self.add_module(self.stages[i].refine, block)

    @property
    def downsampling_factor(self) -> int:
        """Total resolution reduction of the encoder: inputs need a height and width divisible by it."""
        return _downsampling_factor(self.stages)

    def _norm(self, norm: nn.Module, h: Tensor, y: Tensor) -> Tensor:
        return norm(h, y) if self.conditional else norm(h)

    def _body(self, x: Tensor, noise_labels: Tensor) -> Tensor:
        h = x if self.centered else 2 * x - 1.0
        h = self.begin_conv(h)
        features = []
        for stage in self.stages:
            for block in self.get_submodule(stage.res):
                h = block(h, noise_labels)
            features.append(h)
        ref: Tensor | None = None
        for stage, feat in zip(reversed(self.stages), reversed(features), strict=True):
            inputs = [feat] if ref is None else [feat, ref]
            ref = self.get_submodule(stage.refine)(inputs, noise_labels, feat.shape[2:])
        assert ref is not None
        h = self.act(self._norm(self.normalizer, ref, noise_labels))
        return self.end_conv(h)


class NCSN(_RefineNetScoreNet):
    """NCSN, the noise-conditional RefineNet of Song & Ermon (2019) (config name ``ncsn``; appendix A.1).

    Conditional InstanceNorm++ (eq. 9) everywhere, average pooling in the CRP blocks, ELU by default. The
    noise level enters only through the normalisation embeddings (``embed.weight`` of shape ``(num_scales,
    3C)``); the output is *not* divided by sigma, so the model has no ``sigmas`` buffer.

    Args:
        in_channels: image channels (the config's ``data.channels``).
        nf: base width (``model.nf``).
        num_scales: number of noise levels = rows of every embedding (``model.num_scales``).
        nonlinearity: ``elu`` | ``relu`` | ``lrelu`` | ``swish`` (``model.nonlinearity``).
        normalization: only ``InstanceNorm++`` (``model.normalization``).
        centered: ``data.centered``; if False the network first maps ``x`` in [0, 1] to ``2x - 1``.
        out_channels: output channels, default ``in_channels``.
    """

    #: the ``model.name`` values that build this network
    config_names: ClassVar[tuple[str, ...]] = ("ncsn",)
    #: whether it takes ``class_labels`` (when built with ``num_classes > 0``); the one record of it, read by
    #: :data:`scoresde.nets.catalog.CONDITIONAL_NETWORKS`
    class_conditional: ClassVar[bool] = False

    def __init__(
        self,
        in_channels: int = 3,
        nf: int = 128,
        num_scales: int = 10,
        nonlinearity: str = "elu",
        normalization: str = "InstanceNorm++",
        centered: bool = False,
        out_channels: int | None = None,
    ) -> None:
        check_choice("NCSN normalization", normalization, NCSN_NORMALIZATIONS)
        if not isinstance(num_scales, int) or isinstance(num_scales, bool) or num_scales < 1:
            raise ValueError(f"num_scales must be a positive integer, got {num_scales!r}")

        def cond_norm(c: int) -> nn.Module:
            return ConditionalInstanceNorm2dPlus(c, num_scales)

        super().__init__(
            layout="ncsnv2_64", in_channels=in_channels,
            out_channels=in_channels if out_channels is None else out_channels, nf=nf,
            nonlinearity=nonlinearity, centered=centered, conditional=True, block_norm=cond_norm,
            refine_norm=cond_norm, final_norm=cond_norm, pool="avg",
        )
        self.num_scales = num_scales

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """Score estimate ``s(x, sigma_i)`` for integer noise indices ``noise_labels`` (``i``) of shape ``(B,)``.

        ``class_labels`` must be None (no class conditioning)."""
        reject_class_labels(self, class_labels)
        return self._body(x, noise_labels)

    @classmethod
    def from_config(cls, cfg_model: Mapping[str, Any], cfg_data: Mapping[str, Any]) -> NCSN:
        """Build from the ``model`` and ``data`` sections of a Score SDE config (``configs/ve/ncsn/*.py``)."""
        _check_name(cfg_model, ("ncsn",))
        common = _common_config(cfg_model, cfg_data, "ncsnv2_64")
        return cls(num_scales=int(_require(cfg_model, "num_scales", "model")), **common)


class NCSNv2(_RefineNetScoreNet):
    """NCSNv2, the RefineNet score model of Song & Ermon (2020) (config names ``ncsnv2_64/128/256``).

    Unconditional InstanceNorm++ in the residual blocks, no normalisation and max pooling in the RefineNet
    blocks, and the noise conditioning of technique 3: ``s(x, sigma_i) = net(x) / sigma_i`` with ``sigma_i =
    sigmas[noise_labels]``. ``sigmas`` is a float64 buffer (as in the original), so the output is **float64** unless
    ``keep_input_dtype=True``. Note that ``net.float()``/``net.half()`` would also cast that buffer.

    ``variant`` picks the original layout: ``ncsnv2_64`` (CIFAR-10, CelebA 64; encoder stride 2),
    ``ncsnv2_128`` (LSUN 128; stride 4), ``ncsnv2_256`` (stride 8).

    Args:
        variant: one of :data:`NCSNV2_VARIANTS`.
        in_channels: image channels (the config's ``data.channels``).
        nf: base width (``model.nf``).
        num_scales, sigma_min, sigma_max: the geometric noise schedule (``model.*``).
        nonlinearity: ``elu`` | ``relu`` | ``lrelu`` | ``swish`` (``model.nonlinearity``).
        normalization: ``InstanceNorm++`` (all shipped configs), ``InstanceNorm`` or ``VarianceNorm``. With
            ``InstanceNorm`` the final ``normalizer`` uses ``eps=num_scales``: the original passes
            ``num_scales`` positionally to ``torch.nn.InstanceNorm2d``, whose second argument is ``eps``; this
            is reproduced.
        centered: ``data.centered``; if False the network first maps ``x`` in [0, 1] to ``2x - 1``.
        out_channels: output channels, default ``in_channels``.
        keep_input_dtype: return the output in ``x.dtype`` instead of float64.
    """

    #: the ``model.name`` values that build this network
    config_names: ClassVar[tuple[str, ...]] = NCSNV2_VARIANTS
    #: whether it takes ``class_labels`` (when built with ``num_classes > 0``); the one record of it, read by
    #: :data:`scoresde.nets.catalog.CONDITIONAL_NETWORKS`
    class_conditional: ClassVar[bool] = False

    def __init__(
        self,
        variant: str = "ncsnv2_64",
        in_channels: int = 3,
        nf: int = 128,
        num_scales: int = 232,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        nonlinearity: str = "elu",
        normalization: str = "InstanceNorm++",
        centered: bool = False,
        out_channels: int | None = None,
        keep_input_dtype: bool = False,
    ) -> None:
        check_choice("NCSNv2 variant", variant, NCSNV2_VARIANTS)
        if not isinstance(num_scales, int) or isinstance(num_scales, bool) or num_scales < 1:
            raise ValueError(f"num_scales must be a positive integer, got {num_scales!r}")
        if not 0 < sigma_min <= sigma_max:
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min!r}, {sigma_max!r}")
        block_norm, final_norm = _unconditional_norms(normalization, num_scales)
        super().__init__(
            layout=variant, in_channels=in_channels,
            out_channels=in_channels if out_channels is None else out_channels, nf=nf,
            nonlinearity=nonlinearity, centered=centered, conditional=False, block_norm=block_norm,
            refine_norm=None, final_norm=final_norm, pool="max",
        )
        self.variant = variant
        self.num_scales = num_scales
        self.keep_input_dtype = bool(keep_input_dtype)
        self.register_buffer("sigmas", _geometric_sigmas(sigma_min, sigma_max, num_scales))

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """Score estimate ``net(x) / sigmas[noise_labels]`` for integer noise indices ``noise_labels``, shape
        ``(B,)``. ``class_labels`` must be None (no class conditioning)."""
        reject_class_labels(self, class_labels)
        h = self._body(x, noise_labels)
        used_sigmas = self.sigmas[noise_labels].view(x.shape[0], *([1] * (x.dim() - 1)))
        out = h / used_sigmas
        return out.to(x.dtype) if self.keep_input_dtype else out

    @classmethod
    def from_config(
        cls, cfg_model: Mapping[str, Any], cfg_data: Mapping[str, Any], *, keep_input_dtype: bool = False
    ) -> NCSNv2:
        """Build from the ``model`` and ``data`` sections of a Score SDE config (``configs/ve/ncsnv2/*.py``).

        ``model.scale_by_sigma`` is ignored, as in the original: NCSNv2 always divides by sigma.
        """
        variant = _check_name(cfg_model, NCSNV2_VARIANTS)
        common = _common_config(cfg_model, cfg_data, variant)
        return cls(
            variant=variant,
            num_scales=int(_require(cfg_model, "num_scales", "model")),
            sigma_min=float(_require(cfg_model, "sigma_min", "model")),
            sigma_max=float(_require(cfg_model, "sigma_max", "model")),
            keep_input_dtype=keep_input_dtype,
            **common,
        )


def _unconditional_norms(normalization: str, num_scales: int) -> tuple[NormFactory, NormFactory]:
    """Factories of the residual-block norms and of the final ``normalizer`` of NCSNv2."""
    if normalization == "InstanceNorm++":
        return InstanceNorm2dPlus, InstanceNorm2dPlus
    if normalization == "InstanceNorm":
        return nn.InstanceNorm2d, lambda c: nn.InstanceNorm2d(c, eps=float(num_scales))
    if normalization == "VarianceNorm":
        return VarianceNorm2d, VarianceNorm2d
    check_choice("NCSNv2 normalization", normalization, NCSN_V2_NORMALIZATIONS)
    raise AssertionError(f"normalization {normalization!r} is listed but has no layers")


# ----------------------------------------------------------------------------------------------------------
# Config mapping.
# ------------------------------------------------------------------------------------------------------------
def _require(cfg: Mapping[str, Any], key: str, section: str) -> Any:
    if key not in cfg:
        raise KeyError(f"config section '{section}' lacks the key {key!r}")
    return cfg[key]


def _check_name(cfg_model: Mapping[str, Any], allowed: tuple[str, ...]) -> str:
    return check_choice("model.name", _require(cfg_model, "name", "model"), allowed)


def _common_config(cfg_model: Mapping[str, Any], cfg_data: Mapping[str, Any], layout: str) -> dict[str, Any]:
    """Constructor arguments shared by NCSN and NCSNv2, with the checks the original leaves to a crash."""
    if cfg_data.get("channels") is not None:  # a typed config holds channels = None when unset
        channels = int(cfg_data["channels"])
        if "num_channels" in cfg_data and int(cfg_data["num_channels"]) != channels:
            raise ValueError(
                f"data.channels={cfg_data['channels']!r} and "
                f"data.num_channels={cfg_data['num_channels']!r} differ"
            )
    elif "num_channels" in cfg_data:
        # The shipped configs have only data.num_channels, while models/ncsnv2.py reads data.channels.
        channels = int(cfg_data["num_channels"])
    else:
        raise KeyError("config section 'data' lacks both 'channels' and 'num_channels'")
    check_choice("model.interpolation", cfg_model.get("interpolation", "bilinear"), ("bilinear",))
    image_size = cfg_data.get("image_size")
    factor = _downsampling_factor(_LAYOUTS[layout])
    if image_size is not None and int(image_size) % factor:
        raise ValueError(
            f"data.image_size={image_size!r} must be divisible by {factor} for {cfg_model['name']}"
        )
    return {
        "in_channels": channels,
        "nf": int(_require(cfg_model, "nf", "model")),
        "nonlinearity": str(_require(cfg_model, "nonlinearity", "model")),
        "normalization": str(_require(cfg_model, "normalization", "model")),
        "centered": bool(_require(cfg_data, "centered", "data")),
    }


def ncsn_from_config(
    cfg_model: Mapping[str, Any], cfg_data: Mapping[str, Any], *, keep_input_dtype: bool = False
) -> NCSN | NCSNv2:
    """:class:`NCSN` or :class:`NCSNv2` from a Score SDE config's ``model``/``data`` sections (by name).

    ``keep_input_dtype`` applies to NCSNv2 only (see :class:`NCSNv2`).
    """
    name = _require(cfg_model, "name", "model")
    if name == "ncsn":
        return NCSN.from_config(cfg_model, cfg_data)
    if name in NCSNV2_VARIANTS:
        return NCSNv2.from_config(cfg_model, cfg_data, keep_input_dtype=keep_input_dtype)
    check_choice("NCSN model.name", name, ("ncsn", *NCSNV2_VARIANTS))
    raise AssertionError(f"model.name {name!r} is listed but has no network")


