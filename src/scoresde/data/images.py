"""Image datasets and the Score SDE preprocessing.

Every dataset yields ``(image, label)`` with ``image`` a ``uint8`` tensor ``(C, H, W)`` and ``label`` an int
(``-1`` when unlabelled). Conversion to the model's range (random flip, uniform dequantisation, centring) is
:func:`preprocess`, applied on whole batches with an explicit generator so that a training run is reproducible
and resumable.

* ``digits``: scikit-learn's 8×8 handwritten digits (shipped inside scikit-learn, no download), 0..16 levels
  scaled to 0..255 and resized to 16×16: the built-in dataset of the demo.
* ``cifar10``: the CIFAR-10 "python version" batches, read without executing code from the pickles; downloaded
  through torchvision on a user's machine with ``download=True``.
* ``folder``: a folder or ``.zip`` of PNG/JPEG images (EDM's layout: optional ``dataset.json`` with
  ``{"labels": [[relative_path, label], ...]}``), for CelebA, CelebA-HQ, FFHQ, LSUN and the like, with the
  original centre-crop + resize option.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
SPLITS = ("train", "test")


class TensorImageDataset(Dataset):
    """An in-memory dataset of ``uint8`` images ``(N, C, H, W)`` with optional integer labels ``(N,)``."""

    def __init__(self, images: Tensor, labels: Tensor | None = None, name: str = "tensor") -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"{name}: images must be a uint8 tensor (N, C, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if labels is not None and labels.shape != (images.shape[0],):
            raise ValueError(f"{name}: labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images, self.labels, self.name = images, labels, name

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        label = -1 if self.labels is None else int(self.labels[index])
        return self.images[index], label

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return tuple(self.images.shape[1:])


def _split_indices(n: int, split: str, test_fraction: float, seed: int) -> Tensor:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are: {', '.join(SPLITS)}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = round(n * test_fraction)
    return perm[n_test:] if split == "train" else perm[:n_test]


def load_digits16(split: str = "train", *, resolution: int = 16, test_fraction: float = 0.2,
                  seed: int = 0) -> TensorImageDataset:
    """scikit-learn's 1797 8×8 digits as ``uint8`` ``(N, 1, resolution, resolution)`` images with labels 0–9.

    Levels ``0..16`` are mapped to ``round(255 v / 16)`` and bilinearly resized (with antialiasing) to
    ``resolution``. The train/test split is a fixed random permutation (``seed``) holding out ``test_fraction``.
    """
    from sklearn.datasets import load_digits  # deferred: start-up time (scikit-learn is heavy)

    digits = load_digits()
    images = torch.from_numpy(digits.images).to(torch.float32)[:, None] * (255.0 / 16.0)
    if resolution != images.shape[-1]:
        images = torch.nn.functional.interpolate(images, size=(resolution, resolution), mode="bilinear",
                                                 antialias=True, align_corners=False)
    images = images.round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(digits.target).to(torch.int64)
    idx = _split_indices(images.shape[0], split, test_fraction, seed)
    return TensorImageDataset(images[idx], labels[idx], name=f"digits-{split}")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers but refuses any other global.

    CIFAR-10's batches are pickles; an ordinary ``pickle.load`` would run any code a tampered file names.
    """

    ALLOWED: frozenset[tuple[str, str]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 3 writes bytes under pickle protocol 2
    })

    def find_class(self, module: str, name: str):  # the pickle hook that resolves globals
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a data pickle")
        if module.startswith("numpy") and module.endswith("multiarray"):
            for candidate in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return getattr(importlib.import_module(candidate), name)
                except ImportError:
                    continue
        if module == "_codecs":
            import codecs  # only for the one pickle global that needs it

            return codecs.encode
        return getattr(np, name)


