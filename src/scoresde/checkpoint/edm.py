"""NVlabs/edm network pickles as score models: ``scoresde.load_checkpoint("network-snapshot-....pkl")``.

EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models") publishes its networks
(``edm-*``/``baseline-*`` files and training snapshots) as pickles whose ``ema`` entry is a preconditioning wrapper
(``EDMPrecond``, ``VPPrecond`` or ``VEPrecond``: rows of Karras et al. Table 1) around ``SongUNet``, EDM's rewrite of
Song et al.'s DDPM++ and NCSN++. This module reads them with :func:`~scoresde.checkpoint.edm_pickle.read_edm_pickle`
(nothing in the file is executed), builds the :class:`~scoresde.nets.NCSNpp` that computes the same function
(:func:`edm_network_config`: the architecture is read from the weights and the records' attributes, and every
property our network does not share is refused in one line naming it), moves the weights across
(:func:`edm_state_dict`) and wraps the result as a :class:`~scoresde.models.ScoreModel` on
:class:`scoresde.sdes.EDM` with the file's preconditioning row, so that ``model.x0(x, sigma, class_labels=y)`` is
EDM's ``net(x, sigma, one_hot(y))``. ``DhariwalUNet`` (ADM) and ``iDDPMPrecond`` are refused by name. The inverse
(a model as EDM's ``init_kwargs`` and ``state_dict``) is :mod:`scoresde.checkpoint.edm_export`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..config import build_score_model, config_from_dict
from ..models import ScoreModel
from ..models.preconditioning import EDMPreconditioning, Preconditioning, VEPreconditioning, VPPreconditioning
from .edm_pickle import ModuleDictRecord, PersistentRecord, read_edm_pickle
from .errors import IncompatibleCheckpointError
from .loaded import loaded_model

__all__ = ["EDM_PRECONDITIONINGS", "edm_network_config", "edm_preconditioning", "edm_state_dict", "load_edm_checkpoint",
           "read_edm_network"]

#: EDM's preconditioning classes -> the ``model.preconditioning`` row that computes the same denoiser
EDM_PRECONDITIONINGS = {"EDMPrecond": "edm", "VPPrecond": "vp", "VEPrecond": "ve"}
#: tolerance of the float attributes checked against our network's constants (skip scale, GroupNorm eps)
ATTRIBUTE_RTOL = 1e-6


def _fail(path: Any, text: str) -> IncompatibleCheckpointError:
    return IncompatibleCheckpointError(f"{path}: {text}")


def read_edm_network(path: str | Path) -> tuple[PersistentRecord, PersistentRecord]:
    """``(wrapper, unet)``: the records of the file's ``ema`` preconditioning wrapper and of its ``SongUNet``, read
    without executing anything. ``IncompatibleCheckpointError`` (one line) for a pickle without an ``ema`` network,
    another wrapper (``iDDPMPrecond``) or another U-Net (``DhariwalUNet``, ADM)."""
    data = read_edm_pickle(path)
    ema = data.get("ema") if isinstance(data, dict) else None
    if not isinstance(ema, PersistentRecord):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise _fail(path, f"an EDM pickle without an 'ema' network: {keys}")
    if ema.class_name not in EDM_PRECONDITIONINGS:
        raise _fail(path, f"its network is EDM's {ema.class_name}; supported are "
                          f"{', '.join(EDM_PRECONDITIONINGS)} around SongUNet")
    unet = ema.modules().get("model")
    if not isinstance(unet, PersistentRecord):
        raise _fail(path, f"{ema.class_name} without its 'model' network")
    if unet.class_name == "DhariwalUNet":
        raise _fail(path, "its network is EDM's DhariwalUNet (ADM, Dhariwal & Nichol 2021), which scoresde has no "
                          "counterpart of; supported is SongUNet (EDM's DDPM++ and NCSN++)")
    if unet.class_name != "SongUNet":
        raise _fail(path, f"its network is {unet.class_name}; supported is SongUNet (EDM's DDPM++ and NCSN++)")
    return ema, unet


def edm_preconditioning(wrapper: PersistentRecord) -> Preconditioning:
    """The preconditioning row of an EDM wrapper record, with its parameters (``sigma_data``; VP's ``beta_d``,
    ``beta_min``, ``M``)."""
    s = wrapper.state
    if wrapper.class_name == "EDMPrecond":
        return EDMPreconditioning(float(s.get("sigma_data", 0.5)))
    if wrapper.class_name == "VPPrecond":
        return VPPreconditioning(float(s["beta_d"]), float(s["beta_min"]), int(s["M"]))
    return VEPreconditioning()


def _tensor(path: Any, record: Any, name: str, where: str) -> torch.Tensor:
    tensors = record.tensors() if isinstance(record, PersistentRecord) else {}
    if name not in tensors:
        raise _fail(path, f"{where} has no {name!r} tensor")
    return tensors[name].detach().to(torch.float32)


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=ATTRIBUTE_RTOL)


def _check_block(path: Any, name: str, block: PersistentRecord) -> None:
    """The UNetBlock properties our residual block has fixed: skip scale 1/sqrt(2), no adaptive scale, one head."""
    s = block.state
    if not _close(s.get("skip_scale", 1.0), math.sqrt(0.5)):
        raise _fail(path, f"UNetBlock {name} has skip_scale {s.get('skip_scale')}; NCSN++ rescales skips by 1/sqrt(2)")
    if s.get("adaptive_scale"):
        raise _fail(path, f"UNetBlock {name} uses adaptive_scale (ADM's scale-shift), which NCSN++ has not")
    if s.get("num_heads", 0) not in (0, 1):
        raise _fail(path, f"UNetBlock {name} has {s['num_heads']} attention heads; NCSN++ attention has one")
    for child_name, child in block.modules().items():
        if child.class_name == "GroupNorm":
            channels = child.tensors()["weight"].numel()
            if child.state.get("num_groups") != min(32, channels // 4) or not _close(child.state.get("eps"), 1e-6):
                raise _fail(path, f"{name}.{child_name} is GroupNorm({child.state.get('num_groups')} groups, eps "
                                  f"{child.state.get('eps')}); NCSN++ uses min(32, C/4) groups and eps 1e-6")


def _filter_1d(f2: torch.Tensor) -> tuple[float, ...]:
    """The 1-D taps ``f`` of EDM's 2-D resampling filter ``outer(f, f) / sum(f)^2`` (scaled to a first tap of 1)."""
    rows = f2.reshape(f2.shape[-2], f2.shape[-1]).sum(dim=1).double()
    taps = rows / rows[0]
    return tuple(round(v) if abs(v - round(v)) < 1e-6 else v for v in taps.tolist())


