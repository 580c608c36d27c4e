"""Class labels of the datasets: the 2-D mixture's components, EDM's ``dataset.json`` in image folders and zips,
and the checks that a class-conditional run makes before training."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.config import load_config
from scoresde.data import LABELLED_TOY_2D, TOY_2D, ImageFolderDataset, sample_toy_2d
from scoresde.data.toy2d import gaussian_mixture
from scoresde.toy import GaussianMixture
from scoresde.training.data import PointDataset, build_dataset, check_dataset_labels, dataset_labels


def test_mixture_labels_are_the_components() -> None:
    n = 60_000
    points, labels = sample_toy_2d("gaussian_mixture", n, torch.Generator().manual_seed(3), return_labels=True)
    # the same points as the unlabelled call (existing runs keep their data), by both entry points
    assert torch.equal(points, sample_toy_2d("gaussian_mixture", n, torch.Generator().manual_seed(3)))
    assert torch.equal(points, gaussian_mixture(n, torch.Generator().manual_seed(3)))
    assert labels.dtype == torch.int64 and labels.shape == (n,)
    mix = GaussianMixture.example_2d(dtype=torch.float32)
    assert LABELLED_TOY_2D == {"gaussian_mixture": mix.num_components}
    # label frequencies are the weights, and the points of label k have component k's mean and covariance
    freq = torch.bincount(labels, minlength=mix.num_components).double() / n
    w = mix.weights.double()
    assert torch.all((freq - w).abs() < 5 * torch.sqrt(w * (1 - w) / n))
    for k in range(mix.num_components):
        pts = points[labels == k].double()
        cov = torch.cov(pts.T)
        se = cov.diagonal().sqrt() / pts.shape[0] ** 0.5
        assert torch.all((pts.mean(0) - mix.means[k].double()).abs() < 5 * se), k
        true_cov = mix.covs[k].double()
        torch.testing.assert_close(cov, true_cov, rtol=0, atol=0.08 * true_cov.abs().max().item())


@pytest.mark.parametrize("name", sorted(set(TOY_2D) - set(LABELLED_TOY_2D)))
def test_unlabelled_toys_give_null_labels(name: str) -> None:
    points, labels = sample_toy_2d(name, 100, torch.Generator().manual_seed(0), return_labels=True)
    assert torch.equal(points, sample_toy_2d(name, 100, torch.Generator().manual_seed(0)))
    assert torch.equal(labels, torch.full((100,), -1))


def test_toy_datasets_of_a_run() -> None:
    data = load_config("toy/gaussian_mixture").data
    ds = build_dataset(data, "train", seed=5, toy_size=500)
    ref_points, ref_labels = sample_toy_2d("gaussian_mixture", 500, torch.Generator().manual_seed(5),
                                           return_labels=True)
    assert torch.equal(ds.points, ref_points) and torch.equal(dataset_labels(ds), ref_labels)
    point, label = ds[7]
    assert torch.equal(point, ref_points[7]) and label == int(ref_labels[7])
    check_dataset_labels(ds, 3, "gaussian_mixture")
    with pytest.raises(ValueError, match=r"dataset gaussian_mixture has labels up to 2 but model.num_classes=2"):
        check_dataset_labels(ds, 2, "gaussian_mixture")
    board = build_dataset(load_config("toy/checkerboard").data, "train", seed=5, toy_size=50)
    assert dataset_labels(board) is None and board[0][1] == -1
    with pytest.raises(ValueError, match=r"model.num_classes=3 trains a class-conditional model, but dataset "
                                         r"checkerboard has no class labels"):
        check_dataset_labels(board, 3, "checkerboard")
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\), got \(3,\)"):
        PointDataset(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int64))


def _write_edm_folder(root: Path, labels: list[int] | None) -> list[str]:
    """Six 8x8 PNGs in EDM's ``dataset_tool.py`` layout (``00000/img00000000.png``, ...) with its ``dataset.json``
    (``{"labels": [[name, label], ...]}``, or ``{"labels": null}``)."""
    names = []
    for i in range(6):
        name = f"{i // 4:05d}/img{i:08d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(root / name)
        names.append(name)
    meta = {"labels": None if labels is None else [[n, y] for n, y in zip(names, labels, strict=True)]}
    (root / "dataset.json").write_text(json.dumps(meta))
    return names


def test_image_folder_reads_edm_dataset_json(tmp_path: Path) -> None:
    labels = [3, 0, 9, 9, 1, 4]
    names = _write_edm_folder(tmp_path / "folder", labels)
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as z:  # EDM's zip: the same names at the archive root
        for name in [*names, "dataset.json"]:
            z.write(tmp_path / "folder" / name, name)
    for path in (tmp_path / "folder", tmp_path / "data.zip"):
        ds = ImageFolderDataset(path)
        assert len(ds) == 6 and ds.files == names
        got = [ds[i] for i in range(6)]
        assert [y for _, y in got] == labels
        assert [int(img[0, 0, 0]) for img, _ in got] == [40 * i for i in range(6)]  # each image keeps its label
        assert torch.equal(dataset_labels(ds), torch.tensor(labels))
        check_dataset_labels(ds, 10, "folder")
        with pytest.raises(ValueError, match=r"has labels up to 9 but model.num_classes=5"):
            check_dataset_labels(ds, 5, "folder")


def test_image_folder_without_labels(tmp_path: Path) -> None:
    _write_edm_folder(tmp_path / "nolabels", None)  # dataset_tool writes "labels": null for unlabelled data
    ds = ImageFolderDataset(tmp_path / "nolabels")
    assert all(ds[i][1] == -1 for i in range(len(ds))) and dataset_labels(ds) is None
    with pytest.raises(ValueError, match="has no class labels"):
        check_dataset_labels(ds, 10, "folder")
    names = _write_edm_folder(tmp_path / "partial", [1] * 6)
    meta = json.loads((tmp_path / "partial" / "dataset.json").read_text())
    meta["labels"] = [entry for entry in meta["labels"] if entry[0] != names[2]]
    (tmp_path / "partial" / "dataset.json").write_text(json.dumps(meta))
    ds = ImageFolderDataset(tmp_path / "partial")
    assert [ds[i][1] for i in range(6)] == [1, 1, -1, 1, 1, 1]
    with pytest.raises(ValueError, match=r"dataset folder: 1 of 6 examples have no label"):
        check_dataset_labels(ds, 10, "folder")



@pytest.mark.parametrize(("label", "message"), [
    (0.7, r"labels\[2\] = \[\"00000/img00000002.png\", 0.7\] must be \[file name, integer label >= 0\]"),
    (True, r"labels\[2\] = \[\"00000/img00000002.png\", true\] must be"),
    (-3, r"labels\[2\] = \[\"00000/img00000002.png\", -3\] must be"),
    ("4", r"labels\[2\] = \[\"00000/img00000002.png\", \"4\"\] must be"),
])
def test_bad_labels_name_the_file_and_the_entry(tmp_path: Path, label, message) -> None:
    """A float label was silently truncated (0.7 -> 0) and a boolean accepted (issue 22): one line naming
    dataset.json and the entry."""
    _write_edm_folder(tmp_path, [1] * 6)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["labels"][2][1] = label
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"^{tmp_path}/dataset.json: {message}") as info:
        ImageFolderDataset(tmp_path)
    assert "\n" not in str(info.value)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"dataset.json is not valid JSON"):
        ImageFolderDataset(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_an_unreadable_image_is_one_line_naming_it(tmp_path: Path, damage: str) -> None:
    """A truncated PNG or a text file named .png crashed training with a 54-line traceback without the file: the
    folder's check names it when the dataset is built, and without the check it is named when read."""
    names = _write_edm_folder(tmp_path, [1] * 6)
    bad = tmp_path / names[4]
    bad.write_bytes(bad.read_bytes()[:40] if damage == "truncated" else b"hello, not an image\n")
    with pytest.raises(ValueError, match=rf"^image {tmp_path}/{names[4]} cannot be read \(.+\): replace or remove it, "
                                         "or set data.skip_bad_files=true"):
        ImageFolderDataset(tmp_path)
    with pytest.warns(UserWarning, match=rf"leaving out 1 unreadable image\(s\) of 6 \(data.skip_bad_files\): "
                                         rf"{names[4]}$"):
        assert len(ImageFolderDataset(tmp_path, skip_bad_files=True)) == 5
    ds = ImageFolderDataset(tmp_path, verify=False)
    assert int(ds[3][0][0, 0, 0]) == 120  # the others still read
    with pytest.raises(ValueError, match=rf"^image {tmp_path}/{names[4]} cannot be read \(.+\): replace or remove"):
        ds[4]
