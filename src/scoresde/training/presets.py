"""scoresde's own presets (2-D toys, digits) beside the original Score SDE ones, and preset resolution.

Our presets are built from the same sections as the originals and differ only where the task does: a toy MLP
for 2-D data, and a small DDPM++ for the built-in 16×16 digits sized to train on 2 CPU cores in minutes.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..configs import get_preset, list_presets
from ..data import TOY_2D
from .presets_phase_space import PHASE_SPACE_PRESETS

_TOY_TRAINING = {"sde": "vpsde", "continuous": True, "reduce_mean": True, "likelihood_weighting": False,
                 "batch_size": 512, "n_iters": 5000, "snapshot_freq": 2500, "snapshot_freq_for_preemption": 500,
                 "log_freq": 100, "eval_freq": 500, "snapshot_sampling": True, "num_snapshot_samples": 2000}


def _toy(dataset: str) -> dict[str, Any]:
    return {
        "training": dict(_TOY_TRAINING),
        "sampling": {"method": "pc", "predictor": "reverse_diffusion", "corrector": "langevin", "snr": 0.16,
                     "n_steps_each": 1, "noise_removal": True, "probability_flow": False},
        "eval": {"batch_size": 2000, "num_samples": 2000},
        "data": {"dataset": dataset, "image_size": 2, "num_channels": 1, "random_flip": False, "centered": False,
                 "uniform_dequantization": False},
        "model": {"name": "toy_mlp", "hidden": 128, "depth": 3, "time_embed_dim": 32, "beta_min": 0.1,
                  "beta_max": 20.0, "sigma_min": 0.01, "sigma_max": 10.0, "num_scales": 500, "ema_rate": 0.995},
        "optim": {"optimizer": "Adam", "lr": 2e-3, "beta1": 0.9, "eps": 1e-8, "weight_decay": 0.0, "warmup": 100,
                  "grad_clip": 1.0},
        "seed": 0,
    }


def _digits() -> dict[str, Any]:
    """DDPM++ (NCSN++ with positional embedding) on 16x16 digits, continuous VP, sized for 2 CPU cores."""
    base = copy.deepcopy(get_preset("vp/cifar10_ddpmpp_continuous"))
    base["training"].update(batch_size=64, n_iters=1000, snapshot_freq=500, snapshot_freq_for_preemption=100,
                            log_freq=50, eval_freq=250, reduce_mean=True, num_snapshot_samples=64)
    base["sampling"].update(method="pc", predictor="reverse_diffusion", corrector="none")
    base["data"] = {"dataset": "digits", "image_size": 16, "num_channels": 1, "random_flip": False,
                    "centered": True, "uniform_dequantization": False}
    base["model"].update(nf=32, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[8], dropout=0.1,
                         num_scales=250, ema_rate=0.999)
    base["optim"].update(lr=2e-3, warmup=100)
    base["eval"].update(batch_size=256, num_samples=256)
    base["seed"] = 0
    return base


def _toy_phase_space(sde: str) -> dict[str, Any]:
    """PSLD (Pandey & Mandt 2023: beta=8, nu=4.01, Gamma=0.01, kappa=0.04) or CLD (Dockhorn et al. 2022: M^-1=4,
    beta=4, gamma=0.04) on the 2-D mixture: a toy MLP on the 4-D state [x, m] predicting the noise of both blocks
    (HSM), fed the raw time t with time features of angular frequencies 1..1000 (max_period=1e-3), SSCS sampling."""
    cfg = _toy("gaussian_mixture")
    cfg["training"]["sde"] = sde
    sde_keys = ({"beta_min": 8.0, "beta_max": 8.0, "nu": 4.01, "gamma": 0.01, "kappa": 0.04} if sde == "psld" else
                {"beta_min": 4.0, "beta_max": 4.0, "m_inv": 4.0, "gamma": 0.04})
    cfg["model"] = {"name": "toy_mlp", "dim": 4, "hidden": 128, "depth": 3, "time_embed_dim": 32,
                    "max_period": 1e-3, "num_scales": 200, "ema_rate": 0.995, "decomp_mode": "lower",
                    "score_matching": "hsm", "blocks": "all", "mixed_score": False,
                    "mixed_data_var": None, **sde_keys}
    cfg["sampling"] = {"method": "sscs", "grid": "quadratic", "noise_removal": True, "eps": 1e-3}
    return cfg


def _digits_psld() -> dict[str, Any]:
    """PSLD on the 16x16 digits: the U-Net of ``digits/vp_ddpmpp`` on the 2-channel state [x, m], fed the raw time
    through Fourier features of log t (no 2x-1 input scaling, no division by sigma, as PSLD's code), HSM, SSCS
    sampling (Pandey & Mandt 2023)."""
    base = _digits()
    base["training"]["sde"] = "psld"
    base["model"].update(beta_min=8.0, beta_max=8.0, nu=4.01, gamma=0.01, kappa=0.04, decomp_mode="lower",
                         score_matching="hsm", blocks="all", mixed_score=False, mixed_data_var=None,
                         scale_by_sigma=False, num_scales=250,
                         embedding_type="fourier",
                         fourier_scale=16)
    base["data"]["centered"] = True
    base["sampling"] = {"method": "sscs", "grid": "quadratic", "noise_removal": True, "eps": 1e-3}
    return base


# FP-Diffusion (Lai et al. 2023) fine-tunes the Score SDE CIFAR-10 checkpoints of these configs
FP_BASES = ("vp/cifar10_ddpmpp_continuous", "vp/cifar10_ddpmpp_deep_continuous", "subvp/cifar10_ddpmpp_continuous",
            "subvp/cifar10_ddpmpp_deep_continuous", "vp/cifar10_ncsnpp_continuous", "subvp/cifar10_ncsnpp_continuous",
            "ve/cifar10_ncsnpp_continuous", "ve/cifar10_ncsnpp_deep_continuous")
FP_FINETUNE_ITERS = 100_000


def _fp(base_name: str) -> dict[str, Any]:
    """``fp/<base>``: fine-tuning the Score SDE preset ``base`` with the score Fokker–Planck regulariser.

    The network, SDE, data and sampling sections are the base preset's (so ``--init-from`` its checkpoint loads);
    the objective and optimiser follow FP-Diffusion's ``configs/default_cifar10_configs.py``: likelihood-weighted
    DSM + ``alpha`` vector + ``beta`` scalar score-FPE terms (``scalar_fp='both'``, ``fp_wgt_type='ll'``, alpha 0.15,
    beta 0.01, m 2), batch 48, Adam lr 2e-4 with 5000 warm-up steps, seed 42. ``n_iters`` is our choice
    (``FP_FINETUNE_ITERS``): the released config keeps the original 1,300,001, which only makes sense when the
    pretrained step counter is resumed; ``--init-from`` starts the fine-tuning run at step 0.
    """
    cfg = copy.deepcopy(get_preset(base_name)) if base_name in list_presets() else OUR_PRESETS[base_name]()
    cfg["training"].update(likelihood_weighting=True, fp_alpha=0.15, fp_beta=0.01, fp_mode="both",
                           fp_weighting="ll", fp_m=2.0)
    if base_name in list_presets():
        cfg["training"].update(batch_size=48, n_iters=FP_FINETUNE_ITERS)
        cfg["optim"].update(lr=2e-4, warmup=5000)
        cfg["seed"] = 42
    else:  # the built-in digits: a short fine-tuning run at a tenth of the pre-training learning rate, on 2 CPU cores
        cfg["training"].update(n_iters=300, snapshot_freq=100, snapshot_freq_for_preemption=50, eval_freq=100)
        cfg["optim"].update(lr=2e-4, warmup=0)
    return cfg


OUR_PRESETS: dict[str, Any] = {
    "digits/psld_ddpmpp": _digits_psld,
    "toy/gaussian_mixture_psld": lambda: _toy_phase_space("psld"),
    "toy/gaussian_mixture_cld": lambda: _toy_phase_space("cld"),
    **{f"toy/{name}": (lambda name=name: _toy(name)) for name in sorted(TOY_2D)},
    "digits/vp_ddpmpp": _digits,
    **PHASE_SPACE_PRESETS,
}
OUR_PRESETS.update({f"fp/{name}": (lambda name=name: _fp(name)) for name in (*FP_BASES, "digits/vp_ddpmpp")})


def list_all_presets() -> list[str]:
    """Every preset name: ours (``toy/...``, ``digits/...``) and the original Score SDE ones."""
    return sorted(OUR_PRESETS) + list_presets()


def resolve_preset(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts for a preset name (ours or original), a ``.json`` file, an original ``.py`` file or a dict."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    name = str(source)
    if name in OUR_PRESETS:
        return OUR_PRESETS[name]()
    from ..checkpoint.build import resolve_config

    path = Path(name)
    if path.suffix in (".json", ".py") or name in list_presets():
        return resolve_config(source)
    close = difflib.get_close_matches(name, list_all_presets(), n=5, cutoff=0.4)
    hint = f"; closest presets: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown preset {name!r}{hint} (list them with `scoresde configs`)")