def edm_network_config(unet: PersistentRecord, path: Any = "EDM pickle") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model, data)`` config sections of the :class:`~scoresde.nets.NCSNpp` that computes EDM's ``SongUNet``
    ``unet``, read from its weights and attributes (not from constructor defaults): resolutions, widths, blocks,
    attention, the noise embedding (positional with EDM's endpoint convention, or Fourier features of ``c_noise``),
    the encoder/decoder types (``standard``/``skip``/``residual`` -> ``progressive_input`` / ``progressive``), the
    resampling filter, the class (``label_dim``) and augmentation (``augment_dim``) mappings."""
    mods = unet.modules()
    enc, dec = mods.get("enc"), mods.get("dec")
    if not isinstance(enc, ModuleDictRecord) or not isinstance(dec, ModuleDictRecord):
        raise _fail(path, "SongUNet without its enc/dec module dicts")
    enc_m, dec_m = enc.modules(), dec.modules()
    first = next(iter(enc_m), "")
    if not first.endswith("_conv"):
        raise _fail(path, f"SongUNet encoder starts with {first!r}, not its input convolution")
    res = int(first.split("x")[0])
    conv_in = _tensor(path, enc_m[first], "weight", f"enc.{first}")
    nf, in_channels = conv_in.shape[0], conv_in.shape[1]
    resolutions = []
    while any(k.startswith(f"{res >> len(resolutions)}x") for k in enc_m) and res >> len(resolutions) >= 1:
        resolutions.append(res >> len(resolutions))
    num_blocks = sum(1 for k in enc_m if k.startswith(f"{res}x{res}_block"))
    ch_mult, attn = [], []
    for r in resolutions:
        block = enc_m.get(f"{r}x{r}_block0")
        if not isinstance(block, PersistentRecord):
            raise _fail(path, f"SongUNet encoder has no {r}x{r}_block0")
        ch_mult.append(int(block.state["out_channels"]) // nf)
        if block.state.get("num_heads"):
            attn.append(r)
    for name, block in {**enc_m, **dec_m}.items():
        if isinstance(block, PersistentRecord) and block.class_name == "UNetBlock":
            _check_block(path, name, block)
    emb0 = _tensor(path, mods.get("map_layer0"), "weight", "map_layer0")
    noise_channels, emb_channels = emb0.shape[1], emb0.shape[0]
    if emb_channels != 4 * nf:
        raise _fail(path, f"SongUNet has an embedding of {emb_channels} channels ({emb_channels / nf:g} x "
                          f"model_channels {nf}); NCSN++'s is 4 x (channel_mult_emb=4)")
    noise = mods.get("map_noise")
    model: dict[str, Any] = {"name": "ncsnpp", "nf": nf, "ch_mult": ch_mult, "num_res_blocks": num_blocks,
                             "attn_resolutions": attn, "resblock_type": "biggan", "skip_rescale": True,
                             "scale_by_sigma": False, "conditional": True, "noise_channels": noise_channels}
    if noise.class_name == "FourierEmbedding":
        model.update(embedding_type="fourier", fourier_log=False)
    elif noise.class_name == "PositionalEmbedding":
        if not noise.state.get("endpoint") or noise.state.get("max_positions") != 10000:
            raise _fail(path, f"PositionalEmbedding(endpoint={noise.state.get('endpoint')}, max_positions="
                              f"{noise.state.get('max_positions')}); DDPM++'s is endpoint=True, 10000 (SongUNet's)")
        model.update(embedding_type="positional")
    else:
        raise _fail(path, f"SongUNet noise mapping {noise.class_name}; expected Positional- or FourierEmbedding")
    resampler = next((b for n, b in dec_m.items() if n.endswith("_up")), None)
    taps = _filter_1d(resampler.modules()["conv0"].tensors()["resample_filter"]) if resampler else (1, 1)
    encoder = "residual" if any("aux_residual" in k for k in enc_m) else "skip" if any(
        "aux_skip" in k for k in enc_m) else "standard"
    decoder = "skip" if sum("aux_conv" in k for k in dec_m) > 1 else "standard"
    model["progressive_input"] = {"standard": "none", "skip": "input_skip", "residual": "residual"}[encoder]
    model["progressive"] = {"standard": "none", "skip": "output_skip"}[decoder]
    model["progressive_combine"] = "sum"
    model["fir"] = taps != (1, 1) or encoder == "residual"
    if model["fir"]:
        model["fir_kernel"] = list(taps)
    model["dropout"] = float(next(b.state.get("dropout", 0.0) for b in enc_m.values()
                                  if isinstance(b, PersistentRecord) and b.class_name == "UNetBlock"))
    label = mods.get("map_label")
    if label is not None:
        model.update(num_classes=int(_tensor(path, label, "weight", "map_label").shape[1]), null_label="learned")
    augment = mods.get("map_augment")
    if augment is not None:
        model["augment_dim"] = int(_tensor(path, augment, "weight", "map_augment").shape[1])
    data = {"image_size": res, "num_channels": in_channels, "centered": True}
    return model, data


def _block_state(block: PersistentRecord, ours: str, out: dict[str, torch.Tensor], attn: str | None) -> None:
    """A UNetBlock's tensors under our ResnetBlockBigGAN names (and its attention under our AttnBlock's)."""
    m = block.modules()
    names = {"norm0": "GroupNorm_0", "conv0": "Conv_0", "affine": "Dense_0", "norm1": "GroupNorm_1", "conv1": "Conv_1",
             "skip": "Conv_2"}
    for theirs, mine in names.items():
        if theirs in m:
            for key, value in m[theirs].tensors().items():
                if key != "resample_filter":
                    out[f"{ours}.{mine}.{key}"] = value
    if "qkv" in m and attn is not None:
        out[f"{attn}.GroupNorm_0.weight"] = m["norm2"].tensors()["weight"]
        out[f"{attn}.GroupNorm_0.bias"] = m["norm2"].tensors()["bias"]
        w, b = m["qkv"].tensors()["weight"][:, :, 0, 0], m["qkv"].tensors()["bias"]
        for j in range(3):  # EDM's qkv channels interleave q, k, v per channel: (C, 3) flattened
            out[f"{attn}.NIN_{j}.W"] = w[j::3].t().contiguous()
            out[f"{attn}.NIN_{j}.b"] = b[j::3].contiguous()
        out[f"{attn}.NIN_3.W"] = m["proj"].tensors()["weight"][:, :, 0, 0].t().contiguous()
        out[f"{attn}.NIN_3.b"] = m["proj"].tensors()["bias"]


def edm_state_dict(unet: PersistentRecord, model: dict[str, Any]) -> dict[str, torch.Tensor]:
    """EDM's ``SongUNet`` weights under the keys of the :class:`~scoresde.nets.NCSNpp` of
    :func:`edm_network_config` (``map_label``'s ``W one_hot(y) sqrt(label_dim) + b`` becomes the class table: row
    ``y`` = ``sqrt(label_dim) W[:, y] + b``, the null row = ``b``, EDM's call with a zero label vector)."""
    mods = unet.modules()
    enc, dec = mods["enc"].modules(), mods["dec"].modules()
    out: dict[str, torch.Tensor] = {}
    if model["embedding_type"] == "fourier":
        out["fourier_proj.W"] = mods["map_noise"].tensors()["freqs"]
    for theirs, mine in (("map_layer0", "temb_dense0"), ("map_layer1", "temb_dense1")):
        for key, value in mods[theirs].tensors().items():
            out[f"{mine}.{key}"] = value
    if "map_label" in mods:
        t = mods["map_label"].tensors()
        w, b = t["weight"], t.get("bias", torch.zeros(t["weight"].shape[0]))
        scale = math.sqrt(w.shape[1])
        out["label_embed.weight"] = torch.cat([(w * scale).t() + b, b[None]], dim=0)
    if "map_augment" in mods:
        out["augment_embed.weight"] = mods["map_augment"].tensors()["weight"]
    attn = set(model["attn_resolutions"])
    for name, rec in enc.items():
        r, role = name.split("_", 1)
        res = int(r.split("x")[0])
        if role == "conv":
            out.update({f"conv_in.{k}": v for k, v in rec.tensors().items()})
        elif role == "down" or role.startswith("block"):
            i = role[len("block"):] if role.startswith("block") else None
            _block_state(rec, f"enc.{r}_{role}", out, f"enc.{r}_attn{i}" if i is not None and res in attn else None)
        elif role == "aux_residual":
            out.update({f"enc.{r}_pyramid_down.Conv2d_0.{k}": v for k, v in rec.tensors().items()
                        if k != "resample_filter"})
        elif role == "aux_skip":
            out.update({f"enc.{r}_combine.Conv_0.{k}": v for k, v in rec.tensors().items()})
    last = f"block{model['num_res_blocks']}"
    decoder_skip = model["progressive"] == "output_skip"
    for name, rec in dec.items():
        r, role = name.split("_", 1)
        res = int(r.split("x")[0])
        if role == "in0":
            _block_state(rec, "mid.block0", out, "mid.attn")
        elif role == "in1":
            _block_state(rec, "mid.block1", out, None)
        elif role == "up" or role.startswith("block"):
            _block_state(rec, f"dec.{r}_{role}", out, f"dec.{r}_attn" if role == last and res in attn else None)
        elif role in ("aux_norm", "aux_conv"):
            mine = (f"dec.{r}_pyramid_{role[4:]}" if decoder_skip else
                    {"aux_norm": "norm_out", "aux_conv": "conv_out"}[role])
            out.update({f"{mine}.{k}": v for k, v in rec.tensors().items() if k != "resample_filter"})
    return out


def load_edm_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> ScoreModel:
    """An EDM network pickle as a :class:`~scoresde.models.ScoreModel` on :class:`scoresde.sdes.EDM` (times are noise
    levels ``sigma``) with the file's preconditioning, in eval mode, ``model.step = 0`` (EDM pickles record no step)
    and ``model.config`` the run config that rebuilds it (:func:`scoresde.config.build_score_model`).
    ``model.x0(x, sigma, class_labels=y)`` is EDM's ``net(x, sigma, one_hot(y))`` (``class_labels=None``: EDM's call
    with no label, its zero label vector); ``augment_labels`` reach the network as EDM's ``augment_labels``.

    Use it (or :func:`scoresde.load_checkpoint`, which sends EDM pickles here) for EDM's published and trained
    networks; nothing in the file is executed (:func:`~scoresde.checkpoint.edm_pickle.read_edm_pickle`).
    ``dtype`` casts the network (default float32, EDM's).
    """
    wrapper, unet = read_edm_network(path)
    model, data = edm_network_config(unet, path)
    precond = edm_preconditioning(wrapper)
    sigma_min, sigma_max = _sigma_range(wrapper)
    options = precond.options()
    model.update(sigma_min=sigma_min, sigma_max=sigma_max, num_scales=1000, preconditioning=precond.name,
                 **({"sigma_data": options["sigma_data"]} if "sigma_data" in options else {}))
    config = config_from_dict({"model": model, "data": data, "training": {"sde": "edm", "continuous": True}})
    score_model = build_score_model(config)
    if score_model.precond != precond:  # VP parameters other than EDM's defaults: a config holds only the name
        score_model = ScoreModel(score_model.net, score_model.sde, preconditioning=precond)
    own = score_model.net.state_dict()
    state = {"sigmas": own["sigmas"], **edm_state_dict(unet, model)}  # (our σ table: unused without scale_by_sigma)
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        raise _fail(path, f"EDM weights do not map onto NCSN++ (missing {missing[:4]}, unexpected {extra[:4]}, "
                          f"shape mismatch {wrong[:4]})")
    score_model.net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    score_model.net.to(device=map_location, dtype=dtype or torch.float32)
    score_model.eval()
    return loaded_model(score_model, 0, config.to_dict())


def _sigma_range(wrapper: PersistentRecord) -> tuple[float, float]:
    """The noise range of the EDM SDE: the wrapper's own finite ``sigma_min``/``sigma_max`` (VP/VE), else EDM's
    sampler defaults 0.002 and 80 (EDMPrecond stores 0 and inf)."""
    lo, hi = wrapper.state.get("sigma_min"), wrapper.state.get("sigma_max")
    lo = float(lo) if isinstance(lo, (int, float)) and 0 < float(lo) < math.inf else 0.002
    hi = float(hi) if isinstance(hi, (int, float)) and lo < float(hi) < math.inf else 80.0
    return lo, hi
