"""Pictures without matplotlib: 2-D scatter panels drawn with Pillow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw


def scatter_panels(
    panels: Sequence[tuple[str, torch.Tensor]],
    path: str | Path,
    *,
    size: int = 320,
    limits: tuple[float, float, float, float] | None = None,
    max_points: int = 4000,
) -> Path:
    """Write side-by-side scatter plots of 2-D point sets ``(title, points)`` to a PNG at ``path``.

    All panels share the axis ``limits = (xmin, xmax, ymin, ymax)`` (by default the 1st–99th percentile box of
    all points, padded by 25%) so that the sets can be compared by eye.
    """
    if not panels:
        raise ValueError("scatter_panels needs at least one (title, points) panel")
    pts = [p.detach().to(torch.float64).cpu()[:max_points] for _, p in panels]
    for (title, _), p in zip(panels, pts, strict=True):
        if p.dim() != 2 or p.shape[1] != 2:
            raise ValueError(f"panel {title!r}: points must have shape (n, 2), got {tuple(p.shape)}")
    if limits is None:
        allp = torch.cat(pts)
        lo, hi = torch.quantile(allp, 0.01, dim=0), torch.quantile(allp, 0.99, dim=0)
        pad = 0.25 * (hi - lo)
        limits = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    xmin, xmax, ymin, ymax = limits
    header = 18
    image = Image.new("RGB", (size * len(panels), size + header), "white")
    draw = ImageDraw.Draw(image)
    for k, ((title, _), p) in enumerate(zip(panels, pts, strict=True)):
        x0 = k * size
        draw.rectangle([x0, header, x0 + size - 1, header + size - 1], outline=(160, 160, 160))
        draw.text((x0 + 6, 3), title, fill="black")
        u = (p[:, 0] - xmin) / (xmax - xmin) * (size - 1)
        v = (1 - (p[:, 1] - ymin) / (ymax - ymin)) * (size - 1)
        for a, b in zip(u.tolist(), v.tolist(), strict=True):
            if 0 <= a < size and 0 <= b < size:
                draw.rectangle([x0 + a, header + b, x0 + a + 1, header + b + 1], fill=(31, 119, 180))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
