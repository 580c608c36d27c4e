"""Dynamic thresholding of the data prediction (Saharia et al., "Photorealistic Text-to-Image Diffusion Models with
Deep Language Understanding" (Imagen), NeurIPS 2022, §2.3).

At every evaluation the data prediction ``x0 = E[x_0 | x_t]`` of each sample is clipped to ``[-s, s]`` and divided by
``s``, where ``s`` is the ``p``-th percentile of that sample's absolute pixel values, floored at 1 (a sample already
inside ``[-1, 1]`` at that percentile is left unchanged). Large guidance weights push ``x0`` outside the data range,
which static clipping turns into saturated pixels; dividing by ``s`` pulls the saturated pixels back inward.

Images only: the prediction must have the layout ``(B, C, H, W)``, and the data must follow the ``[-1, 1]``
convention (``data.centered = true``, every preset's default; Imagen's). Other data refuse the option: the percentile
of a low-dimensional vector is not a pixel statistic, and the ``[-s, s]`` clip has no meaning for ``[0, 1]`` data.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_percentile", "dynamic_threshold"]


def check_percentile(percentile: Any) -> float | None:
    """``percentile`` as a float in ``(0, 100]``, or ``None``; else one ``ValueError`` naming it."""
    if percentile is None:
        return None
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < float(percentile) <= 100:
        raise ValueError(f"threshold must be a percentile p in (0, 100] (Imagen uses 99.5), got {percentile!r}")
    return float(percentile)


def dynamic_threshold(x0: Tensor, percentile: float = 99.5) -> Tensor:
    """Imagen's dynamic thresholding of a batch of data predictions ``x0`` ``(B, C, H, W)`` in the ``[-1, 1]``
    convention: ``s = max(1, quantile(|x0_b|, percentile / 100))`` per sample (over all its channels and pixels,
    linear interpolation between order statistics, as ``numpy.percentile``), then ``clip(x0_b, -s, s) / s``.

    Use it on the data prediction of a guided model at large weights (:func:`~scoresde.guidance.classifier_free` and
    :func:`~scoresde.guidance.classifier` take ``threshold=p``); a sampler that clips its output to ``[-1, 1]`` only at
    the end cannot undo pixels that saturated along the way.
    """
    if x0.dim() != 4:
        raise ValueError(f"dynamic thresholding is for images (B, C, H, W) in [-1, 1]; got data of shape "
                         f"{tuple(x0.shape)}")
    flat = x0.abs().flatten(1)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    s = torch.quantile(work, percentile / 100.0, dim=1).clamp(min=1.0).to(x0.dtype).view(-1, 1, 1, 1)
    return torch.maximum(torch.minimum(x0, s), -s) / s
