"""Datasets and preprocessing, on small files the tests make (no download)."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.data import (
    ImageFolderDataset,
    estimate_sigma_max,
    inverse_data_scaler,
    load_cifar10,
    load_dataset,
    load_digits16,
    preprocess,
    read_cifar_batch,
    sample_toy_2d,
)


# ---- built-in data ------------------------------------------------------------------------------------------
def test_digits_splits_cover_the_dataset_once() -> None:
    train, test = load_digits16("train"), load_digits16("test")
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    assert train.image_shape == (1, 16, 16) and train.images.dtype == torch.uint8
    assert set(train.labels.tolist()) == set(range(10))
    both = torch.cat([train.images, test.images]).flatten(1)
    assert torch.unique(both, dim=0).shape[0] >= 1790  # (a handful of digits are duplicates in the source data)
    assert torch.equal(load_digits16("train").images, train.images)  # deterministic split


def _upsample2_bilinear(v: np.ndarray, axis: int) -> np.ndarray:
    """2x bilinear upsampling, half-pixel centres: out[2i] = .75 v[i] + .25 v[i-1], out[2i+1] = .75 v[i] + .25 v[i+1]"""
    v = np.moveaxis(v, axis, -1)
    prev = np.concatenate([v[..., :1], v[..., :-1]], axis=-1)
    nxt = np.concatenate([v[..., 1:], v[..., -1:]], axis=-1)
    out = np.stack([0.75 * v + 0.25 * prev, 0.75 * v + 0.25 * nxt], axis=-1).reshape(*v.shape[:-1], -1)
    return np.moveaxis(out, -1, axis)


def test_digits_are_the_8x8_images_upsampled() -> None:
    from sklearn.datasets import load_digits

    raw = load_digits().images * 255 / 16
    expected = np.round(_upsample2_bilinear(_upsample2_bilinear(raw, 1), 2))
    perm = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    ours = load_digits16("train", test_fraction=0.0).images[:, 0].numpy().astype(np.float64)
    assert np.abs(ours - expected[perm.numpy()]).max() <= 1  # rounding of float32 vs float64 only
    assert torch.equal(load_digits16("test", resolution=8, test_fraction=1.0).images[:, 0],
                       torch.from_numpy(np.round(raw[perm.numpy()])).to(torch.uint8))


def test_toy_2d_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    x = sample_toy_2d("checkerboard", 20000, g)
    assert x.shape == (20000, 2) and x.abs().max() <= 2
    cells = torch.floor(x + 2).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()  # only the dark squares
    assert torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).float().std() > 100  # light ones empty
    moons = sample_toy_2d("two_moons", 5000, g)
    assert moons.mean(0).abs().max() < 0.1
    roll = sample_toy_2d("swiss_roll", 5000, g)
    assert roll.norm(dim=1).max() < 2.2 and roll.norm(dim=1).min() > 0.4
    gm = sample_toy_2d("gaussian_mixture", 20000, g)
    assert torch.allclose(gm.mean(0), torch.tensor([-0.3, -0.2]), atol=0.05)  # 0.5*(-2,0)+0.3*(2,1)+0.2*(0.5,-2.5)
    with pytest.raises(ValueError, match="unknown 2-D toy dataset 'spiral'; valid names are: checkerboard"):
        sample_toy_2d("spiral", 3)


# ---- CIFAR-10 -----------------------------------------------------------------------------------------------
def _write_cifar(root, n_per_batch: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f, protocol=2)
        written[name] = (data, labels)
    return written


def test_cifar10_reads_the_python_batches(tmp_path) -> None:
    written = _write_cifar(tmp_path)
    train, test = load_cifar10(tmp_path, "train"), load_cifar10(tmp_path, "test")
    assert len(train) == 20 and len(test) == 4 and train.image_shape == (3, 32, 32)
    data, labels = written["data_batch_2"]
    image, label = train[4]
    # CIFAR stores each image as 1024 red, then green, then blue values, rows first.
    assert torch.equal(image, torch.from_numpy(data[0].reshape(3, 32, 32)))
    assert label == labels[0]
    assert load_dataset("cifar10", root=tmp_path, split="test").labels.tolist() == written["test_batch"][1]


def test_cifar10_missing_and_malicious_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 not found under .*cifar-10-batches-py.*download=True"):
        load_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "evil"
    bad.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        read_cifar_batch(bad)


# ---- image folders and zips ---------------------------------------------------------------------------------
def _png(path, size, color) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_folder_and_zip_agree(tmp_path) -> None:
    folder = tmp_path / "imgs"
    _png(folder / "a.png", (8, 8), (255, 0, 0))
    _png(folder / "sub" / "b.png", (8, 8), (0, 0, 255))
    (folder / "dataset.json").write_text(json.dumps({"labels": [["a.png", 3], ["sub/b.png", 7]]}))
    ds = load_dataset("folder", root=folder)
    assert len(ds) == 2 and ds.image_shape == (3, 8, 8)
    image, label = ds[1]
    assert label == 7 and image[2].min() == 255 and image[:2].max() == 0
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in folder.rglob("*"):
            if p.is_file():
                z.write(p, str(p.relative_to(folder)))
    zds = ImageFolderDataset(archive)
    assert [zds[i][1] for i in range(2)] == [3, 7] and torch.equal(zds[0][0], ds[0][0])


def test_image_folder_sizes(tmp_path) -> None:
    _png(tmp_path / "a.png", (8, 8), (10, 20, 30))
    _png(tmp_path / "b.png", (12, 6), (10, 20, 30))
    ds = ImageFolderDataset(tmp_path)
    with pytest.raises(ValueError, match=r"image b.png has shape \(3, 6, 12\) .* have \(3, 8, 8\); pass a resolution"):
        ds[1]
    resized = ImageFolderDataset(tmp_path, resolution=4)
    assert resized[1][0].shape == (3, 4, 4) and int(resized[1][0][0, 0, 0]) == 10  # a constant image stays constant
    grey = ImageFolderDataset(tmp_path, resolution=4, channels=1)
    assert grey[0][0].shape == (1, 4, 4)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; valid datasets are: digits, cifar10, folder"):
        load_dataset("imagenet")


# ---- preprocessing ------------------------------------------------------------------------------------------
def test_preprocess_ranges_flip_and_dequantization() -> None:
    k = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).reshape(1, 1, 1, 4).repeat(2000, 1, 1, 1)
    torch.testing.assert_close(preprocess(k)[0, 0, 0], torch.tensor([0, 1 / 255, 128 / 255, 1.0]))
    centered = preprocess(k, centered=True)
    assert centered.min() == -1 and centered.max() == 1
    torch.testing.assert_close(inverse_data_scaler(centered, True), preprocess(k))
    deq = preprocess(k, uniform_dequantization=True, generator=torch.Generator().manual_seed(0))
    levels = k.float()
    assert ((deq * 256 >= levels) & (deq * 256 < levels + 1)).all()
    assert float((deq * 256 - levels).mean()) == pytest.approx(0.5, abs=0.02)  # u ~ U[0, 1)
    flipped = preprocess(k, random_flip=True, generator=torch.Generator().manual_seed(1))
    is_flipped = (flipped[:, 0, 0, 0] == 1.0)
    assert 0.45 < float(is_flipped.float().mean()) < 0.55
    torch.testing.assert_close(flipped[is_flipped], preprocess(k)[is_flipped].flip(-1))
    with pytest.raises(ValueError, match=r"expects uint8 images, got torch\.float32"):
        preprocess(k.float())


def test_sigma_max_is_the_largest_pairwise_distance() -> None:
    pts = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [-1.0, 0.0]])
    assert estimate_sigma_max(pts, chunk=2) == pytest.approx(float(torch.tensor([4.0, 4.0]).norm()))
    images = torch.zeros(3, 1, 2, 2)
    images[1] = 1.0
    assert estimate_sigma_max(images) == pytest.approx(2.0)  # sqrt(4 pixels * 1^2)
    with pytest.raises(ValueError, match="non-finite"):
        estimate_sigma_max(torch.tensor([[0.0], [float("nan")]]))


def test_an_offline_download_is_one_line_naming_the_url_and_the_folder(tmp_path, monkeypatch) -> None:
    """Issue 26 item 7(g): data.download=true without a network was urllib's URLError traceback. The download itself
    is replaced by one that fails as an offline machine does (no request is made)."""
    import urllib.error

    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 could not be downloaded from https://\S+ \(\[Errno -3\] "
                                                r"Temporary failure in name resolution\); place data_batch_1"):
        load_cifar10(tmp_path, download=True)
