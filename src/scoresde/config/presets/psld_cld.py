"""Presets of the phase-space papers (PSLD: Pandey & Mandt 2023; CLD: Dockhorn et al. 2022) for image data.

Each entry maps a preset name to a function returning the nested config sections (as the other presets). They are
built on the sections of ``vp/cifar10_ddpmpp_continuous`` (the Score SDE DDPM++ config, same NCSN++ code) with every
value that the papers' repositories set; each function's docstring names the files the values come from. The
networks take the raw time ``t`` (PSLD's convention, :class:`~scoresde.models.PhaseSpaceScoreModel`), data in
``[-1, 1]`` (``data.centered = True``, no ``2x - 1`` inside the network) and no division by a noise level, so the
public PSLD checkpoints load with ``scoresde import --format psld --config psld/<dataset>``.

PSLD trains for a number of epochs on 8 GPUs (``devices=8``) with a per-GPU batch and ``drop_last``; ``n_iters``
below is ``epochs * floor(ceil(N / 8) / per_gpu_batch)`` for a dataset of ``N`` images, ``batch_size`` the global
batch ``8 * per_gpu_batch``. PSLD's sampler is Euler–Maruyama (``em_sde``) on ``n_discrete_steps`` points, here
``sampling.method = 'pc'`` with ``predictor = 'euler_maruyama'``, ``corrector = 'none'`` and ``model.num_scales``
steps on their stride: ``sampling.grid = 'uniform'`` or ``'quadratic'`` (their ``stride_type``).
"""

from __future__ import annotations

from typing import Any

from .entry import Preset
from .original import original_preset

#: PSLD's NCSN++ options shared by every config of ``main/configs/dataset/*/*_psld.yaml`` (``model.score_fn``),
#: under our names (their ``noise_cond`` is our ``conditional``)
_PSLD_NCSNPP = {"name": "ncsnpp", "nonlinearity": "swish", "resamp_with_conv": True, "conditional": True,
                "fir_kernel": [1, 3, 3, 1], "skip_rescale": True, "resblock_type": "biggan", "progressive": "none",
                "progressive_combine": "sum", "init_scale": 0.0, "fourier_scale": 16, "scale_by_sigma": False,
                "normalization": "GroupNorm", "attention_type": "ddpm", "conv_size": 3}


def _image_base() -> dict[str, Any]:
    """The Score SDE DDPM++ sections, to be overwritten key by key."""
    return original_preset("vp/cifar10_ddpmpp_continuous")


def _psld(*, data: dict[str, Any], net: dict[str, Any], nu: float, gamma: float, lr: float, batch_size: int,
          n_iters: int, sampling_steps: int, grid: str = "uniform", beta: float = 8.0, kappa: float = 0.04
          ) -> dict[str, Any]:
    """PSLD (HSM, lower factor, loss ``weighting: fid`` = unweighted noise MSE averaged over entries, Adam with
    ``beta_2 = 0.999``, ``eps = 1e-8``, 5000 warm-up steps, gradient clipping at 1, EMA 0.9999, ``train_eps = 1e-5``,
    sampling ``eval_eps = 1e-3`` with denoising: the shared values of ``main/configs/dataset/*/*_psld.yaml``)."""
    cfg = _image_base()
    cfg["training"].update(sde="psld", continuous=True, reduce_mean=True, likelihood_weighting=False,
                           batch_size=batch_size, n_iters=n_iters, eps=1e-5)
    cfg["data"] = {"random_flip": True, "centered": True, "uniform_dequantization": False, "num_channels": 3, **data}
    model = {k: v for k, v in cfg["model"].items() if k not in ("sigma_min", "sigma_max")}
    model.update(_PSLD_NCSNPP)
    model.update(net)
    model.update(beta_min=beta, beta_max=beta, nu=nu, gamma=gamma, kappa=kappa, decomp_mode="lower",
                 score_matching="hsm", blocks="all", mixed_score=False, mixed_data_var=None, num_scales=sampling_steps,
                 ema_rate=0.9999)
    cfg["model"] = model
    cfg["optim"].update(optimizer="Adam", lr=lr, beta1=0.9, eps=1e-8, weight_decay=0.0, warmup=5000, grad_clip=1.0)
    cfg["sampling"] = {"method": "pc", "predictor": "euler_maruyama", "corrector": "none", "noise_removal": True,
                       "probability_flow": False, "eps": 1e-3, "snr": 0.16, "n_steps_each": 1, "grid": grid}
    cfg["seed"] = 0
    return cfg


