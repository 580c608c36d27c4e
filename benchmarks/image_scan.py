"""What checking every file of an image folder costs (issue 22 item 6): PIL's ``verify`` (header and PNG chunk CRCs,
what :class:`scoresde.data.ImageFolderDataset` runs when it is built) against a full decode, per file, on 2000
small PNGs (32x32 RGB, random pixels) and 100 large ones (1024x1024 RGB), written to a temporary folder.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/image_scan.py`` (prints a table; best of 3 passes, files in
the page cache).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from scoresde.data import ImageFolderDataset


def _write(folder: Path, count: int, side: int) -> list[Path]:
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    paths = []
    for i in range(count):
        if side <= 64:
            pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        else:  # a photo-like compressible image: a random tile enlarged, shifted per file
            pixels = np.kron(tile, np.ones((side // 64, side // 64, 1), np.uint8)) + np.uint8(i)
        paths.append(folder / f"{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def _best(fn, *args, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def _pass(paths: list[Path], decode: bool) -> None:
    for path in paths:
        with Image.open(io.BytesIO(path.read_bytes())) as im:
            im.convert("RGB").load() if decode else im.verify()


def main() -> None:
    print("| files | size | verify s (ms/file) | decode s (ms/file) | ImageFolderDataset(...) s |")
    print("|---|---|---|---|---|")
    for count, side in ((2000, 32), (100, 1024)):
        with tempfile.TemporaryDirectory() as tmp:
            paths = _write(Path(tmp), count, side)
            verify, decode = _best(_pass, paths, False), _best(_pass, paths, True)
            build = _best(ImageFolderDataset, tmp)
            print(f"| {count} | {side}x{side} | {verify:.3f} ({verify / count * 1e3:.2f}) | {decode:.3f} "
                  f"({decode / count * 1e3:.2f}) | {build:.3f} |")


if __name__ == "__main__":
    main()
