"""FP-Diffusion presets (Lai et al. 2023): ``fp/<base>`` fine-tunes the preset ``<base>`` with the score
Fokker–Planck regulariser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .entry import Preset
from .original import list_original_presets, original_description, original_preset
from .ours import OUR_PRESETS, digits

__all__ = ["FP_BASES", "FP_FINETUNE_ITERS", "FP_PRESETS", "fp_description", "fp_preset"]

#: FP-Diffusion fine-tunes the Score SDE CIFAR-10 checkpoints of these configs
FP_BASES = ("vp/cifar10_ddpmpp_continuous", "vp/cifar10_ddpmpp_deep_continuous", "subvp/cifar10_ddpmpp_continuous",
            "subvp/cifar10_ddpmpp_deep_continuous", "vp/cifar10_ncsnpp_continuous", "subvp/cifar10_ncsnpp_continuous",
            "ve/cifar10_ncsnpp_continuous", "ve/cifar10_ncsnpp_deep_continuous")
FP_FINETUNE_ITERS = 100_000

#: the bases that are not original presets (ours, trained on 2 CPU cores)
_OUR_BASES: dict[str, Callable[[], dict[str, Any]]] = {"digits/vp_ddpmpp": digits}


def fp_preset(base_name: str) -> dict[str, Any]:
    """``fp/<base>``: fine-tuning the preset ``base`` with the score Fokker–Planck regulariser.

    The network, SDE, data and sampling sections are the base preset's (so ``--init-from`` its checkpoint loads);
    the objective and optimiser follow FP-Diffusion's ``configs/default_cifar10_configs.py``: likelihood-weighted
    DSM + ``alpha`` vector + ``beta`` scalar score-FPE terms (``scalar_fp='both'``, ``fp_wgt_type='ll'``, alpha 0.15,
    beta 0.01, m 2), batch 48, Adam lr 2e-4 with 5000 warm-up steps, seed 42. ``n_iters`` is our choice
    (``FP_FINETUNE_ITERS``): the released config keeps the original 1,300,001, which only makes sense when the
    pretrained step counter is resumed; ``--init-from`` starts the fine-tuning run at step 0.
    """
    original = base_name in list_original_presets()
    cfg = original_preset(base_name) if original else _OUR_BASES[base_name]()
    cfg["training"].update(likelihood_weighting=True, fp_alpha=0.15, fp_beta=0.01, fp_mode="both",
                           fp_weighting="ll", fp_m=2.0)
    if original:
        cfg["training"].update(batch_size=48, n_iters=FP_FINETUNE_ITERS)
        cfg["optim"].update(lr=2e-4, warmup=5000)
        cfg["seed"] = 42
    else:  # the built-in digits: a short fine-tuning run at a tenth of the pre-training learning rate, on 2 CPU cores
        cfg["training"].update(n_iters=300, snapshot_freq=100, snapshot_freq_for_preemption=50, eval_freq=100)
        cfg["optim"].update(lr=2e-4, warmup=0)
    return cfg


def fp_description(base_name: str) -> str:
    """The one-line description of ``fp/<base_name>``: the base preset's SDE, network, data and resolution (its
    description up to the source), then FP-Diffusion's fine-tuning."""
    base = (original_description(base_name) if base_name in list_original_presets()
            else OUR_PRESETS[base_name].description)
    return f"{base.split(': ', 1)[0]}: FP-Diffusion (Lai et al. 2023) fine-tuning with the score FPE regulariser"


#: ``fp/<base>`` for every base, each with its one-line description
FP_PRESETS: dict[str, Preset] = {
    f"fp/{name}": Preset(lambda name=name: fp_preset(name), fp_description(name)) for name in (*FP_BASES, *_OUR_BASES)}
