"""The key map between a diffusers ``UNet2DModel`` state dict and a scoresde DDPM / NCSN++ network.

:func:`diffusers_key_map` pairs every diffusers key with our key and the tensor transform between the two layouts
(NIN weights are transposed ``nn.Linear``/1x1 convolutions; ``flip_sin_to_cos`` swaps the embedding's halves), and
records the GroupNorm group counts diffusers uses, which :func:`check_groups` compares with ours. :func:`map_into`
applies the map to a diffusers state dict with a strict key and shape check (used for loading); exporting reads the
map the other way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import IncompatibleCheckpointError
from ..state_dict import KeyReport
from .translate import SKIP_ATTENTION_GROUPS, unet_field, unet_layout

__all__ = ["KeyMap", "check_groups", "diffusers_key_map", "map_into"]

#: attention parameter names of old diffusers checkpoints -> current ones
_DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}

#: how a tensor changes between the two layouts: ``(theirs -> ours, ours -> theirs)``
_Transform = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]


def _same() -> _Transform:
    return (lambda t: t, lambda t: t)


def _linear_to_nin() -> _Transform:
    # nn.Linear / 1x1 Conv2d weight (out, in[, 1, 1]) <-> NIN's W (in, out)
    return (lambda t: t.reshape(t.shape[0], t.shape[1]).t().contiguous(), lambda t: t.t().contiguous())


def _conv1x1_to_nin() -> _Transform:
    return (lambda t: t[:, :, 0, 0].t().contiguous(), lambda t: t.t().contiguous()[:, :, None, None])


def _flip_halves(dim: int) -> _Transform:
    # [cos, sin] embedding columns (flip_sin_to_cos) <-> scoresde's [sin, cos]
    def flip(t: Tensor) -> Tensor:
        return torch.cat([t[:, dim // 2:], t[:, :dim // 2]], dim=1)

    return (flip, flip)


class KeyMap:
    """``{diffusers key: (scoresde key, transform)}`` plus the GroupNorm group counts diffusers uses."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, _Transform]] = {}
        self.groups: dict[str, int] = {}  # our GroupNorm module name -> diffusers' num_groups

    def add(self, theirs: str, ours: str, transform: _Transform | None = None) -> None:
        self.entries[theirs] = (ours, transform or _same())

    def module(self, theirs: str, ours: str, names: Sequence[tuple[str, str]]) -> None:
        """Map the weight and bias of each ``(their sub, our sub)`` child (``''`` for the module itself)."""
        for t_sub, o_sub in names:
            t_prefix = f"{theirs}.{t_sub}" if t_sub else theirs
            o_prefix = f"{ours}.{o_sub}" if o_sub else ours
            self.add(f"{t_prefix}.weight", f"{o_prefix}.weight")
            self.add(f"{t_prefix}.bias", f"{o_prefix}.bias")

    def norm(self, theirs: str, ours: str, groups: int) -> None:
        self.module(theirs, ours, [("", "")])
        self.groups[ours] = groups

    def resnet(self, theirs: str, ours: str, block: nn.Module, groups: tuple[int, int]) -> None:
        """A diffusers ``ResnetBlock2D`` <-> our ``ResnetBlockDDPM``/``ResnetBlockBigGAN``."""
        self.norm(f"{theirs}.norm1", f"{ours}.GroupNorm_0", groups[0])
        self.norm(f"{theirs}.norm2", f"{ours}.GroupNorm_1", groups[1])
        self.module(theirs, ours, [("conv1", "Conv_0"), ("time_emb_proj", "Dense_0"), ("conv2", "Conv_1")])
        if hasattr(block, "NIN_0"):
            self.add(f"{theirs}.conv_shortcut.weight", f"{ours}.NIN_0.W", _conv1x1_to_nin())
            self.add(f"{theirs}.conv_shortcut.bias", f"{ours}.NIN_0.b")
        elif hasattr(block, "Conv_2"):
            self.module(theirs, ours, [("conv_shortcut", "Conv_2")])

    def attention(self, theirs: str, ours: str, groups: int) -> None:
        """A diffusers ``Attention`` (single head) <-> our ``AttnBlock`` (NIN_0..3 = q, k, v, out)."""
        self.norm(f"{theirs}.group_norm", f"{ours}.GroupNorm_0", groups)
        for t_sub, o_sub in (("to_q", "NIN_0"), ("to_k", "NIN_1"), ("to_v", "NIN_2"), ("to_out.0", "NIN_3")):
            self.add(f"{theirs}.{t_sub}.weight", f"{ours}.{o_sub}.W", _linear_to_nin())
            self.add(f"{theirs}.{t_sub}.bias", f"{ours}.{o_sub}.b")


