"""The one image-array layout of the CLI (channels last, ``scoresde.cli.image_files.ARRAY_LAYOUT``): what ``sample
--out x.npz`` writes is what ``inpaint``/``colorize``/``encode``/``interpolate`` read; a grey stack ``(N, H, W)`` is
``N`` images; a channels-first array is one error line naming the expected layout; written ``.npy`` images are
channels last."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.cli.image_files import read_images, read_mask, save_images


def _save(tmp_path, arr: np.ndarray, name: str = "x.npy"):
    np.save(tmp_path / name, arr)
    return tmp_path / name


def test_a_grey_stack_is_a_batch_of_one_channel_images(tmp_path) -> None:
    stack = np.arange(4 * 16 * 16, dtype=np.uint8).reshape(4, 16, 16)
    x = read_images(_save(tmp_path, stack), (1, 16, 16))
    assert x.shape == (4, 1, 16, 16)
    assert torch.equal(x[2, 0], torch.from_numpy(stack[2]).float() / 255)
    # on a colour run a grey stack is N grey images (each channel the grey value)
    x3 = read_images(_save(tmp_path, stack[:2], "g.npy"), (3, 16, 16))
    assert x3.shape == (2, 3, 16, 16) and torch.equal(x3[1, 2], torch.from_numpy(stack[1]).float() / 255)


def test_channels_last_arrays_are_read_pixel_for_pixel(tmp_path) -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)  # H = 8, W = 6: no shape is ambiguous
    x = read_images(_save(tmp_path, nhwc), (3, 8, 6))
    assert torch.equal(x, torch.from_numpy(nhwc).permute(0, 3, 1, 2).float() / 255)
    one = read_images(_save(tmp_path, nhwc[0], "one.npy"), (3, 8, 6))  # (H, W, C): one image
    assert torch.equal(one, x[:1])
    np.savez(tmp_path / "s.npz", samples=nhwc, step=3)  # what `scoresde sample --out s.npz` writes
    assert torch.equal(read_images(tmp_path / "s.npz", (3, 8, 6)), x)


@pytest.mark.parametrize(("shape", "message"), [
    ((2, 3, 8, 6), "shape (2, 3, 8, 6) is channels first; expected channels last (N, 8, 6, 3)"),
    ((3, 8, 6), "is ambiguous: 3 grey images (N, H, W) or one channels-first image; give (3, 8, 6, 1)"),
    ((2, 8, 6, 2), "does not fit this run's images of 8x6 pixels with 3 channel(s)"),
])
def test_other_layouts_are_one_line_naming_the_expected_one(tmp_path, shape, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        read_images(_save(tmp_path, np.zeros(shape, np.uint8)), (3, 8, 6))
    assert "\n" not in str(err.value)


def test_masks_follow_the_same_layout(tmp_path) -> None:
    mask = np.zeros((2, 8, 6, 1), np.uint8)
    mask[1, :4] = 1
    m = read_mask(str(_save(tmp_path, mask)), (3, 8, 6))
    assert m.shape == (2, 1, 8, 6) and m[1, 0, :4].eq(1).all() and m[0].eq(0).all()
    with pytest.raises(ValueError, match="channels first"):
        read_mask(str(_save(tmp_path, mask.transpose(0, 3, 1, 2), "m.npy")), (3, 8, 6))


def test_written_arrays_are_channels_last_and_read_back(tmp_path) -> None:
    x = torch.rand(2, 3, 8, 6)
    path = save_images(x, tmp_path / "out.npy", nrow=2)
    assert np.load(path).shape == (2, 8, 6, 3)
    assert torch.equal(read_images(path, (3, 8, 6)), x)


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("bad.png", b"hello, not an image\n", "an image"),
    ("cut.png", None, "an image"),
    ("bad.npy", b"x", "a numpy array"),
    ("obj.npy", "pickled", "a numpy array"),
    ("bad.npz", b"PK\x03\x04 broken", "a numpy array"),
])
def test_unreadable_image_and_mask_files_are_one_line(tmp_path, name, content, kind) -> None:
    """--image/--mask files that PIL or numpy cannot read were 16-38-line tracebacks (issue 22)."""
    path = tmp_path / name
    if content is None:  # a truncated PNG
        Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:30])
    elif content == "pickled":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(content)
    readers = [read_images] + ([read_mask] if path.suffix != ".npz" else [])
    for reader in readers:
        with pytest.raises(ValueError, match=rf"^{path} cannot be read as {kind} \(.+\)$"):
            reader(str(path), (1, 16, 16))


def test_an_output_folder_that_cannot_be_written_is_one_line_before_any_work(tmp_path) -> None:
    """sample/likelihood did all the work before the write failed (issue 22): check_out probes the folder first."""
    import os

    from scoresde.cli.common import check_out

    assert check_out(tmp_path / "new" / "x.png", (".png",)) == tmp_path / "new" / "x.png"  # created, writable
    assert not [p for p in (tmp_path / "new").iterdir()]  # the probe left nothing
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: a path under a file cannot be created instead
            blocker = tmp_path / "file"
            blocker.write_text("")
            target = blocker / "x.png"
        else:
            target = locked / "x.png"
        with pytest.raises(ValueError, match=rf"^cannot write {target}: "):
            check_out(target, (".png",))
    finally:
        locked.chmod(0o700)
    with pytest.raises(ValueError, match=r"--out must end in \.png, got 'x\.jpg'"):
        check_out(tmp_path / "x.jpg", (".png",))