def read_cifar_batch(path: str | Path) -> tuple[Tensor, Tensor]:
    """Read one CIFAR "python version" batch: ``uint8`` images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``."""
    with open(path, "rb") as f:
        entry = _RestrictedUnpickler(f, encoding="bytes").load()
    if not isinstance(entry, dict) or b"data" not in entry or not ({b"labels", b"fine_labels"} & set(entry)):
        raise ValueError(f"{path}: not a CIFAR batch (expected a dict with b'data' and b'labels')")
    data = np.asarray(entry[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: CIFAR data must have shape (N, 3072), got {data.shape}")
    labels = entry.get(b"labels", entry.get(b"fine_labels"))
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.as_tensor(labels, dtype=torch.int64)


def load_cifar10(root: str | Path, split: str = "train", *, download: bool = False) -> TensorImageDataset:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (all 50000 training or 10000 test images, in file order).

    With ``download=True`` a missing folder is fetched and checked (MD5) with torchvision's downloader.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are: {', '.join(SPLITS)}")
    folder = Path(root) / CIFAR10_FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if not all((folder / n).exists() for n in names):
        if not download:
            raise FileNotFoundError(f"CIFAR-10 not found under {folder} (expected {', '.join(names)}); pass "
                                    "download=True (--set data.download=true) to fetch it")
        from torchvision.datasets.utils import download_and_extract_archive  # deferred: only when downloading

        try:
            download_and_extract_archive(CIFAR10_URL, str(root), md5=CIFAR10_MD5)
        except OSError as err:  # URLError, a refused connection, a full disk: one line, not urllib's traceback
            reason = str(getattr(err, "reason", err)).splitlines()[0]
            raise FileNotFoundError(f"CIFAR-10 could not be downloaded from {CIFAR10_URL} ({reason}); place "
                                    f"{', '.join(names)} under {folder} instead") from None
    parts = [read_cifar_batch(folder / n) for n in names]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    return TensorImageDataset(images, labels, name=f"cifar10-{split}")


def center_crop_resize(image: Image.Image, resolution: int) -> Image.Image:
    """Central square crop to the shorter side, then a bicubic resize to ``resolution`` (Score SDE ``crop_resize``)."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.BICUBIC, reducing_gap=None)
    return image


class ImageFolderDataset(Dataset):
    """Images from a folder (searched recursively) or a ``.zip`` file, decoded lazily.

    Args:
        path: folder or zip file.
        resolution: if given, every image is centre-cropped and resized to ``resolution``²; otherwise all
            images must already have one common size (an image of another size is an error naming the file).
        channels: 3 (RGB) or 1 (grey); images are converted.
        verify: check every file when the dataset is built (PIL ``Image.verify``: the header and, for PNG, every
            chunk's CRC, without decoding the pixels), so that a truncated, corrupt or non-image file is reported
            before training starts, not at the step that first draws it. Measured (benchmarks/image_scan.py, a
            loaded 2-core AMD EPYC): 2000 PNGs of 32x32 take 0.3-0.7 s to verify against 0.55-1.4 s to decode; a
            1024x1024 PNG 0.2-0.5 ms against 31-90 ms, hence the header check (a file that passes it but fails to
            decode is still named when read). ``False`` skips the scan.
        skip_bad_files: what a file failing the scan does: ``False`` (default) one ``ValueError`` naming it (and how
            many others fail); ``True`` leave it out with one warning naming the files left out (the config key
            ``data.skip_bad_files``).
    """

    def __init__(self, path: str | Path, resolution: int | None = None, channels: int = 3, *, verify: bool = True,
                 skip_bad_files: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"dataset path {self.path} does not exist")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if resolution is not None and resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.resolution, self.channels = resolution, channels
        self._zip = zipfile.is_zipfile(self.path) if self.path.is_file() else False
        if self.path.is_file() and not self._zip:
            raise ValueError(f"{self.path} is neither a folder nor a zip file of images")
        self.files = sorted(f for f in self._list_all() if f.lower().endswith(IMAGE_SUFFIXES))
        if not self.files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {self.path}")
        self.labels = self._read_labels()
        if verify:
            self._drop_unreadable(skip_bad_files)
        first = self._load(0)
        self._shape = tuple(first.shape)

    def _list_all(self) -> list[str]:
        if self._zip:
            with zipfile.ZipFile(self.path) as z:
                return [n for n in z.namelist() if not n.endswith("/")]
        return [str(p.relative_to(self.path)).replace("\\", "/") for p in self.path.rglob("*") if p.is_file()]

    def _read_bytes(self, name: str) -> bytes:
        if self._zip:
            with zipfile.ZipFile(self.path) as z:
                return z.read(name)
        return (self.path / name).read_bytes()

    def _read_labels(self) -> dict[str, int] | None:
        names = set(self._list_all())
        if "dataset.json" not in names:
            return None
        where = f"{self.path}/dataset.json"
        try:
            meta = json.loads(self._read_bytes("dataset.json"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{where} is not valid JSON ({str(err).splitlines()[0]})") from None
        labels = meta.get("labels") if isinstance(meta, dict) else None
        if labels is None:
            return None
        if not isinstance(labels, list):
            raise ValueError(f"{where}: 'labels' must be a list of [file name, integer label] pairs, got "
                             f"{type(labels).__name__}")
        out = {}
        for i, entry in enumerate(labels):
            ok = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
            label = entry[1] if ok else None
            if not ok or isinstance(label, bool) or not isinstance(label, int) or label < 0:
                raise ValueError(f"{where}: labels[{i}] = {json.dumps(entry)} must be [file name, integer label >= 0]"
                                 " (EDM's dataset.json)")
            out[entry[0].replace("\\", "/")] = label
        return out

    @staticmethod
    def _unreadable(read) -> str | None:
        """Why the file of ``read()`` (its bytes) is not a readable image (PIL's first line), or ``None`` when its
        header and checksums are intact."""
        try:
            with Image.open(io.BytesIO(read())) as im:
                im.verify()
        except (OSError, SyntaxError, ValueError, zipfile.BadZipFile) as err:  # PIL: truncated, CRC, not an image
            return str(err).splitlines()[0] if str(err) else type(err).__name__
        return None

    def _drop_unreadable(self, skip: bool) -> None:
        """The scan of :class:`ImageFolderDataset`'s ``verify``: refuse (or with ``skip`` leave out, warning once)
        the files that are not readable images."""
        if self._zip:  # one open archive for the whole scan
            with zipfile.ZipFile(self.path) as z:
                bad = [(n, why) for n in self.files if (why := self._unreadable(lambda n=n: z.read(n))) is not None]
        else:
            bad = [(n, why) for n in self.files
                   if (why := self._unreadable((self.path / n).read_bytes)) is not None]
        if not bad:
            return
        (name, why), others = bad[0], len(bad) - 1
        if not skip:
            more = f" ({others} more unreadable file(s) in the folder)" if others else ""
            raise ValueError(f"image {self.path}/{name} cannot be read ({why}): replace or remove it, or set "
                             f"data.skip_bad_files=true to leave unreadable files out{more}")
        dropped = {n for n, _ in bad}
        self.files = [f for f in self.files if f not in dropped]
        shown = ", ".join(n for n, _ in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(f"{self.path}: leaving out {len(bad)} unreadable image(s) of {len(self.files) + len(bad)} "
                      f"(data.skip_bad_files): {shown}", stacklevel=3)
        if not self.files:
            raise ValueError(f"no readable images in {self.path}: all {len(bad)} files fail to load (first: {name}: "
                             f"{why})")

    def _load(self, index: int) -> Tensor:
        name = self.files[index]
        try:
            with Image.open(io.BytesIO(self._read_bytes(name))) as im:
                im = im.convert("RGB" if self.channels == 3 else "L")
                if self.resolution is not None:
                    im = center_crop_resize(im, self.resolution)
                arr = np.asarray(im, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, zipfile.BadZipFile) as err:  # PIL: truncated, not an image
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"image {self.path}/{name} cannot be read ({detail}): replace or remove it") from None
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        image = torch.from_numpy(arr.copy()).permute(2, 0, 1)
        if index and tuple(image.shape) != self._shape:
            raise ValueError(f"image {name} has shape {tuple(image.shape)} (C, H, W) but the dataset's images have "
                             f"{self._shape}; pass a resolution to centre-crop and resize every image")
        return image

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        label = -1 if self.labels is None else self.labels.get(self.files[index], -1)
        return self._load(index), label

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return self._shape


DATASETS = ("digits", "cifar10", "folder")


def load_dataset(name: str, *, split: str = "train", root: str | Path | None = None, resolution: int | None = None,
                 channels: int = 3, download: bool = False, skip_bad_files: bool = False) -> Dataset:
    """Build dataset ``name`` (``digits``, ``cifar10`` or ``folder``); see the module docstring.

    ``root`` is the CIFAR-10 download folder or the image folder/zip; ``resolution`` resizes ``digits`` and
    centre-crops + resizes ``folder`` images; ``skip_bad_files`` leaves unreadable ``folder`` images out with a
    warning instead of refusing the folder (:class:`ImageFolderDataset`).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets are: {', '.join(DATASETS)}")
    if name == "digits":
        return load_digits16(split, resolution=resolution or 16)
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root path")
    if name == "cifar10":
        if resolution not in (None, 32):
            raise ValueError(f"cifar10 images are 32x32, got resolution={resolution}")
        return load_cifar10(root, split, download=download)
    return ImageFolderDataset(root, resolution=resolution, channels=channels, skip_bad_files=skip_bad_files)


def preprocess(
    images: Tensor,
    *,
    centered: bool = False,
    uniform_dequantization: bool = False,
    random_flip: bool = False,
    generator: torch.Generator | None = None,
    flip_draws: Tensor | None = None,
    dequantization_draws: Tensor | None = None,
) -> Tensor:
    """Map a ``uint8`` batch ``(B, C, H, W)`` to the model's range as Score SDE's ``get_dataset`` + scaler do.

    ``x = k / 255`` in ``[0, 1]``; with ``random_flip`` each image is mirrored left-right with probability ½;
    with ``uniform_dequantization`` ``x = (k + u) / 256``, ``u ~ U[0, 1)``; with ``centered`` ``x -> 2x - 1``.
    The uniform draws (``(B,)`` for the flips, ``(B, C, H, W)`` for dequantisation) come from ``generator`` in
    that order, or are given as ``flip_draws`` / ``dequantization_draws`` (e.g. a rank's slice of draws made
    for a whole global batch).
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"preprocess expects uint8 images, got {images.dtype}")
    x = images.to(torch.float32)
    if random_flip:
        if flip_draws is None:
            flip_draws = torch.rand(x.shape[0], generator=generator, device=x.device)
        x = torch.where((flip_draws < 0.5)[:, None, None, None], x.flip(-1), x)
    if uniform_dequantization:
        if dequantization_draws is None:
            dequantization_draws = torch.rand(x.shape, generator=generator, device=x.device)
        x = (x + dequantization_draws) / 256.0
    else:
        x = x / 255.0
    return data_scaler(x, centered)


def data_scaler(x: Tensor, centered: bool) -> Tensor:
    """``[0, 1] -> [-1, 1]`` when ``centered`` (Score SDE ``get_data_scaler``), identity otherwise."""
    return x * 2.0 - 1.0 if centered else x


def inverse_data_scaler(x: Tensor, centered: bool) -> Tensor:
    """Inverse of :func:`data_scaler`: ``[-1, 1] -> [0, 1]`` when ``centered``."""
    return (x + 1.0) / 2.0 if centered else x


def estimate_sigma_max(data: Tensor, *, max_points: int | None = 5000, chunk: int = 1024,
                       generator: torch.Generator | None = None) -> float:
    """Largest pairwise Euclidean distance of the data, the VE ``sigma_max`` (Song & Ermon 2020, Technique 1).

    ``data`` is a float batch in the model's range. With ``max_points`` a random subset of that size is used
    (the maximum over a subset is a lower bound of the full maximum); ``None`` uses every point.
    """
    flat = data.reshape(data.shape[0], -1).to(torch.float64)
    if flat.shape[0] < 2:
        raise ValueError("estimate_sigma_max needs at least two data points")
    if not torch.isfinite(flat).all():
        raise ValueError("estimate_sigma_max: data contain non-finite values")
    if max_points is not None and flat.shape[0] > max_points:
        flat = flat[torch.randperm(flat.shape[0], generator=generator)[:max_points]]
    best = 0.0
    for start in range(0, flat.shape[0], chunk):
        best = max(best, float(torch.cdist(flat[start:start + chunk], flat).max()))
    return best
