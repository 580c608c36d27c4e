"""A scoresde model as an NVlabs/edm network: :func:`export_edm` (``scoresde export --format edm``).

EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models") builds its networks
as ``EDMPrecond``/``VPPrecond``/``VEPrecond(**init_kwargs)`` (a row of Karras et al. Table 1 around ``SongUNet``,
its DDPM++/NCSN++) and saves them as pickles that carry EDM's own source code, which this package neither holds nor
writes. :func:`export_edm` writes instead a ``torch.save``\\ d plain dict: ``class_name`` (EDM's dotted class name,
e.g. ``"training.networks.EDMPrecond"``), ``init_kwargs`` (the constructor's keyword arguments, in the form EDM's
``train.py`` passes them: ``model_type='SongUNet'``, ``embedding_type``, ``encoder_type``, ... and the wrapper's
``sigma_data`` / ``beta_d``, ``beta_min``, ``M``, ``epsilon_t`` / ``sigma_min``, ``sigma_max``) and ``state_dict``
(EDM's parameter and buffer names, ``model.enc.32x32_block0.conv0.weight``, ...). With EDM's code on the path::

    d = torch.load("model.pt", weights_only=True)
    net = dnnlib.util.construct_class_by_name(class_name=d["class_name"], **d["init_kwargs"])
    net.load_state_dict(d["state_dict"])

gives ``net(x, sigma, one_hot(y))`` equal to ``model.x0(x, sigma, class_labels=y)`` (on the EDM SDE; on another
scalar SDE, the denoiser ``D(x / alpha(t); sigma(t) / alpha(t))`` the model computes). It is the inverse of
:mod:`scoresde.checkpoint.edm` (which reads EDM's pickles): exporting an imported pickle gives back its tensors.

Only what ``SongUNet`` can express is exported; everything else is refused in one ``ValueError`` line naming the
difference (:func:`check_edm_exportable`): a model without EDM/VP/VE preconditioning, a network other than
:class:`~scoresde.nets.NCSNpp` (DDPM, NCSN, phase-space models), Fourier features of ``log sigma`` (Score SDE's
NCSN++), ``scale_by_sigma``, DDPM-style residual blocks, uncentred inputs, a ``residual`` output pyramid, ...
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import ScoreModel
from ..models.preconditioning import EDMPreconditioning, VEPreconditioning, VPPreconditioning
from ..nets import NCSNpp
from ..sdes import EDM
from .atomic import atomic_write

__all__ = ["EDM_CLASS_NAMES", "EDM_DEFAULT_EPSILON_T", "check_edm_exportable", "edm_init_kwargs",
           "edm_network_dict", "edm_state_dict_of", "export_edm"]

#: ``model.preconditioning`` -> the dotted name of EDM's wrapper class (``dnnlib.util.construct_class_by_name``)
EDM_CLASS_NAMES = {"edm": "training.networks.EDMPrecond", "vp": "training.networks.VPPrecond",
                   "ve": "training.networks.VEPrecond"}
#: ``VPPrecond``'s default ``epsilon_t`` (EDM's training floor): written when it reproduces the model's ``sigma_min``
EDM_DEFAULT_EPSILON_T = 1e-5
#: ``UNetBlock`` children of EDM -> our ``ResnetBlockBigGAN`` children, in EDM's registration order
_BLOCK_CHILDREN = (("norm0", "GroupNorm_0"), ("conv0", "Conv_0"), ("affine", "Dense_0"), ("norm1", "GroupNorm_1"),
                   ("conv1", "Conv_1"), ("skip", "Conv_2"))


def _refuse(text: str) -> ValueError:
    return ValueError(f"cannot export to EDM: {text}")


def check_edm_exportable(model: Any) -> None:
    """Raise one ``ValueError`` line naming the first property of ``model`` that EDM's ``EDMPrecond`` / ``VPPrecond``
    / ``VEPrecond`` around ``SongUNet`` cannot express; return ``None`` for a model :func:`export_edm` writes.

    Exportable: a :class:`~scoresde.models.ScoreModel` with preconditioning ``edm``, ``vp`` or ``ve`` (Karras et al.
    Table 1) around an :class:`~scoresde.nets.NCSNpp` with BigGAN blocks, ``skip_rescale``, no ``scale_by_sigma``,
    centred inputs, SiLU, a noise embedding that is positional or Fourier features of ``c_noise`` itself
    (``fourier_log=False``) of ``noise_channels`` a multiple of ``nf``, an input pyramid ``none``/``residual``
    (with FIR)/``input_skip`` (summed), an output pyramid ``none``/``output_skip``.
    """
    if not isinstance(model, ScoreModel):
        raise _refuse(f"{type(model).__name__} is not a ScoreModel (one network on a scalar SDE); EDM's networks "
                      "are denoisers of one image (phase-space models such as PSLD/CLD have no EDM counterpart)")
    if model.precond is None:
        raise _refuse(f"the model has no EDM/VP/VE preconditioning (it is a {model.output_type} network fed "
                      f"{model.label_type} labels); EDM's networks are Karras et al. Table 1 denoisers: train with "
                      "model.preconditioning=edm, vp or ve")
    if not isinstance(model.precond, (EDMPreconditioning, VPPreconditioning, VEPreconditioning)):
        raise _refuse(f"preconditioning {model.precond!r} has no EDM wrapper; EDM has edm, vp and ve")
    net = model.net
    if not isinstance(net, NCSNpp):
        raise _refuse(f"network {type(net).__name__} has no counterpart in EDM's SongUNet, which is DDPM++/NCSN++ "
                      "(scoresde's NCSNpp, model.name=ncsnpp)")
    checks = (
        (net.resblock_type == "biggan", f"resblock_type={net.resblock_type!r}; SongUNet's blocks are 'biggan'"),
        (net.skip_rescale, "skip_rescale=False; SongUNet rescales every skip sum by 1/sqrt(2)"),
        (not net.scale_by_sigma, "scale_by_sigma=True (output divided by sigma); SongUNet's output is unscaled"),
        (net.conditional, "conditional=False (no noise embedding); SongUNet is noise-conditional"),
        (net.centered, "centered=False (inputs mapped 2x-1 inside the network); SongUNet takes inputs as they are"),
        (isinstance(net.act, nn.SiLU), f"nonlinearity {type(net.act).__name__}; SongUNet uses SiLU (swish)"),
        (net.embedding_type == "positional" or not net.fourier_log,
         "Fourier features of log(sigma) (Score SDE's NCSN++, fourier_log=True); EDM's FourierEmbedding takes "
         "c_noise itself (fourier_log=False)"),
        (net.noise_channels % net.nf == 0, f"noise_channels={net.noise_channels} is no multiple of nf={net.nf} "
                                           "(SongUNet's is model_channels x channel_mult_noise)"),
        (net.progressive != "residual", "progressive='residual' output pyramid; SongUNet's decoders are "
                                        "'standard' and 'skip' (progressive none / output_skip)"),
        (net.progressive_input != "input_skip" or net.progressive_combine == "sum",
         "progressive_combine='cat'; SongUNet's skip encoder sums the input pyramid"),
        (net.progressive_input != "residual" or net._resample_kw["fir"],
         "progressive_input='residual' without FIR (a strided convolution); SongUNet's residual encoder filters "
         "(fir=True, any fir_kernel)"),
        (net.in_channels == net.out_channels, f"in_channels {net.in_channels} != out_channels {net.out_channels}; "
                                              "EDM's wrappers map images to images of the same channels"),
    )
    for ok, text in checks:
        if not ok:
            raise _refuse(text)


def _noise_range(model: ScoreModel) -> tuple[float, float]:
    """The noise levels ``s = sigma/alpha`` at the SDE's sampling floor and end time (``sigma_min``, ``sigma_max`` of
    :class:`~scoresde.sdes.EDM` exactly)."""
    if isinstance(model.sde, EDM):
        return float(model.sde.sigma_min), float(model.sde.sigma_max)
    t = torch.tensor([float(model.sde.sampling_eps), float(model.sde.T)], dtype=torch.float64)
    lo, hi = model.noise_level(t).tolist()
    return float(lo), float(hi)


def _vp_epsilon_t(precond: VPPreconditioning, sigma_min: float) -> float:
    """``epsilon_t`` of ``VPPrecond`` for the model's ``sigma_min``: EDM's default 1e-5 when EDM's own float32
    ``sigma(1e-5)`` equals it (as on an imported VP pickle), else the float64 VP time of ``sigma_min``."""
    t32 = torch.tensor(EDM_DEFAULT_EPSILON_T, dtype=torch.float32)
    s32 = ((0.5 * precond.beta_d * t32**2 + precond.beta_min * t32).exp() - 1).sqrt()
    if float(s32) == sigma_min:
        return EDM_DEFAULT_EPSILON_T
    return float(precond.t_of_s(torch.tensor(sigma_min, dtype=torch.float64)))


def edm_init_kwargs(model: ScoreModel) -> dict[str, Any]:
    """The keyword arguments of EDM's wrapper class (:data:`EDM_CLASS_NAMES`) that build ``model``'s network, in the
    form of EDM's ``train.py`` (``model_type='SongUNet'`` and the architecture keys, every one explicit), plus the
    wrapper's parameters: ``sigma_data`` (EDMPrecond; its ``sigma_min``/``sigma_max`` stay EDM's defaults 0/inf,
    which only its sampler reads); ``beta_d``, ``beta_min``, ``M``, ``epsilon_t`` (VPPrecond; ``epsilon_t`` from
    the model's lowest noise level); ``sigma_min``, ``sigma_max`` (VEPrecond, the model's noise range).
    ``label_dropout`` (SongUNet's classifier-free dropout) is the run's ``training.label_dropout`` where nonzero.
    ``ValueError`` (one line) for a model :func:`check_edm_exportable` refuses."""
    check_edm_exportable(model)
    net: NCSNpp = model.net
    fir = bool(net._resample_kw["fir"])
    kwargs: dict[str, Any] = {
        "img_resolution": int(net.resolutions[0]), "img_channels": int(net.in_channels),
        "label_dim": int(net.num_classes), "model_type": "SongUNet", "embedding_type": net.embedding_type,
        "encoder_type": {"none": "standard", "input_skip": "skip", "residual": "residual"}[net.progressive_input],
        "decoder_type": {"none": "standard", "output_skip": "skip"}[net.progressive],
        "channel_mult_noise": net.noise_channels // net.nf,
        "resample_filter": [int(v) if float(v).is_integer() else float(v) for v in net._resample_kw["fir_kernel"]]
        if fir else [1, 1],
        "model_channels": int(net.nf), "channel_mult": [int(m) for m in net.ch_mult],
        "channel_mult_emb": int(net._block_kw["temb_dim"]) // net.nf, "num_blocks": int(net.num_res_blocks),
        "attn_resolutions": [int(r) for r in net.attn_resolutions], "dropout": float(net._block_kw["dropout"]),
        "augment_dim": int(net.augment_dim)}
    config = getattr(model, "config", None)
    label_dropout = float(getattr(getattr(config, "training", None), "label_dropout", 0.0) or 0.0)
    if label_dropout and net.num_classes:
        kwargs["label_dropout"] = label_dropout
    precond = model.precond
    if isinstance(precond, EDMPreconditioning):
        kwargs["sigma_data"] = float(precond.sigma_data)
    elif isinstance(precond, VPPreconditioning):
        kwargs.update(beta_d=float(precond.beta_d), beta_min=float(precond.beta_min), M=int(precond.M),
                      epsilon_t=_vp_epsilon_t(precond, _noise_range(model)[0]))
    elif isinstance(precond, VEPreconditioning):
        kwargs["sigma_min"], kwargs["sigma_max"] = _noise_range(model)
    return kwargs


def _resample_filter(taps: list[float]) -> torch.Tensor:
    """EDM's resampling buffer of 1-D taps ``f``: ``outer(f, f) / sum(f)^2``, shape (1, 1, k, k), float32."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    return torch.outer(f, f)[None, None] / f.sum().square()


class _Mapper:
    """Moves our state dict's tensors to EDM's names, consuming each key once, so that a tensor of ours without an
    EDM counterpart is seen (:meth:`leftover`)."""

    def __init__(self, ours: dict[str, torch.Tensor], resample: torch.Tensor) -> None:
        self.ours = {k: v.detach().to(device="cpu", dtype=torch.float32).clone() for k, v in ours.items()}
        self.out: dict[str, torch.Tensor] = {}
        self.resample = resample

    def take(self, key: str) -> torch.Tensor:
        if key not in self.ours:
            raise _refuse(f"the network has no tensor {key!r} where SongUNet has one")
        return self.ours.pop(key)

    def copy(self, edm: str, ours: str, *, biased: bool = True, filtered: bool = False) -> None:
        """EDM's ``Linear``/``Conv2d``/``GroupNorm`` ``edm`` from our module ``ours`` (same layouts)."""
        self.out[f"{edm}.weight"] = self.take(f"{ours}.weight")
        if biased:
            self.out[f"{edm}.bias"] = self.take(f"{ours}.bias")
        if filtered:
            self.out[f"{edm}.resample_filter"] = self.resample.clone()

    def block(self, edm: str, ours: str, *, resampled: bool = False, attn: str | None = None) -> None:
        """A ``UNetBlock`` from our ``ResnetBlockBigGAN`` ``ours`` (and its attention from our ``AttnBlock``
        ``attn``: EDM's ``qkv`` interleaves q, k, v per output channel)."""
        for theirs, mine in _BLOCK_CHILDREN:
            if f"{ours}.{mine}.weight" in self.ours:
                self.copy(f"{edm}.{theirs}", f"{ours}.{mine}", filtered=resampled and theirs in ("conv0", "skip"))
        if attn is None:
            return
        self.copy(f"{edm}.norm2", f"{attn}.GroupNorm_0")
        w = [self.take(f"{attn}.NIN_{j}.W").t() for j in range(3)]
        b = [self.take(f"{attn}.NIN_{j}.b") for j in range(3)]
        self.out[f"{edm}.qkv.weight"] = torch.stack(w, dim=1).reshape(-1, w[0].shape[1])[:, :, None, None]
        self.out[f"{edm}.qkv.bias"] = torch.stack(b, dim=1).reshape(-1)
        self.out[f"{edm}.proj.weight"] = self.take(f"{attn}.NIN_3.W").t().contiguous()[:, :, None, None]
        self.out[f"{edm}.proj.bias"] = self.take(f"{attn}.NIN_3.b")

    def leftover(self) -> list[str]:
        return sorted(k for k in self.ours if k != "sigmas")  # (our σ table: unused without scale_by_sigma)


def _label_map(table: torch.Tensor, num_classes: int, learned_null: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """EDM's ``map_label`` (``W``, ``b``) of our class table: ``W one_hot(y) sqrt(L) + b`` = row ``y`` with
    ``b`` = the null row (``learned``; EDM's zero label vector) or 0 (``zero``), so ``W[:, y] = (row_y - b) /
    sqrt(L)`` (in float64, then float32: the one transform that is not a copy)."""
    t = table.double()
    bias = t[num_classes] if learned_null else torch.zeros(t.shape[1], dtype=torch.float64)
    weight = ((t[:num_classes] - bias) / math.sqrt(num_classes)).t()
    return weight.float().contiguous(), bias.float().contiguous()


def edm_state_dict_of(model: ScoreModel, init_kwargs: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """``model``'s weights under the names of EDM's ``state_dict()`` of the wrapper built from ``init_kwargs``
    (default :func:`edm_init_kwargs`), in EDM's order (float32, CPU): ``model.map_noise.freqs`` (Fourier),
    ``model.map_label.*``, ``model.map_augment.weight``, ``model.map_layer{0,1}.*``, ``model.enc.<res>_*``,
    ``model.dec.<res>_*`` with the ``resample_filter`` buffers of every resampling convolution. All tensors are
    copies of ours except ``map_label`` (:func:`_label_map`)."""
    kw = edm_init_kwargs(model) if init_kwargs is None else init_kwargs
    net: NCSNpp = model.net
    m = _Mapper(net.state_dict(), _resample_filter(kw["resample_filter"]))
    if kw["embedding_type"] == "fourier":
        m.out["model.map_noise.freqs"] = m.take("fourier_proj.W")
    if kw["label_dim"]:
        learned = net.label_embed.null_label == "learned"
        weight, bias = _label_map(m.take("label_embed.weight"), kw["label_dim"], learned)
        m.out.update({"model.map_label.weight": weight, "model.map_label.bias": bias})
    if kw["augment_dim"]:
        m.out["model.map_augment.weight"] = m.take("augment_embed.weight")
    m.copy("model.map_layer0", "temb_dense0")
    m.copy("model.map_layer1", "temb_dense1")
    res, levels, attn = kw["img_resolution"], len(kw["channel_mult"]), set(kw["attn_resolutions"])
    for level in range(levels):
        r = f"{res >> level}x{res >> level}"
        if level == 0:
            m.copy(f"model.enc.{r}_conv", "conv_in")
        else:
            m.block(f"model.enc.{r}_down", f"enc.{r}_down", resampled=True)
            if kw["encoder_type"] == "skip":
                m.out[f"model.enc.{r}_aux_down.resample_filter"] = m.resample.clone()
                m.copy(f"model.enc.{r}_aux_skip", f"enc.{r}_combine.Conv_0")
            elif kw["encoder_type"] == "residual":
                m.copy(f"model.enc.{r}_aux_residual", f"enc.{r}_pyramid_down.Conv2d_0", filtered=True)
        for i in range(kw["num_blocks"]):
            m.block(f"model.enc.{r}_block{i}", f"enc.{r}_block{i}",
                    attn=f"enc.{r}_attn{i}" if res >> level in attn else None)
    for level in reversed(range(levels)):
        r = f"{res >> level}x{res >> level}"
        if level == levels - 1:
            m.block(f"model.dec.{r}_in0", "mid.block0", attn="mid.attn")
            m.block(f"model.dec.{r}_in1", "mid.block1")
        else:
            m.block(f"model.dec.{r}_up", f"dec.{r}_up", resampled=True)
        for i in range(kw["num_blocks"] + 1):
            last = i == kw["num_blocks"] and res >> level in attn
            m.block(f"model.dec.{r}_block{i}", f"dec.{r}_block{i}", attn=f"dec.{r}_attn" if last else None)
        if kw["decoder_type"] == "skip":
            if level < levels - 1:
                m.out[f"model.dec.{r}_aux_up.resample_filter"] = m.resample.clone()
            m.copy(f"model.dec.{r}_aux_norm", f"dec.{r}_pyramid_norm")
            m.copy(f"model.dec.{r}_aux_conv", f"dec.{r}_pyramid_conv")
        elif level == 0:
            m.copy(f"model.dec.{r}_aux_norm", "norm_out")
            m.copy(f"model.dec.{r}_aux_conv", "conv_out")
    if m.leftover():
        raise _refuse(f"the network has tensors SongUNet has no place for: {', '.join(m.leftover()[:4])}")
    return m.out


def edm_network_dict(model: ScoreModel) -> dict[str, Any]:
    """``{"class_name", "init_kwargs", "state_dict"}`` of ``model`` as EDM's network (module docstring): the dict
    :func:`export_edm` saves. ``ValueError`` (one line) for a model EDM cannot express."""
    kwargs = edm_init_kwargs(model)
    return {"class_name": EDM_CLASS_NAMES[model.precond.name], "init_kwargs": kwargs,
            "state_dict": edm_state_dict_of(model, kwargs)}


def export_edm(model: ScoreModel, path: str | Path) -> Path:
    """Write ``model`` as EDM's network to ``path`` (``torch.save`` of :func:`edm_network_dict`, atomically: the file
    appears whole or not at all); returns ``path``.

    Use it to run a model trained or imported here in NVlabs/edm's code (its ``generate.py`` sampler, its FID
    pipeline): ``EDMPrecond(**d["init_kwargs"]).load_state_dict(d["state_dict"])`` (or ``VPPrecond``/``VEPrecond``
    per ``d["class_name"]``) computes the model's denoiser. The file holds no code and reads with
    ``torch.load(path, weights_only=True)``. For diffusers use :func:`scoresde.export_diffusers` instead.

    Raises:
        ValueError: a model EDM's ``SongUNet`` and wrappers cannot express, naming what differs
            (:func:`check_edm_exportable`).
        StorageError: the file could not be written (disk full, permission), naming it.
    """
    data = edm_network_dict(model)
    return atomic_write(path, lambda tmp: torch.save(data, tmp))
