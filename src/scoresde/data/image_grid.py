"""The image-grid writer: a batch of images ``(B, C, H, W)`` in ``[0, 1]`` saved as one PNG grid.

Training snapshots, ``scoresde sample``, the inverse-problem and latent commands and the demos all write their
images through :func:`save_image_grid`, so every grid of the project has the same layout.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor


def save_image_grid(x: Tensor, path: str | Path, *, nrow: int | None = None, min_size: int = 64) -> Path:
    """Save images ``x`` ``(B, C, H, W)`` with values in ``[0, 1]`` (clipped) as one grid image at ``path``.

    ``nrow`` images per row (default ``ceil(sqrt(B))``: a square-ish grid). Images narrower than ``min_size`` pixels
    are enlarged by an integer nearest-neighbour factor ``s = ceil(min_size / W)`` so that small images (16×16
    digits) can be seen; the grid has ``s`` pixels of black padding between images. The format follows the suffix
    of ``path`` (``.png`` everywhere in this project); missing parent folders are created. Returns ``path``.
    2-D point sets are not images: plot them with :func:`scoresde.training.plots.scatter_panels`.
    """
    if x.dim() != 4:
        raise ValueError(f"save_image_grid takes images (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
    # deferred: torchvision takes seconds to import; the CLI imports this module (keeps `scoresde --help` fast)
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = x.detach().cpu().clamp(0, 1)
    scale = max(1, math.ceil(min_size / x.shape[-1]))
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    nrow = max(1, math.ceil(math.sqrt(x.shape[0]))) if nrow is None else nrow
    save_image(x, str(path), nrow=nrow, padding=scale)
    return path
