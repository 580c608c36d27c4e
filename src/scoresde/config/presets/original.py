"""Every training config of the original Score SDE code (``yang-song/score_sde_pytorch``, ``configs/``) as data.

Each preset is a nested plain dict in the layout of the original ``ml_collections`` configs (and of the
``*.config.json`` files of the reference fixtures): the sections ``training``, ``sampling``, ``eval``, ``data``,
``model``, ``optim`` and the top-level ``seed``. A preset's name is its path under ``configs/`` without ``.py``,
e.g. ``ve/cifar10_ncsnpp_deep_continuous``. Values are the original ones: the ``default_*_configs.py`` of the
file's dataset with the file's own assignments on top. Tuples are lists (JSON layout).

Deliberate differences from the original files, all documented here:

* ``device`` is omitted: the original computes a ``torch.device`` at import time; where to run is the caller's
  choice, never part of a config.
* Original typos are kept, because they are the originals' hyperparameters: ``ve/ncsnv2/bedroom`` sets
  ``training.continuouse = False`` (so ``training.continuous`` stays ``True`` from the LSUN defaults) and
  ``ve/ncsn/celeba`` sets ``training.loss = 'vesde'`` instead of ``training.sde`` (the loader falls back to
  ``vesde`` for NCSN networks). ``ve/celeba_ncsnpp`` sets ``model.sigma_begin = 90``, which the original code
  never reads (its ``sigma_max`` is the CelebA default, 90).
* Local variables of some files (``step_size``, ``ckpt_id``, ...) are not config entries and are not listed.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from typing import Any

from .entry import RawConfig

__all__ = ["DEFAULTS", "list_original_presets", "merge_config", "original_description",
           "original_preset", "unknown_preset_error"]



def merge_config(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> RawConfig:
    """A deep copy of ``base`` with ``overrides`` applied section by section (nested dicts merge, values replace)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---- the three default_*_configs.py --------------------------------------------------------------------------

_OPTIM_ADAM = {"weight_decay": 0, "optimizer": "Adam", "lr": 2e-4, "beta1": 0.9, "eps": 1e-8, "warmup": 5000,
               "grad_clip": 1.0}

_CIFAR10 = {
    "training": {"batch_size": 128, "n_iters": 1300001, "snapshot_freq": 50000, "log_freq": 50, "eval_freq": 100,
                 "snapshot_freq_for_preemption": 10000, "snapshot_sampling": True, "likelihood_weighting": False,
                 "continuous": True, "reduce_mean": False},
    "sampling": {"n_steps_each": 1, "noise_removal": True, "probability_flow": False, "snr": 0.16},
    "eval": {"begin_ckpt": 9, "end_ckpt": 26, "batch_size": 1024, "enable_sampling": False, "num_samples": 50000,
             "enable_loss": True, "enable_bpd": False, "bpd_dataset": "test"},
    "data": {"dataset": "CIFAR10", "image_size": 32, "random_flip": True, "centered": False,
             "uniform_dequantization": False, "num_channels": 3},
    "model": {"sigma_min": 0.01, "sigma_max": 50, "num_scales": 1000, "beta_min": 0.1, "beta_max": 20.0,
              "dropout": 0.1, "embedding_type": "fourier"},
    "optim": _OPTIM_ADAM,
    "seed": 42,
}

# default_celeba_configs.py and default_lsun_configs.py, written as their differences from CIFAR-10.
_CELEBA = merge_config(_CIFAR10, {
    "sampling": {"snr": 0.17},
    "eval": {"begin_ckpt": 1, "enable_sampling": True},
    "data": {"dataset": "CELEBA", "image_size": 64},
    "model": {"sigma_max": 90.0},
})

_LSUN = merge_config(_CIFAR10, {
    "training": {"batch_size": 64, "n_iters": 2400001, "snapshot_freq_for_preemption": 5000},
    "sampling": {"snr": 0.075},
    "eval": {"begin_ckpt": 50, "end_ckpt": 96, "batch_size": 512, "enable_sampling": True},
    "data": {"dataset": "LSUN", "image_size": 256},
    "model": {"sigma_max": 378, "num_scales": 2000, "dropout": 0.0},
})

