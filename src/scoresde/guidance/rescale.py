"""Rescaled classifier-free guidance (Lin, Liu, Li & Yang, "Common Diffusion Noise Schedules and Sample Steps are
Flawed", WACV 2024, §3.4, eqs. 15-17 and Algorithm 2).

Classifier-free guidance at a large weight inflates the spread of the prediction (overexposed, saturated images).
The rescale matches each sample's guided prediction to the standard deviation of its conditional one and mixes:

    ``x_rescaled = x_cfg * std(x_pos) / std(x_cfg)``,    ``x_final = phi * x_rescaled + (1 - phi) * x_cfg``

with ``x_pos`` the conditional and ``x_cfg`` the guided prediction, the std taken per sample over every non-batch
dimension. The paper applies it to its network's output (a v-prediction model; diffusers' ``guidance_rescale`` to
whatever the network outputs). Here it is applied to the **data prediction** ``x0`` whatever the network predicts, so
that one ``phi`` means the same on an eps, score or x0 network, and the std being matched is the image's (the
overexposure the paper corrects); the result is converted back to the prediction the sampler asks for. The paper
recommends ``phi = 0.7``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_rescale", "rescale_guided"]


def check_rescale(phi: Any) -> float:
    """``phi`` as a float in ``[0, 1]``, else one ``ValueError`` naming it."""
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not 0.0 <= float(phi) <= 1.0:
        raise ValueError(f"rescale must be the mixing weight phi in [0, 1] (0: plain CFG; Lin et al. use 0.7), got "
                         f"{phi!r}")
    return float(phi)


def rescale_guided(guided: Tensor, conditional: Tensor, phi: float) -> Tensor:
    """Lin et al.'s rescale (eqs. 15-17): ``phi * guided * std(conditional) / std(guided) + (1 - phi) * guided``, the
    stds per sample over all non-batch dimensions (with Bessel's correction, which cancels in the ratio). Rows whose
    guided prediction is constant (std 0) are returned unrescaled. Use it on the data predictions of the conditional
    and guided calls (what :func:`~scoresde.guidance.classifier_free` does with ``rescale=phi``)."""
    if guided[0].numel() < 2:
        raise ValueError(f"rescale needs at least 2 values per sample to take a standard deviation; the data have "
                         f"shape {tuple(guided.shape[1:])}")
    dims = tuple(range(1, guided.dim()))
    std_cfg = guided.std(dim=dims, keepdim=True)
    std_pos = conditional.std(dim=dims, keepdim=True)
    ratio = torch.where(std_cfg > 0, std_pos / torch.where(std_cfg > 0, std_cfg, torch.ones_like(std_cfg)),
                        torch.ones_like(std_cfg))
    return phi * (guided * ratio) + (1.0 - phi) * guided
