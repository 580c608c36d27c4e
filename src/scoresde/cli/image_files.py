"""Image and mask files of the image commands (``inpaint``, ``colorize``, ``encode``, ``interpolate``): reading
PNG/JPEG/BMP files or ``.npy`` arrays as images ``(B, C, H, W)`` in ``[0, 1]`` checked against the run's shape, the
inpainting masks of ``--mask`` (a named half or a file), and writing ``--out`` as a PNG grid or a ``.npy`` array.

Pixel values in files are ``0..255`` (``uint8``) or floats in ``[0, 1]``; the run's ``data.centered`` maps them to
the model's range in the commands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data.image_grid import save_image_grid

#: the named masks of ``scoresde inpaint --mask``: the half of the image that is *observed* (kept)
HALF_MASKS = ("top-half", "bottom-half", "left-half", "right-half")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _as_float_images(arr: np.ndarray, source: str) -> Tensor:
    if arr.dtype == np.uint8:
        x = torch.from_numpy(arr.astype(np.float32) / 255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        x = torch.from_numpy(arr.astype(np.float32))
        if x.numel() and (not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError(f"{source}: float pixel values must lie in [0, 1], got [{float(x.min()):.3g}, "
                             f"{float(x.max()):.3g}]")
    else:
        raise ValueError(f"{source}: pixels must be uint8 (0..255) or float in [0, 1], got {arr.dtype}")
    return x


def read_images(path: str | Path, shape: tuple[int, int, int]) -> Tensor:
    """Images ``(B, C, H, W)`` in ``[0, 1]`` from a PNG/JPEG/BMP file (one image, converted to ``C`` channels) or a
    ``.npy`` array of shape ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)``; ``(C, H, W) = shape`` (the run's) or a
    ``ValueError`` naming both shapes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    c, h, w = shape
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if arr.shape[0] != c:  # channels other than 1 and 3: the grey value in every channel
            arr = np.repeat(np.asarray(Image.open(path).convert("L"), dtype=np.uint8)[None], c, axis=0)
        x = _as_float_images(arr[None], str(path))
    elif path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        arr = arr[None, None] if arr.ndim == 2 else arr[None] if arr.ndim == 3 else arr
        if arr.ndim != 4:
            raise ValueError(f"{path}: expected an array of shape (H, W), (C, H, W) or (B, C, H, W), got "
                             f"{tuple(np.load(path, allow_pickle=False).shape)}")
        x = _as_float_images(arr, str(path))
    else:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}; use {', '.join(_IMAGE_SUFFIXES)} or .npy")
    if tuple(x.shape[1:]) != (c, h, w) and not (x.shape[1] == 1 and tuple(x.shape[2:]) == (h, w)):
        raise ValueError(f"{path} holds images of shape {tuple(x.shape[1:])} (C, H, W); this run's images are "
                         f"{(c, h, w)}")
    return x.expand(x.shape[0], c, h, w).contiguous()


def half_mask(name: str, shape: tuple[int, int, int]) -> Tensor:
    """The mask ``(1, 1, H, W)`` (1 = observed) of a named half: ``top-half`` observes rows ``< H // 2``, and so on
    (:data:`HALF_MASKS`)."""
    if name not in HALF_MASKS:
        raise ValueError(f"unknown mask {name!r}; valid names are {', '.join(HALF_MASKS)} (or a .png/.npy file)")
    _, h, w = shape
    mask = torch.zeros(1, 1, h, w)
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    keep = {"top-half": rows < h // 2, "bottom-half": rows >= h // 2, "left-half": cols < w // 2,
            "right-half": cols >= w // 2}[name]
    mask[0, 0] = keep.expand(h, w).float()
    return mask


def read_mask(spec: str, shape: tuple[int, int, int]) -> Tensor:
    """The inpainting mask of ``--mask spec`` (1 = observed, 0 = to fill in): a name of :data:`HALF_MASKS`, a PNG
    (pixels > 127 observed, one channel) or a ``.npy`` array of 0/1 (or bool) of shape ``(H, W)``, ``(C, H, W)`` or
    ``(B, C, H, W)``; its broadcasting to the images is checked by :func:`scoresde.inpaint`."""
    if spec in HALF_MASKS:
        return half_mask(spec, shape)
    path = Path(spec)
    if path.suffix.lower() not in (*_IMAGE_SUFFIXES, ".npy"):
        raise ValueError(f"--mask {spec!r}: expected one of {', '.join(HALF_MASKS)} or a .png/.npy file")
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} does not exist")
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim not in (2, 3, 4):
            raise ValueError(f"{path}: a mask has shape (H, W), (C, H, W) or (B, C, H, W), got {arr.shape}")
        mask = torch.from_numpy(arr.astype(np.float32))
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{path}: a mask holds only 0 (to fill in) and 1 (observed)")
    else:
        with Image.open(path) as im:
            mask = torch.from_numpy((np.asarray(im.convert("L")) > 127).astype(np.float32))
    return mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))




def save_images(x: Tensor, path: str | Path, nrow: int) -> Path:
    """``--out`` of the image commands: images ``(B, C, H, W)`` in ``[0, 1]`` as a PNG grid of ``nrow`` images per
    row (:func:`~scoresde.data.image_grid.save_image_grid`), or as a ``.npy`` float32 array (not clipped)."""
    path = Path(path)
    if path.suffix == ".npy":
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, x.detach().cpu().float().numpy())
        return path
    if path.suffix != ".png":
        raise ValueError(f"--out must end in .png or .npy, got {path.name!r}")
    return save_image_grid(x, path, nrow=nrow)