def _gn(channels: int) -> int:
    return min(channels // 4, 32)


def diffusers_key_map(net: nn.Module, unet_config: Mapping[str, Any]) -> KeyMap:
    """The map between a diffusers ``UNet2DModel`` state dict with ``unet_config`` and ``net`` (a
    :class:`~scoresde.nets.DDPM` or :class:`~scoresde.nets.NCSNpp` built from :func:`diffusers_config`), with the
    GroupNorm group counts diffusers uses (checked against ``net``'s by the loader and the exporter)."""
    layout = unet_layout(unet_config)
    km = KeyMap()
    nf, ch_mult = net.nf, net.ch_mult
    levels, R = len(ch_mult), net.num_res_blocks
    res = net.resolutions
    ddpm = layout == "ddpm"
    # DDPM layout: norm_num_groups groups in every block; NCSN++ layout: min(C // 4, 32) as ours, except where noted
    fixed = int(unet_field(unet_config, "norm_num_groups")) if ddpm else None

    def groups(c: int) -> int:
        return fixed or _gn(c)

    def resample(theirs: str, ddpm_name: str, skip_name: str, ours: str, channels: int) -> None:
        """A resampling step: DDPM's strided / nearest-neighbour convolution, or NCSN++'s BigGAN FIR block."""
        if ddpm:
            km.module(f"{theirs}.{ddpm_name}.0.conv", f"{ours}.Conv_0", [("", "")])
        else:
            km.resnet(f"{theirs}.{skip_name}", ours, net.get_submodule(ours), (groups(channels), groups(channels)))

    if not ddpm and net.embedding_type == "fourier":
        km.add("time_proj.weight", "fourier_proj.W")
    emb_in = 2 * nf if not ddpm and net.embedding_type == "fourier" else nf
    flip = (not (not ddpm and net.embedding_type == "fourier")) and bool(unet_field(unet_config, "flip_sin_to_cos"))
    km.add("time_embedding.linear_1.weight", "temb_dense0.weight", _flip_halves(emb_in) if flip else None)
    km.add("time_embedding.linear_1.bias", "temb_dense0.bias")
    km.module("time_embedding.linear_2", "temb_dense1", [("", "")])
    km.module("conv_in", "conv_in", [("", "")])
    in_ch = nf
    for level in range(levels):
        r, out_ch = f"{res[level]}x{res[level]}", nf * ch_mult[level]
        for i in range(R):
            km.resnet(f"down_blocks.{level}.resnets.{i}", f"enc.{r}_block{i}", net.enc[f"{r}_block{i}"],
                      (groups(in_ch), groups(out_ch)))
            in_ch = out_ch
            if res[level] in net.attn_resolutions:
                km.attention(f"down_blocks.{level}.attentions.{i}", f"enc.{r}_attn{i}",
                             fixed or SKIP_ATTENTION_GROUPS)
        if level == levels - 1:
            break
        r_down = f"{res[level + 1]}x{res[level + 1]}"
        resample(f"down_blocks.{level}", "downsamplers", "resnet_down", f"enc.{r_down}_down", in_ch)
        if not ddpm:
            km.module(f"down_blocks.{level}.skip_conv", f"enc.{r_down}_combine.Conv_0", [("", "")])
    c = nf * ch_mult[-1]
    km.resnet("mid_block.resnets.0", "mid.block0", net.mid["block0"], (groups(c), groups(c)))
    km.attention("mid_block.attentions.0", "mid.attn", groups(c))
    km.resnet("mid_block.resnets.1", "mid.block1", net.mid["block1"], (groups(c), groups(c)))
    skips = [nf]  # channels of the encoder outputs the decoder concatenates, in push order
    for lv in range(levels):
        skips += [nf * ch_mult[lv]] * (R + (lv < levels - 1))
    in_ch = c
    for j in range(levels):
        level = levels - 1 - j
        r, out_ch = f"{res[level]}x{res[level]}", nf * ch_mult[level]
        attn_up = unet_field(unet_config, "up_block_types")[j].startswith("Attn")
        for i in range(R + 1):
            skip = skips.pop()
            # AttnSkipUpBlock2D computes its first norm's groups as min(in + skip // 4, 32) (operator precedence)
            g0 = min(in_ch + skip // 4, 32) if (not ddpm and attn_up) else groups(in_ch + skip)
            km.resnet(f"up_blocks.{j}.resnets.{i}", f"dec.{r}_block{i}", net.dec[f"{r}_block{i}"], (g0, groups(out_ch)))
            in_ch = out_ch
            if ddpm and attn_up:
                km.attention(f"up_blocks.{j}.attentions.{i}", f"dec.{r}_attn{i}", fixed)
        if not ddpm and attn_up:
            km.attention(f"up_blocks.{j}.attentions.0", f"dec.{r}_attn", SKIP_ATTENTION_GROUPS)
        if not ddpm:
            if level != 0:
                km.norm(f"up_blocks.{j}.skip_norm", f"dec.{r}_pyramid_norm", _gn(in_ch))
                km.module(f"up_blocks.{j}.skip_conv", f"dec.{r}_pyramid_conv", [("", "")])
            else:
                g = unet_field(unet_config, "norm_num_groups")
                km.norm("conv_norm_out", f"dec.{r}_pyramid_norm", g if g is not None else _gn(nf))
                km.module("conv_out", f"dec.{r}_pyramid_conv", [("", "")])
        if level != 0:
            r_up = f"{res[level - 1]}x{res[level - 1]}"
            resample(f"up_blocks.{j}", "upsamplers", "resnet_up", f"dec.{r_up}_up", in_ch)
    if ddpm:
        km.norm("conv_norm_out", "norm_out", fixed)
        km.module("conv_out", "conv_out", [("", "")])
    return km


def check_groups(net: nn.Module, km: KeyMap) -> None:
    """Refuse ``net`` where a GroupNorm of it has another group count than diffusers uses at that place."""
    norms = {name: net.get_submodule(name) for name in km.groups}
    bad = [f"{name} ({norm.num_channels} channels: {km.groups[name]} vs {norm.num_groups})"
           for name, norm in norms.items() if norm.num_groups != km.groups[name]]
    if bad:
        raise IncompatibleCheckpointError(
            "GroupNorm group counts differ between diffusers and scoresde (diffusers vs ours; diffusers' skip blocks "
            f"attend with {SKIP_ATTENTION_GROUPS} groups, NCSN++ with min(C/4, 32), equal from "
            f"{4 * SKIP_ATTENTION_GROUPS} channels): {', '.join(bad[:8])}"
            + (f", ... ({len(bad) - 8} more)" if len(bad) > 8 else ""))


def _rename_deprecated(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        parts = key.rsplit(".", 2)
        if len(parts) == 3 and ".attentions." in key and parts[1] in _DEPRECATED_ATTENTION:
            key = f"{parts[0]}.{_DEPRECATED_ATTENTION[parts[1]]}.{parts[2]}"
        if key == "time_proj.W":
            key = "time_proj.weight"
        out[key] = value
    return out


def map_into(net: nn.Module, km: KeyMap, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` (diffusers keys) as ``net``'s state dict (``sigmas`` kept), after a strict key and shape check."""
    own = net.state_dict()
    state = _rename_deprecated(state)
    converted, mismatched = {}, []
    for theirs, value in state.items():
        if theirs not in km.entries:
            continue
        ours, (to_ours, _) = km.entries[theirs]
        value = to_ours(value)
        if tuple(value.shape) != tuple(own[ours].shape):
            mismatched.append((theirs, tuple(state[theirs].shape), tuple(own[ours].shape)))
        converted[ours] = value.to(own[ours].dtype)
    report = KeyReport(missing=[k for k in km.entries if k not in state],
                       unexpected=[k for k in state if k not in km.entries], mismatched=mismatched)
    if not report.ok:
        raise IncompatibleCheckpointError(
            f"the diffusers weights do not match the {type(net).__name__} their config describes: "
            f"{report.summary('{key} {checkpoint} vs {network} expected (ours, in their layout)')}", report)
    unmapped = sorted(k for k in own if k not in converted and not k.endswith("sigmas"))
    if unmapped:  # a bug of the key map, not of the folder
        raise RuntimeError(f"internal error: scoresde tensors without a diffusers key: {unmapped[:8]}")
    return {**own, **converted}
