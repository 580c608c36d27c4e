"""Training recipes after Score SDE: EDM (Karras et al., NeurIPS 2022) and rectified flow / flow matching (Liu et al.,
ICLR 2023; Lipman et al., ICLR 2023), on the built-in digits and as EDM's CIFAR-10 configuration F.

Every value of the ``edm/cifar10_*`` presets is EDM's (``train.py`` options of the public NVlabs/edm code and Table 7
of the paper), mapped onto the sections of Score SDE's configs: EDM SDE (``sigma = t``, ``sigma_min 0.002``,
``sigma_max 80``), preconditioning ``edm`` with ``sigma_data 0.5`` (Table 1), the EDM loss (``ln s ~ N(-1.2, 1.2^2)``,
``lambda = 1/c_out^2``), Adam at ``lr 1e-3`` (``betas 0.9/0.999``, ``eps 1e-8``) with a 10 Mimg linear ramp-up,
batch 512, 200 Mimg (390 625 steps), EMA half-life 500 kimg with ramp-up ratio 0.05, dropout 0.13, non-leaking
augmentation ``p = 0.12`` with 9 augmentation labels, and Heun's 2nd-order sampler on 18 Karras levels (``rho = 7``,
35 NFE). The digits presets keep ``digits/vp_ddpmpp``'s network, batch, optimizer and steps and change only the
recipe (SDE, preconditioning, objective, EMA rule, sampler) so that the recipes compare at equal cost
(``benchmarks/recipes_digits.py``).
"""

from __future__ import annotations

import functools
from typing import Any

from .entry import Preset
from .original import original_preset
from .ours import digits

__all__ = ["RECIPE_PRESETS", "edm_cifar10", "edm_digits", "fm_digits"]

#: EDM's sampler (Karras et al. 2022, Algorithm 1 with S_churn = 0): Heun on 18 Karras levels, rho 7, 35 NFE, down to
#: sigma_min = 0.002 (``sampling.eps`` unset: the EDM SDE's ``sampling_eps``)
EDM_SAMPLING = {"method": "heun", "grid": "karras", "rho": 7.0, "steps": 18, "noise_removal": True}
#: EDM's recipe on any network section: SDE keys, preconditioning and sigma_data (Table 1)
EDM_MODEL = {"sigma_min": 0.002, "sigma_max": 80.0, "preconditioning": "edm", "sigma_data": 0.5}


def edm_digits() -> dict[str, Any]:
    """``edm/digits``: ``digits/vp_ddpmpp``'s DDPM++ and training budget with EDM's recipe (EDM SDE, preconditioning,
    log-normal noise levels and loss weighting, EMA half-life with ramp-up, Heun sampler)."""
    cfg = digits()
    cfg["training"].update(sde="edm", objective="edm", ema_halflife_kimg=500.0, ema_rampup_ratio=0.05)
    cfg["model"].update(EDM_MODEL, ema_rate=None)
    cfg["sampling"] = dict(EDM_SAMPLING)
    return cfg


def fm_digits() -> dict[str, Any]:
    """``fm/digits``: the same network and budget trained as a rectified flow (``alpha = 1 - t``, ``sigma = t``) with
    the flow-matching velocity loss at logit-normal times (Esser et al. 2024), the network preconditioned as EDM's
    denoiser (its velocity is read from the data prediction), EDM's EMA rule and the Heun sampler."""
    cfg = digits()
    cfg["training"].update(sde="rectified_flow", objective="flow_matching", time_distribution="logit_normal",
                           ema_halflife_kimg=500.0, ema_rampup_ratio=0.05)
    cfg["model"].update(preconditioning="edm", sigma_data=0.5, ema_rate=None)
    cfg["sampling"] = {**EDM_SAMPLING, "grid": "logSNR"}  # eps: RectifiedFlow's sampling_eps, 1e-3
    return cfg


#: EDM's NCSN++ (``SongUNet`` with ``embedding_type='fourier'``, ``channel_mult_noise=2``, ``encoder_type='residual'``,
#: ``resample_filter=[1,3,3,1]``) in our NCSN++'s keys: Fourier features of ``c_noise`` itself (scale 16)
EDM_NCSNPP = {"embedding_type": "fourier", "fourier_log": False, "fourier_scale": 16.0, "noise_channels": 256,
              "progressive": "none", "progressive_input": "residual", "progressive_combine": "sum", "fir": True,
              "fir_kernel": [1, 3, 3, 1]}


def edm_cifar10(conditional: bool, network: str = "ddpmpp") -> dict[str, Any]:
    """``edm/cifar10_{ddpmpp,ncsnpp}_{uncond,cond}``: EDM's configuration F (module docstring) on Score SDE's DDPM++
    (``vp/cifar10_ddpmpp_continuous``: positional noise embedding) or NCSN++ (:data:`EDM_NCSNPP`) with EDM's sizes
    (``model_channels 128``, ``channel_mult 2,2,2``, 4 blocks per resolution, attention at 16x16)."""
    cfg = original_preset("vp/cifar10_ddpmpp_continuous")
    if network == "ncsnpp":
        cfg["model"].update(EDM_NCSNPP)
    steps = 200_000_000 // 512
    cfg["training"].update(sde="edm", objective="edm", batch_size=512, n_iters=steps, ema_halflife_kimg=500.0,
                           ema_rampup_ratio=0.05, augment_p=0.12, snapshot_freq=50_000_000 // 512)
    cfg["model"].update(EDM_MODEL, ema_rate=None, nf=128, ch_mult=[2, 2, 2], num_res_blocks=4, attn_resolutions=[16],
                        dropout=0.13, augment_dim=9)
    cfg["optim"].update(lr=1e-3, beta1=0.9, eps=1e-8, weight_decay=0.0, warmup=10_000_000 // 512, grad_clip=-1.0)
    cfg["sampling"] = dict(EDM_SAMPLING)
    if conditional:
        cfg["model"].update(num_classes=10)
    return cfg


RECIPE_PRESETS: dict[str, Preset] = {
    "edm/digits": Preset(edm_digits, "EDM SDE, continuous, EDM preconditioning and loss, DDPM++ (nf 32), digits "
                                     "16x16: EDM's recipe (Karras et al. 2022) at the digits demo's budget"),
    "fm/digits": Preset(fm_digits, "rectified flow SDE, continuous, flow-matching loss (logit-normal t), DDPM++ "
                                   "(nf 32), digits 16x16: Liu et al. 2023 / Lipman et al. 2023 at the demo's budget"),
    **{f"edm/cifar10_{net}_{kind}": Preset(functools.partial(edm_cifar10, kind == "cond", net),
                                           f"EDM SDE, continuous, EDM preconditioning and loss, {label}, CIFAR-10 "
                                           f"32x32, {desc}: EDM config F (Karras et al. 2022, Table 7)")
       for net, label in (("ddpmpp", "DDPM++"), ("ncsnpp", "NCSN++"))
       for kind, desc in (("uncond", "unconditional"), ("cond", "class-conditional"))},
}