def psld_cifar10() -> dict[str, Any]:
    """PSLD on CIFAR-10 (Pandey & Mandt 2023, who report FID 2.10 on CIFAR-10).

    Source: ``scripts_psld/sota/uncond/cifar10/train_uncond_psld.sh`` (the README's command) over
    ``main/configs/dataset/cifar10/cifar10_psld.yaml`` of ``mandt-lab/PSLD``: ``beta_min = beta_max = 8``,
    ``nu = 4.01``, ``Gamma = 0.01``, ``kappa = 0.04``, ``decomp_mode = lower``, HSM; NCSN++ ``nf = 128``,
    ``ch_mult = [2, 2, 2]``, 8 residual blocks, attention at 16, dropout 0.15, FIR, ``progressive_input =
    residual``, Fourier embedding (of ``log t``); lr 2e-4; batch 16 on 8 GPUs (128); 2500 epochs of CIFAR-10's 50000
    images = 975000 steps. Sampling: the yaml's ``em_sde`` with ``n_discrete_steps = 1000``, uniform stride
    (``scripts_psld/sota/uncond/cifar10/sample_uncond_psld.sh`` uses 50 steps for its speed/quality study, on a
    checkpoint trained with ``nu = 4.02``, ``Gamma = 0.02``: override those with ``--set`` to load it).
    """
    net = {"nf": 128, "ch_mult": [2, 2, 2], "num_res_blocks": 8, "attn_resolutions": [16], "dropout": 0.15,
           "fir": True, "progressive_input": "residual", "embedding_type": "fourier"}
    data = {"dataset": "CIFAR10", "image_size": 32}
    return _psld(data=data, net=net, nu=4.01, gamma=0.01, lr=2e-4, batch_size=128, n_iters=2500 * 390,
                 sampling_steps=1000)


def psld_celeba64() -> dict[str, Any]:
    """PSLD on CelebA 64x64 (Pandey & Mandt 2023, who report FID 2.01 on CelebA-64).

    Source: ``scripts_psld/sota/uncond/celeba64/train_uncond_psld.sh`` over
    ``main/configs/dataset/celeba64/celeba64_psld.yaml``: ``beta = 8`` (yaml), ``nu = 4.005``, ``Gamma = 0.005``,
    ``kappa = 0.04``, lower factor, HSM; NCSN++ ``nf = 128``, ``ch_mult = [1, 2, 2, 2]``, 4 residual blocks,
    attention at 16, dropout 0.1, FIR, ``progressive_input = residual``, Fourier embedding; lr 2e-4; batch 16 on 8
    GPUs (128); 500 epochs of the 202599 ``img_align_celeba`` files = 500 * 1582 = 791000 steps. Sampling:
    ``scripts_psld/sota/uncond/celeba64/sample_uncond_psld.sh``, 250 Euler–Maruyama steps on their quadratic
    stride. PSLD resizes the 178x218 aligned images to 64x64 without cropping; our
    ``CELEBA`` folder loader centre-crops before resizing (the Score SDE preprocessing).
    """
    net = {"nf": 128, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 4, "attn_resolutions": [16], "dropout": 0.1,
           "fir": True, "progressive_input": "residual", "embedding_type": "fourier"}
    data = {"dataset": "CELEBA", "image_size": 64}
    return _psld(data=data, net=net, nu=4.005, gamma=0.005, lr=2e-4, batch_size=128, n_iters=500 * 1582,
                 sampling_steps=250, grid="quadratic")


def psld_afhqv2_128() -> dict[str, Any]:
    """PSLD on AFHQv2 128x128 (Pandey & Mandt 2023).

    Source: ``scripts_psld/sota/uncond/afhqv2/train_uncond_psld.sh`` over
    ``main/configs/dataset/afhqv2/afhqv2128_psld.yaml``: ``beta = 8``, ``nu = 4.01``, ``Gamma = 0.01``,
    ``kappa = 0.04``, lower factor, HSM; NCSN++ ``nf = 160``, ``ch_mult = [1, 2, 2, 3, 3]``, 2 residual blocks,
    attention at 8 and 16, dropout 0.2, no FIR, ``progressive_input = none``, sinusoidal (positional) embedding of
    ``t`` (the yaml's values, which the script does not override); lr 1e-4; batch 8 on 8 GPUs (64); 2500 epochs of
    the 14336-image AFHQv2 training set = 2500 * 224 = 560000 steps. Sampling:
    ``scripts_psld/sota/uncond/afhqv2/sample_uncond_psld.sh``, 250 Euler–Maruyama steps on their quadratic stride.
    Data: ``dataset = 'folder'`` with ``data.root`` the folder of training images.
    """
    net = {"nf": 160, "ch_mult": [1, 2, 2, 3, 3], "num_res_blocks": 2, "attn_resolutions": [8, 16],
           "dropout": 0.2, "fir": False, "progressive_input": "none", "embedding_type": "positional"}
    data = {"dataset": "folder", "image_size": 128}
    return _psld(data=data, net=net, nu=4.01, gamma=0.01, lr=1e-4, batch_size=64, n_iters=2500 * 224,
                 sampling_steps=250, grid="quadratic")


