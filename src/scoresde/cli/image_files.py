"""Image and mask files of the image commands (``inpaint``, ``colorize``, ``encode``, ``interpolate``): reading
PNG/JPEG/BMP files or ``.npy``/``.npz`` arrays as images ``(B, C, H, W)`` in ``[0, 1]`` checked against the run's
shape, the inpainting masks of ``--mask`` (a named half or a file), and writing ``--out`` as a PNG grid or a ``.npy``
array.

One layout for every image array the CLI writes or reads: channels last, ``(N, H, W, C)`` (numpy's, PIL's and the
field's convention for image files; what ``scoresde sample --out x.npz`` writes), with :data:`ARRAY_LAYOUT` naming
it in the ``--help`` texts. A stack ``(N, H, W)`` is ``N`` grey images, ``(H, W)`` one grey image and ``(H, W, C)``
one image; a channels-first array ``(N, C, H, W)`` or ``(C, H, W)`` is refused with one line saying what was expected
(torch's layout is only inside the library: tensors ``(B, C, H, W)``). Pixel values in files are ``0..255``
(``uint8``) or floats in ``[0, 1]``; the run's ``data.centered`` maps them to the model's range in the commands.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..checkpoint.atomic import atomic_write
from ..data.image_grid import save_image_grid

#: the named masks of ``scoresde inpaint --mask``: the half of the image that is *observed* (kept)
HALF_MASKS = ("top-half", "bottom-half", "left-half", "right-half")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_ARRAY_SUFFIXES = (".npy", ".npz")

#: the layout of every image array that the CLI writes or reads, as the ``--help`` texts state it
ARRAY_LAYOUT = "channels last: (N, H, W, C), (H, W, C), a grey stack (N, H, W) or one grey image (H, W)"


def _as_float_images(arr: np.ndarray, source: str, unit_range: bool = True) -> Tensor:
    if arr.dtype == np.uint8:
        x = torch.from_numpy(arr.astype(np.float32) / 255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        x = torch.from_numpy(arr.astype(np.float32))
        finite = not x.numel() or bool(torch.isfinite(x).all())
        if unit_range and x.numel() and (not finite or float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError(f"{source}: float pixel values must lie in [0, 1], got [{float(x.min()):.3g}, "
                             f"{float(x.max()):.3g}]")
        if not finite:
            raise ValueError(f"{source}: float pixel values must be finite (a measurement may leave [0, 1])")
    else:
        raise ValueError(f"{source}: pixels must be uint8 (0..255) or float in [0, 1], got {arr.dtype}")
    return x


def channels_last_to_first(arr: np.ndarray, shape: tuple[int, int, int], source: str) -> np.ndarray:
    """An image array of the CLI's layout (:data:`ARRAY_LAYOUT`) as ``(N, C', H, W)`` with ``C'`` the run's ``C`` or 1
    (grey, broadcast later), for a run of images ``shape = (C, H, W)``. A channels-first array, or one of another size,
    is a ``ValueError`` naming the expected shape; so is ``(C, H, W)`` with ``C > 1`` images of ``H x W``, which reads
    both as ``C`` grey images and as one channels-first image (give ``(C, H, W, 1)`` or ``(1, H, W, C)``)."""
    c, h, w = shape
    dims = tuple(arr.shape)
    expected = f"expected channels last (N, {h}, {w}, {c}), ({h}, {w}, {c}), grey (N, {h}, {w}) or ({h}, {w})"
    if arr.ndim == 2 and dims == (h, w):
        return arr[None, None]
    if arr.ndim == 3:
        if dims[:2] == (h, w) and dims[2] in (1, c):
            return arr.transpose(2, 0, 1)[None]  # one image (H, W, C)
        if dims[1:] == (h, w):
            if dims[0] == c > 1:
                raise ValueError(f"{source}: shape {dims} is ambiguous: {dims[0]} grey images (N, H, W) or one "
                                 f"channels-first image; give ({dims[0]}, {h}, {w}, 1) for grey images or "
                                 f"(1, {h}, {w}, {c}) for one image (the CLI's arrays are channels last)")
            return arr[:, None]  # a stack of grey images (N, H, W)
    if arr.ndim == 4 and dims[1:3] == (h, w) and dims[3] in (1, c):
        return arr.transpose(0, 3, 1, 2)
    if arr.ndim in (3, 4) and dims[-2:] == (h, w) and dims[-3] in (1, c):
        raise ValueError(f"{source}: shape {dims} is channels first; {expected} (e.g. numpy's "
                         f"x.transpose({'0, 2, 3, 1' if arr.ndim == 4 else '1, 2, 0'}))")
    raise ValueError(f"{source}: shape {dims} does not fit this run's images of {h}x{w} pixels with {c} "
                     f"channel(s); {expected}")


def _unreadable(path: Path, kind: str, err: BaseException) -> ValueError:
    """One line for a file that PIL or numpy cannot read (truncated, another format, pickled objects)."""
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ValueError(f"{path} cannot be read as {kind} ({detail})")


def _open_grey_or_rgb(path: Path, mode: str) -> np.ndarray:
    """The pixels of an image file converted to PIL ``mode`` (``"L"``/``"RGB"``), or one line naming the file."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:  # PIL: not an image, truncated, bad header
        raise _unreadable(path, "an image", err) from None


