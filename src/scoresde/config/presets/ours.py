"""scoresde's own presets: 2-D toys and the built-in 16x16 digits, beside the original Score SDE ones.

They are built from the same sections as the originals and differ only where the task does: a toy MLP for 2-D
data, and a small DDPM++ for the built-in 16×16 digits sized to train on 2 CPU cores in minutes.
"""

from __future__ import annotations

from typing import Any

from ...data.toy2d import TOY_2D
from .entry import Preset
from .original import original_preset

__all__ = ["OUR_PRESETS", "conditional", "digits", "toy", "toy_phase_space"]

_TOY_TRAINING = {"sde": "vpsde", "continuous": True, "reduce_mean": True, "likelihood_weighting": False,
                 "batch_size": 512, "n_iters": 5000, "snapshot_freq": 2500, "snapshot_freq_for_preemption": 500,
                 "log_freq": 100, "eval_freq": 500, "snapshot_sampling": True, "num_snapshot_samples": 2000}


def toy(dataset: str) -> dict[str, Any]:
    """``toy/<dataset>``: a toy MLP on a built-in 2-D dataset (:data:`scoresde.data.TOY_2D`), continuous VP."""
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


def digits() -> dict[str, Any]:
    """DDPM++ (NCSN++ with positional embedding) on 16x16 digits, continuous VP, sized for 2 CPU cores."""
    base = original_preset("vp/cifar10_ddpmpp_continuous")
    base["training"].update(batch_size=64, n_iters=1000, snapshot_freq=1000, snapshot_freq_for_preemption=100,
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


def toy_phase_space(sde: str) -> dict[str, Any]:
    """PSLD (Pandey & Mandt 2023: beta=8, nu=4.01, Gamma=0.01, kappa=0.04) or CLD (Dockhorn et al. 2022: M^-1=4,
    beta=4, initial velocity variance ratio kappa=0.04, CLD's gamma) on the 2-D mixture: a toy MLP on the 4-D state
    [x, m] predicting the noise of both blocks (HSM), fed the raw time t with time features of angular frequencies
    1..1000 (max_period=1e-3), SSCS sampling."""
    cfg = toy("gaussian_mixture")
    cfg["training"]["sde"] = sde
    sde_keys = ({"beta_min": 8.0, "beta_max": 8.0, "nu": 4.01, "gamma": 0.01, "kappa": 0.04} if sde == "psld" else
                {"beta_min": 4.0, "beta_max": 4.0, "m_inv": 4.0, "kappa": 0.04})
    cfg["model"] = {"name": "toy_mlp", "dim": 4, "hidden": 128, "depth": 3, "time_embed_dim": 32,
                    "max_period": 1e-3, "num_scales": 200, "ema_rate": 0.995, "decomp_mode": "lower",
                    "score_matching": "hsm", "blocks": "all", "mixed_score": False,
                    "mixed_data_var": None, **sde_keys}
    cfg["sampling"] = {"method": "sscs", "grid": "quadratic", "noise_removal": True, "eps": 1e-3}
    return cfg


def digits_psld() -> dict[str, Any]:
    """PSLD on the 16x16 digits: the U-Net of ``digits/vp_ddpmpp`` on the 2-channel state [x, m], fed the raw time
    through Fourier features of log t (no 2x-1 input scaling, no division by sigma, as PSLD's code), HSM, SSCS
    sampling (Pandey & Mandt 2023)."""
    base = digits()
    base["training"]["sde"] = "psld"
    base["model"].update(beta_min=8.0, beta_max=8.0, nu=4.01, gamma=0.01, kappa=0.04, decomp_mode="lower",
                         score_matching="hsm", blocks="all", mixed_score=False, mixed_data_var=None,
                         scale_by_sigma=False, num_scales=250,
                         embedding_type="fourier",
                         fourier_scale=16)
    base["data"]["centered"] = True
    base["sampling"] = {"method": "sscs", "grid": "quadratic", "noise_removal": True, "eps": 1e-3}
    return base


def conditional(base: dict[str, Any], num_classes: int, label_dropout: float = 0.1) -> dict[str, Any]:
    """``base`` made class-conditional: ``model.num_classes`` classes with a learned null label, and
    ``training.label_dropout`` (default 0.1, Ho & Salimans 2022's best FID setting) so that the same network also
    gives the unconditional score for classifier-free guidance; everything else as ``base``."""
    base["model"].update(num_classes=num_classes, null_label="learned")
    base["training"]["label_dropout"] = label_dropout
    return base


#: what each 2-D toy is, for the descriptions of its presets
_TOY_NAMES = {"checkerboard": "checkerboard (uniform on alternate squares)", "swiss_roll": "Swiss roll",
              "two_moons": "two moons", "gaussian_mixture": "Gaussian mixture (3 components, exact scores)"}
_OURS = "scoresde's own"

#: the toy and digits presets by name, each with its one-line description
OUR_PRESETS: dict[str, Preset] = {
    "digits/psld_ddpmpp": Preset(digits_psld, "PSLD SDE (Pandey & Mandt 2023), continuous, DDPM++, digits 16x16: "
                                              f"{_OURS} phase-space demo, HSM, SSCS sampling"),
    "toy/gaussian_mixture_psld": Preset(lambda: toy_phase_space("psld"), "PSLD SDE (Pandey & Mandt 2023), "
                                        f"continuous, MLP, 2-D Gaussian mixture: {_OURS} phase-space toy"),
    "toy/gaussian_mixture_cld": Preset(lambda: toy_phase_space("cld"), "CLD SDE (Dockhorn et al. 2022), continuous, "
                                       f"MLP, 2-D Gaussian mixture: {_OURS} phase-space toy"),
    **{f"toy/{name}": Preset(lambda name=name: toy(name), f"VP SDE, continuous, MLP, 2-D {_TOY_NAMES[name]}: "
                             f"{_OURS} toy, trains on a CPU in seconds")
       for name in sorted(TOY_2D)},
    "digits/vp_ddpmpp": Preset(digits, f"VP SDE, continuous, DDPM++ (nf 32), digits 16x16: {_OURS} demo, trains "
                                       "on 2 CPU cores in minutes"),
    # class-conditional (classifier-free guidance training): the digits 0-9, the mixture's three components
    "digits/vp_ddpmpp_conditional": Preset(lambda: conditional(digits(), 10), "VP SDE, continuous, DDPM++ (nf 32), "
                                           "digits 16x16, conditional on the digit (label dropout 0.1): "
                                           f"{_OURS}, for classifier-free guidance"),
    "toy/gaussian_mixture_conditional": Preset(lambda: conditional(toy("gaussian_mixture"), 3), "VP SDE, "
                                               "continuous, MLP, 2-D Gaussian mixture, conditional on the component: "
                                               f"{_OURS}, for classifier-free guidance"),
}