#: ``configs/default_<name>_configs.py`` by module name (the ``.py`` parser resolves its imports with these).
DEFAULTS: dict[str, RawConfig] = {
    "default_cifar10_configs": _CIFAR10,
    "default_celeba_configs": _CELEBA,
    "default_lsun_configs": _LSUN,
}

# ---- model sections shared by many files ---------------------------------------------------------------------


def _ncsnpp(**overrides: Any) -> RawConfig:
    """NCSN++ model section of ``ve/cifar10_ncsnpp_continuous.py``, with ``overrides``."""
    model = {"name": "ncsnpp", "scale_by_sigma": True, "ema_rate": 0.999, "normalization": "GroupNorm",
             "nonlinearity": "swish", "nf": 128, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 4,
             "attn_resolutions": [16], "resamp_with_conv": True, "conditional": True, "fir": True,
             "fir_kernel": [1, 3, 3, 1], "skip_rescale": True, "resblock_type": "biggan", "progressive": "none",
             "progressive_input": "residual", "progressive_combine": "sum", "attention_type": "ddpm",
             "init_scale": 0.0, "fourier_scale": 16, "conv_size": 3}
    model.update(overrides)
    return model


def _without(section: RawConfig, *keys: str) -> RawConfig:
    """``section`` without ``keys`` (for files that do not set an entry that the shared section has)."""
    return {k: v for k, v in section.items() if k not in keys}


def _ddpmpp(**overrides: Any) -> RawConfig:
    """DDPM++ model section of ``vp/cifar10_ddpmpp_continuous.py``, with ``overrides``."""
    return _ncsnpp(scale_by_sigma=False, ema_rate=0.9999, fir=False, progressive_input="none",
                   embedding_type="positional", **overrides)


def _ddpm(**overrides: Any) -> RawConfig:
    """DDPM model section of ``vp/ddpm/cifar10.py``, with ``overrides``."""
    model = {"name": "ddpm", "scale_by_sigma": False, "ema_rate": 0.9999, "normalization": "GroupNorm",
             "nonlinearity": "swish", "nf": 128, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 2,
             "attn_resolutions": [16], "resamp_with_conv": True, "conditional": True}
    model.update(overrides)
    return model


def _ncsn(**overrides: Any) -> RawConfig:
    """NCSN (v1/v2) model section (``ve/ncsn/*.py``, ``ve/ncsnv2/*.py``), with ``overrides``."""
    model = {"name": "ncsn", "scale_by_sigma": False, "normalization": "InstanceNorm++", "nonlinearity": "elu",
             "nf": 128, "interpolation": "bilinear"}
    model.update(overrides)
    return model


_NCSN_OPTIM = {"weight_decay": 0, "optimizer": "Adam", "lr": 1e-3, "beta1": 0.9, "amsgrad": False, "eps": 1e-8,
               "warmup": 0, "grad_clip": -1.0}

_VE_PC = {"method": "pc", "predictor": "reverse_diffusion", "corrector": "langevin"}
_EM = {"method": "pc", "predictor": "euler_maruyama", "corrector": "none"}
_ANCESTRAL = {"method": "pc", "predictor": "ancestral_sampling", "corrector": "none"}
_VE_CONT = {"sde": "vesde", "continuous": True}
_VE_DISC = {"sde": "vesde", "continuous": False}
_CENTERED = {"centered": True}


def _ald(n_steps_each: int, snr: float) -> RawConfig:
    return {"method": "pc", "predictor": "none", "corrector": "ald", "n_steps_each": n_steps_each, "snr": snr}


def _vp_like(sde: str, continuous: bool, sampling: RawConfig, model: RawConfig, **training: Any) -> RawConfig:
    """Overrides of the CIFAR-10 VP / sub-VP files: ``reduce_mean=True`` and centred data."""
    return {"training": {"sde": sde, "continuous": continuous, "reduce_mean": True, **training},
            "sampling": sampling, "data": _CENTERED, "model": model}