def _load_array(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file, or of an ``.npz``: its ``samples`` (what ``scoresde sample`` writes) or its only
    array."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if "samples" in names:
                return archive["samples"]
            if len(names) == 1:
                return archive[names[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # not numpy, truncated, pickled objects
        raise _unreadable(path, "a numpy array", err) from None
    raise ValueError(f"{path}: an .npz of images holds an array 'samples' (as `scoresde sample` writes) or a single "
                     f"array; it has {names}")


def read_images(path: str | Path, shape: tuple[int, int, int], *, unit_range: bool = True) -> Tensor:
    """Images ``(B, C, H, W)`` in ``[0, 1]`` from a PNG/JPEG/BMP file (one image, converted to ``C`` channels) or a
    ``.npy``/``.npz`` array in the CLI's layout (:data:`ARRAY_LAYOUT`, see :func:`channels_last_to_first`), for a run
    of images ``shape = (C, H, W)``; grey images are repeated over ``C`` channels; any other shape is a
    ``ValueError`` naming what was expected. ``unit_range=False`` accepts float arrays with any finite values (a noisy
    measurement, ``scoresde restore``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    c, h, w = shape
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        arr = _open_grey_or_rgb(path, "L" if c == 1 else "RGB")
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if arr.shape[0] != c:  # channels other than 1 and 3: the grey value in every channel
            arr = np.repeat(_open_grey_or_rgb(path, "L")[None], c, axis=0)
        if tuple(arr.shape[1:]) != (h, w):
            raise ValueError(f"{path} is an image of {arr.shape[2]}x{arr.shape[1]} pixels; this run's images are "
                             f"{w}x{h}")
        x = _as_float_images(arr[None], str(path))
    elif path.suffix.lower() in _ARRAY_SUFFIXES:
        x = _as_float_images(np.ascontiguousarray(channels_last_to_first(_load_array(path), shape, str(path))),
                             str(path), unit_range)
    else:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}; use {', '.join(_IMAGE_SUFFIXES)}, .npy "
                         "or .npz")
    if x.shape[0] == 0:
        raise ValueError(f"{path} holds no images (an array of shape {tuple(x.shape)}); give at least one")
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
    """The inpainting mask of ``--mask spec`` (1 = observed, 0 = to fill in) as ``(B, C', H, W)``: a name of
    :data:`HALF_MASKS`, a PNG (pixels > 127 observed, one channel) or a ``.npy`` array of 0/1 (or bool) in the CLI's
    layout (:data:`ARRAY_LAYOUT`); its broadcasting to the images is checked by :func:`scoresde.inpaint`."""
    if spec in HALF_MASKS:
        return half_mask(spec, shape)
    path = Path(spec)
    if path.suffix.lower() not in (*_IMAGE_SUFFIXES, ".npy"):
        raise ValueError(f"--mask {spec!r}: expected one of {', '.join(HALF_MASKS)} or a .png/.npy file")
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} does not exist")
    if path.suffix.lower() == ".npy":
        arr = channels_last_to_first(_load_array(path), shape, f"--mask {path}")
        mask = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32))
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{path}: a mask holds only 0 (to fill in) and 1 (observed)")
        return mask
    mask = torch.from_numpy((_open_grey_or_rgb(path, "L") > 127).astype(np.float32))
    return mask.reshape(1, 1, *mask.shape)


def save_images(x: Tensor, path: str | Path, nrow: int) -> Path:
    """``--out`` of the image commands: images ``(B, C, H, W)`` in ``[0, 1]`` as a PNG grid of ``nrow`` images per
    row (:func:`~scoresde.data.image_grid.save_image_grid`), or as a ``.npy`` float32 array (not clipped) in the CLI's
    layout, channels last ``(B, H, W, C)`` (:data:`ARRAY_LAYOUT`). Written atomically
    (:func:`~scoresde.checkpoint.atomic.atomic_write`): a failed write leaves nothing, one line names ``path``."""
    path = Path(path)
    if path.suffix == ".npy":
        return atomic_write(path, lambda tmp: np.save(tmp, x.detach().cpu().float().permute(0, 2, 3, 1).numpy()))
    if path.suffix != ".png":
        raise ValueError(f"--out must end in .png or .npy, got {path.name!r}")
    return atomic_write(path, lambda tmp: save_image_grid(x, tmp, nrow=nrow))