def cld_cifar10() -> dict[str, Any]:
    """CLD on CIFAR-10 (Dockhorn, Vahdat & Kreis 2022), in scoresde's phase-space setup.

    Source: ``configs/default_cifar10.txt`` and ``configs/specific_cifar10.txt`` of ``nv-tlabs/CLD-SGM`` (read in
    the ``dashstander/CLD-SGM`` copy) and its README's training command: ``M^-1 = 4``, ``beta(t) = beta0 + beta1 t``
    with ``beta0 = 4``, ``beta1 = 0`` (constant 4), ``gamma = 0.04`` (initial velocity variance ``gamma M``; our
    ``kappa``),
    critical damping ``Gamma = 2 sqrt(M) = 1``, HSM (``cld_objective``), ``loss_eps = 1e-5``; NCSN++ ``nf = 128``,
    ``ch_mult = [1, 2, 2, 2]``, 8 residual blocks, attention at 16, dropout 0.1, FIR, ``progressive_input =
    residual``, Fourier embedding (scale 16), EMA 0.9999; Adam lr 2e-4, 100000 warm-up steps, clipping at 1,
    800000 steps; batch 64 (the README's single-GPU command); sampling with the probability-flow ODE,
    ``sampling_eps = 1e-3``, denoising.

    The network predicts the noise of the velocity block only (``model.blocks = 'momentum'``, a C-channel output)
    with CLD's mixed score (``mixed_score = true``: ``model.mixed_score``, the Gaussian reference score of the
    velocity added to ``-L_t^-T eps_theta``, :func:`scoresde.models.phase_space_model.reference_score` with
    ``mixed_data_var = 0`` as CLD's code). Difference from the paper: the unweighted noise-MSE loss stands in for
    CLD's ``reweightedv2`` weighting. CLD's own checkpoint files (not Lightning files) are not importable here.
    """
    cfg = _image_base()
    cfg["training"].update(sde="cld", continuous=True, reduce_mean=True, likelihood_weighting=False,
                           batch_size=64, n_iters=800000, eps=1e-5)
    cfg["data"] = {"dataset": "CIFAR10", "image_size": 32, "random_flip": True, "centered": True,
                   "uniform_dequantization": False, "num_channels": 3}
    model = {k: v for k, v in cfg["model"].items() if k not in ("sigma_min", "sigma_max")}
    model.update(_PSLD_NCSNPP)
    model.update(nf=128, ch_mult=[1, 2, 2, 2], num_res_blocks=8, attn_resolutions=[16], dropout=0.1, fir=True,
                 progressive_input="residual", embedding_type="fourier", fourier_scale=16)
    model.update(beta_min=4.0, beta_max=4.0, m_inv=4.0, kappa=0.04, decomp_mode="lower", score_matching="hsm",
                 blocks="momentum", mixed_score=True, mixed_data_var=None, num_scales=1000, ema_rate=0.9999)
    cfg["model"] = model
    cfg["optim"].update(optimizer="Adam", lr=2e-4, beta1=0.9, eps=1e-8, weight_decay=0.0, warmup=100000,
                        grad_clip=1.0)
    cfg["sampling"] = {"method": "ode", "noise_removal": True, "eps": 1e-3, "rtol": 1e-5, "atol": 1e-5,
                       "ode_method": "dopri5"}
    cfg["seed"] = 0
    return cfg


#: the phase-space papers' image presets, each with its one-line description
PHASE_SPACE_PRESETS: dict[str, Preset] = {
    "psld/cifar10": Preset(psld_cifar10, "PSLD SDE, continuous, NCSN++, CIFAR-10 32x32: Pandey & Mandt 2023 "
                                         "(mandt-lab/PSLD configs), HSM"),
    "psld/celeba64": Preset(psld_celeba64, "PSLD SDE, continuous, NCSN++, CelebA 64x64: Pandey & Mandt 2023 "
                                           "(mandt-lab/PSLD configs), HSM"),
    "psld/afhqv2_128": Preset(psld_afhqv2_128, "PSLD SDE, continuous, NCSN++ (no FIR), AFHQv2 128x128 (an image "
                                               "folder): Pandey & Mandt 2023 (mandt-lab/PSLD configs), HSM"),
    "cld/cifar10": Preset(cld_cifar10, "CLD SDE, continuous, NCSN++, CIFAR-10 32x32: Dockhorn et al. 2022 "
                                       "(nv-tlabs/CLD-SGM configs), HSM, probability-flow sampling"),
}