# ---- the two files that do not start from a default config ---------------------------------------------------

_HIGHRES_1024 = {
    "training": {"batch_size": 8, "n_iters": 2400001, "snapshot_freq": 50000, "log_freq": 50, "eval_freq": 100,
                 "snapshot_freq_for_preemption": 5000, "snapshot_sampling": True, "sde": "vesde",
                 "continuous": True, "likelihood_weighting": False, "reduce_mean": False},
    "sampling": {"method": "pc", "predictor": "reverse_diffusion", "corrector": "langevin",
                 "probability_flow": False, "snr": 0.15, "n_steps_each": 1, "noise_removal": True},
    "eval": {"batch_size": 1024, "num_samples": 50000, "begin_ckpt": 1, "end_ckpt": 96},
    "data": {"dataset": "CelebAHQ", "image_size": 1024, "centered": False, "random_flip": True,
             "uniform_dequantization": False, "num_channels": 3,
             "tfrecords_path": "/atlas/u/yangsong/celeba_hq/-r10.tfrecords"},
    "model": _ncsnpp(sigma_max=1348, num_scales=2000, ema_rate=0.9999, sigma_min=0.01, nf=16,
                     ch_mult=[1, 2, 4, 8, 16, 32, 32, 32], num_res_blocks=1, dropout=0.0,
                     progressive="output_skip", progressive_input="input_skip", embedding_type="fourier"),
    "optim": {"weight_decay": 0, "optimizer": "Adam", "lr": 2e-4, "beta1": 0.9, "amsgrad": False, "eps": 1e-8,
              "warmup": 5000, "grad_clip": 1.0},
    "seed": 42,
}

_LSUN_NCSNPP = _ncsnpp(ch_mult=[1, 1, 2, 2, 2, 2, 2], num_res_blocks=2, progressive="output_skip",
                       progressive_input="input_skip")

# (one-line description, default config or None for a self-contained file, overrides) for every file of the original
# configs/ tree. The description: SDE, network, data, resolution, then where it is used.
_PRESETS: dict[str, tuple[str, RawConfig | None, RawConfig]] = {
    # ---- VE SDE --------------------------------------------------------------------------------------------
    "ve/cifar10_ncsnpp_continuous": (
        "VE SDE, continuous, NCSN++, CIFAR-10 32x32: Score SDE (Song et al. 2021), 'NCSN++ cont.'",
        _CIFAR10, {"training": _VE_CONT, "sampling": _VE_PC, "model": _ncsnpp()}),
    "ve/cifar10_ncsnpp_deep_continuous": (
        "VE SDE, continuous, NCSN++ deep (8 blocks), CIFAR-10 32x32: Score SDE (Song et al. 2021), its best FID",
        _CIFAR10, {
        "training": {**_VE_CONT, "n_iters": 950001}, "sampling": _VE_PC, "model": _ncsnpp(num_res_blocks=8)}),
    "ve/cifar10_ncsnpp": (
        "VE SDE, discrete (SMLD), NCSN++, CIFAR-10 32x32: Score SDE (Song et al. 2021), architecture study",
        _CIFAR10, {
        "training": _VE_DISC, "sampling": _VE_PC,
        "model": _without(_ncsnpp(embedding_type="positional"), "fourier_scale")}),
    "ve/cifar10_ddpm": (
        "VE SDE, discrete (SMLD), DDPM, CIFAR-10 32x32: Score SDE (Song et al. 2021), Ho et al.'s U-Net, SMLD loss",
        _CIFAR10, {
        "training": _VE_DISC, "sampling": _VE_PC,
        "model": _ddpm(scale_by_sigma=True, ema_rate=0.999, conv_size=3)}),
    "ve/celeba_ncsnpp": (
        "VE SDE, discrete (SMLD), NCSN++, CelebA 64x64: Score SDE (Song et al. 2021) code",
        _CELEBA, {
        "training": _VE_DISC, "sampling": _VE_PC,
        "model": _without(_ncsnpp(sigma_begin=90, embedding_type="positional"), "fourier_scale")}),
    "ve/celebahq_ncsnpp_continuous": (
        "VE SDE, continuous, NCSN++, CelebA-HQ 1024x1024: Score SDE (Song et al. 2021), high-resolution samples",
        None, _HIGHRES_1024),
    "ve/ffhq_ncsnpp_continuous": (
        "VE SDE, continuous, NCSN++, FFHQ 1024x1024: Score SDE (Song et al. 2021) code",
        None, merge_config(_HIGHRES_1024, {
        "training": {"reduce_mean": True},
        "data": {"dataset": "FFHQ", "tfrecords_path": "/raid/song/ffhq-dataset/ffhq/ffhq-r10.tfrecords"}})),
    "ve/celebahq_256_ncsnpp_continuous": (
        "VE SDE, continuous, NCSN++, CelebA-HQ 256x256: Score SDE (Song et al. 2021) code",
        _LSUN, {
        "training": _VE_CONT, "sampling": _VE_PC,
        "data": {"dataset": "CelebAHQ", "image_size": 256,
                 "tfrecords_path": "/home/yangsong/ncsc/celebahq/r08.tfrecords"},
        "model": {**_LSUN_NCSNPP, "sigma_max": 348}}),
    "ve/ffhq_256_ncsnpp_continuous": (
        "VE SDE, continuous, NCSN++, FFHQ 256x256: Score SDE (Song et al. 2021) code",
        _LSUN, {
        "training": _VE_CONT, "sampling": _VE_PC,
        "data": {"dataset": "FFHQ", "image_size": 256,
                 "tfrecords_path": "/home/yangsong/ncsc/ffhq/ffhq-r08.tfrecords"},
        "model": {**_LSUN_NCSNPP, "sigma_max": 348}}),
    "ve/bedroom_ncsnpp_continuous": (
        "VE SDE, continuous, NCSN++, LSUN bedroom 256x256: Score SDE (Song et al. 2021) code",
        _LSUN, {
        "training": _VE_CONT, "sampling": _VE_PC, "data": {"category": "bedroom"}, "model": _LSUN_NCSNPP}),
    "ve/church_ncsnpp_continuous": (
        "VE SDE, continuous, NCSN++, LSUN church 256x256: Score SDE (Song et al. 2021) code",
        _LSUN, {
        "training": _VE_CONT, "sampling": _VE_PC, "data": {"category": "church_outdoor"},
        "model": {**_LSUN_NCSNPP, "sigma_max": 380}}),
    # ---- NCSN (v1) and its ablations (techniques 1, 2, 4, 5 of NCSNv2) -----------------------------------------
    "ve/ncsn/cifar10": (
        "VE SDE, discrete, NCSN, CIFAR-10 32x32: Song & Ermon 2019 (10 noise levels, annealed Langevin)",
        _CIFAR10, {
        "training": _VE_DISC, "sampling": _ald(100, 0.316),
        "model": _ncsn(sigma_max=1, num_scales=10, ema_rate=0.0), "optim": _NCSN_OPTIM}),
    "ve/ncsn/cifar10_5": (
        "VE SDE, discrete, NCSN, CIFAR-10 32x32: NCSNv2 ablation (Song & Ermon 2020), technique 5 (EMA)",
        _CIFAR10, {
        "training": _VE_DISC, "sampling": _ald(100, 0.316),
        "model": _ncsn(sigma_max=1, num_scales=10, ema_rate=0.999), "optim": _NCSN_OPTIM}),
    "ve/ncsn/cifar10_124": (
        "VE SDE, discrete, NCSN, CIFAR-10 32x32: NCSNv2 ablation (Song & Ermon 2020), techniques 1, 2, 4",
        _CIFAR10, {
        "training": _VE_DISC, "sampling": _ald(5, 0.176), "model": _ncsn(num_scales=232, ema_rate=0.0),
        "optim": _NCSN_OPTIM}),
    "ve/ncsn/cifar10_1245": (
        "VE SDE, discrete, NCSN, CIFAR-10 32x32: NCSNv2 ablation (Song & Ermon 2020), techniques 1, 2, 4, 5",
        _CIFAR10, {
        "training": _VE_DISC, "sampling": _ald(5, 0.176), "model": _ncsn(num_scales=232, ema_rate=0.999),
        "optim": _NCSN_OPTIM}),
    "ve/ncsn/celeba": (
        "VE SDE, discrete, NCSN, CelebA 64x64: Song & Ermon 2019 (10 noise levels, annealed Langevin)",
        _CELEBA, {
        "training": {"loss": "vesde", "continuous": False}, "sampling": _ald(100, 0.316),
        "model": _ncsn(sigma_max=1, num_scales=10, ema_rate=0.0), "optim": _NCSN_OPTIM}),
    "ve/ncsn/celeba_5": (
        "VE SDE, discrete, NCSN, CelebA 64x64: NCSNv2 ablation (Song & Ermon 2020), technique 5 (EMA)",
        _CELEBA, {
        "training": _VE_DISC, "sampling": _ald(100, 0.316),
        "model": _ncsn(sigma_max=1.0, num_scales=10, ema_rate=0.999), "optim": _NCSN_OPTIM}),
    "ve/ncsn/celeba_124": (
        "VE SDE, discrete, NCSN, CelebA 64x64: NCSNv2 ablation (Song & Ermon 2020), techniques 1, 2, 4",
        _CELEBA, {
        "training": _VE_DISC, "sampling": _ald(5, 0.128), "model": _ncsn(num_scales=500, ema_rate=0.0),
        "optim": _NCSN_OPTIM}),
    "ve/ncsn/celeba_1245": (
        "VE SDE, discrete, NCSN, CelebA 64x64: NCSNv2 ablation (Song & Ermon 2020), techniques 1, 2, 4, 5",
        _CELEBA, {
        "training": _VE_DISC, "sampling": _ald(5, 0.128), "model": _ncsn(num_scales=500, ema_rate=0.999),
        "optim": _NCSN_OPTIM}),
    # ---- NCSNv2 ---------------------------------------------------------------------------------------------
    "ve/ncsnv2/cifar10": (
        "VE SDE, discrete, NCSNv2, CIFAR-10 32x32: Song & Ermon 2020 (232 noise levels)",
        _CIFAR10, {
        "training": _VE_DISC, "sampling": _ald(5, 0.176),
        "model": _ncsn(name="ncsnv2_64", scale_by_sigma=True, num_scales=232, ema_rate=0.999),
        "optim": {**_NCSN_OPTIM, "lr": 1e-4}}),
    "ve/ncsnv2/celeba": (
        "VE SDE, discrete, NCSNv2, CelebA 64x64: Song & Ermon 2020 (500 noise levels)",
        _CELEBA, {
        "training": _VE_DISC, "sampling": _ald(5, 0.128),
        "model": _ncsn(name="ncsnv2_64", scale_by_sigma=True, num_scales=500, ema_rate=0.999),
        "optim": {**_NCSN_OPTIM, "lr": 1e-4}}),
    "ve/ncsnv2/bedroom": (
        "VE SDE, discrete, NCSNv2, LSUN bedroom 128x128: Song & Ermon 2020 (1086 noise levels)",
        _LSUN, {
        "training": {"batch_size": 128, "sde": "vesde", "continuouse": False}, "sampling": _ald(3, 0.095),
        "data": {"category": "bedroom", "image_size": 128},
        "model": _ncsn(name="ncsnv2_128", scale_by_sigma=True, sigma_max=190, num_scales=1086, ema_rate=0.9999,
                       sigma_min=0.01),
        "optim": {**_NCSN_OPTIM, "lr": 1e-4, "grad_clip": -1}}),
    # ---- VP SDE ---------------------------------------------------------------------------------------------
    "vp/cifar10_ddpmpp_continuous": (
        "VP SDE, continuous, DDPM++, CIFAR-10 32x32: Score SDE (Song et al. 2021), 'DDPM++ cont. (VP)'",
        _CIFAR10, _vp_like("vpsde", True, _EM, _ddpmpp())),
    "vp/cifar10_ddpmpp_deep_continuous": (
        "VP SDE, continuous, DDPM++ deep (8 blocks), CIFAR-10 32x32: Score SDE (Song et al. 2021)",
        _CIFAR10, _vp_like(
        "vpsde", True, _EM, _ddpmpp(num_res_blocks=8), n_iters=950001)),
    "vp/cifar10_ddpmpp": (
        "VP SDE, discrete (DDPM), DDPM++, CIFAR-10 32x32: Score SDE (Song et al. 2021), architecture study",
        _CIFAR10, _vp_like("vpsde", False, _ANCESTRAL, _ddpmpp())),
    "vp/cifar10_ncsnpp_continuous": (
        "VP SDE, continuous, NCSN++, CIFAR-10 32x32: Score SDE (Song et al. 2021)",
        _CIFAR10, _vp_like(
        "vpsde", True, _EM, _ncsnpp(scale_by_sigma=False, ema_rate=0.9999, embedding_type="positional"))),
    "vp/cifar10_ncsnpp_deep_continuous": (
        "VP SDE, continuous, NCSN++ deep (8 blocks), CIFAR-10 32x32: Score SDE (Song et al. 2021)",
        _CIFAR10, _vp_like(
        "vpsde", True, _EM,
        _ncsnpp(scale_by_sigma=False, ema_rate=0.9999, embedding_type="positional", num_res_blocks=8),
        n_iters=950001)),
    "vp/cifar10_ncsnpp": (
        "VP SDE, discrete (DDPM), NCSN++, CIFAR-10 32x32: Score SDE (Song et al. 2021) code",
        _CIFAR10, _vp_like(
        "vpsde", False, {**_VE_PC, "corrector": "none"},
        _without(_ncsnpp(scale_by_sigma=False, ema_rate=0.9999, embedding_type="positional"), "fourier_scale"))),
    "vp/ddpm/cifar10": (
        "VP SDE, discrete (DDPM), DDPM, CIFAR-10 32x32: Ho et al. 2020 in Score SDE (Song et al. 2021) code",
        _CIFAR10, _vp_like("vpsde", False, _ANCESTRAL, _ddpm())),
    "vp/ddpm/cifar10_continuous": (
        "VP SDE, continuous, DDPM, CIFAR-10 32x32: Ho et al.'s network, Score SDE (Song et al. 2021)",
        _CIFAR10, _vp_like("vpsde", True, _EM, _ddpm())),
    "vp/ddpm/cifar10_unconditional": (
        "VP SDE, discrete (DDPM), DDPM without time input, CIFAR-10 32x32: Score SDE (Song et al. 2021) code",
        _CIFAR10, _vp_like("vpsde", False, _ANCESTRAL, _ddpm(conditional=False))),
    "vp/ddpm/bedroom": (
        "VP SDE, discrete (DDPM), DDPM, LSUN bedroom 256x256: Ho et al. 2020's LSUN network",
        _LSUN, merge_config(
        _vp_like("vpsde", False, _ANCESTRAL, _ddpm(num_scales=1000, ch_mult=[1, 1, 2, 2, 4, 4])),
        {"data": {"category": "bedroom"}, "optim": {"lr": 2e-5}})),
    "vp/ddpm/church": (
        "VP SDE, discrete (DDPM), DDPM, LSUN church 256x256: Ho et al. 2020's LSUN network",
        _LSUN, merge_config(
        _vp_like("vpsde", False, _ANCESTRAL, _ddpm(num_scales=1000, ch_mult=[1, 1, 2, 2, 4, 4])),
        {"data": {"category": "church_outdoor"}, "optim": {"lr": 2e-5}})),
    "vp/ddpm/celebahq": (
        "VP SDE, discrete (DDPM), DDPM, CelebA-HQ 256x256: Ho et al. 2020's 256x256 network",
        _LSUN, merge_config(
        _vp_like("vpsde", False, _ANCESTRAL, _ddpm(num_scales=1000, ch_mult=[1, 1, 2, 2, 4, 4])),
        {"data": {"dataset": "CelebAHQ", "tfrecords_path": "/atlas/u/yangsong/celeba_hq/-r10.tfrecords",
                  "image_size": 256}, "optim": {"lr": 2e-5}})),
    # ---- sub-VP SDE -----------------------------------------------------------------------------------------
    "subvp/cifar10_ddpm_continuous": (
        "sub-VP SDE, continuous, DDPM, CIFAR-10 32x32: Score SDE (Song et al. 2021)",
        _CIFAR10, _vp_like("subvpsde", True, _EM, _ddpm())),
    "subvp/cifar10_ddpmpp_continuous": (
        "sub-VP SDE, continuous, DDPM++, CIFAR-10 32x32: Score SDE (Song et al. 2021), 'DDPM++ cont. (sub-VP)'",
        _CIFAR10, _vp_like("subvpsde", True, _EM, _ddpmpp())),
    "subvp/cifar10_ddpmpp_deep_continuous": (
        "sub-VP SDE, continuous, DDPM++ deep (8 blocks), CIFAR-10 32x32: Score SDE (Song et al. 2021), best bpd",
        _CIFAR10, _vp_like(
        "subvpsde", True, _EM, _ddpmpp(num_res_blocks=8), n_iters=950001)),
    "subvp/cifar10_ncsnpp_continuous": (
        "sub-VP SDE, continuous, NCSN++, CIFAR-10 32x32: Score SDE (Song et al. 2021)",
        _CIFAR10, _vp_like(
        "subvpsde", True, _EM, _ncsnpp(scale_by_sigma=False, ema_rate=0.9999, embedding_type="positional"))),
    "subvp/cifar10_ncsnpp_deep_continuous": (
        "sub-VP SDE, continuous, NCSN++ deep (8 blocks), CIFAR-10 32x32: Score SDE (Song et al. 2021)",
        _CIFAR10, _vp_like(
        "subvpsde", True, _EM,
        _ncsnpp(scale_by_sigma=False, ema_rate=0.9999, embedding_type="positional", num_res_blocks=8),
        n_iters=950001)),
}


def unknown_preset_error(name: str, names: list[str]) -> ValueError:
    """The error for a preset ``name`` that is not among ``names``: it lists the closest ones (``difflib``)."""
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    hint = f"; closest presets: {', '.join(close)}" if close else ""
    return ValueError(f"unknown preset {name!r}{hint} (list them with `scoresde configs`)")


def list_original_presets() -> list[str]:
    """Names of the original presets, sorted: the paths of the original ``configs/**.py`` files without ``.py``."""
    return sorted(_PRESETS)


def original_preset(name: str) -> RawConfig:
    """The full config of the original preset ``name`` (a fresh deep copy: the caller may modify it).

    ``name`` is the original file's path under ``configs/``, with or without a ``configs/`` prefix and a ``.py``
    suffix. An unknown name raises ``ValueError`` listing the closest names.
    """
    key = name.removeprefix("configs/").removesuffix(".py")
    if key not in _PRESETS:
        raise unknown_preset_error(name, list(_PRESETS))
    _, base, overrides = _PRESETS[key]
    return merge_config(base or {}, overrides)


def original_description(name: str) -> str:
    """The one-line description of the original preset ``name`` (as :func:`original_preset` names it): SDE, network,
    data, resolution and where the Score SDE paper or code uses it."""
    key = name.removeprefix("configs/").removesuffix(".py")
    if key not in _PRESETS:
        raise unknown_preset_error(name, list(_PRESETS))
    return _PRESETS[key][0]
