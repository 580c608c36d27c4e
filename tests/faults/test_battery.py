"""The bad-input battery of issue 22's "Why" list, run through the CLI: every case is one error line naming what is
wrong (or, for signals, one line and a pre-emption checkpoint), never a traceback, and nothing is written before the
error. Cases covered by other files of the suite: damaged checkpoints on every reading command
(tests/checkpoint/test_integrity.py), a second trainer and stale locks, SIGTERM and divergence
(tests/training/test_faults.py), kills (test_kills.py), storage faults (test_storage.py)."""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoresde.checkpoint import list_checkpoints
from scoresde.cli import main
from scoresde.config import load_config
from scoresde.training import Trainer, WorkdirLock

from .driver import run_forked

#: a DDPM on 8x8 colour images: two steps in seconds (the image commands need an image run)
TINY = ["model.nf=32", "model.num_res_blocks=1", "model.ch_mult=[1]", "model.attn_resolutions=[]",
        "model.num_scales=30", "training.n_iters=1", "training.snapshot_freq=1", "training.eval_freq=0",
        "training.batch_size=4", "training.snapshot_sampling=false", "training.log_freq=1",
        "training.snapshot_freq_for_preemption=1", "data.dataset=folder", "data.num_channels=3", "data.image_size=8"]
TOY = ["model.hidden=16", "model.depth=1", "training.batch_size=16", "training.n_iters=6",
       "training.snapshot_freq=6", "training.snapshot_freq_for_preemption=6", "training.eval_freq=0",
       "training.snapshot_sampling=false", "training.log_freq=1"]
PC = ["--steps", "2", "--set", "predictor=euler_maruyama", "--set", "corrector=none", "--quiet"]


def _png(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """``rgb/``: four 8x8 PNGs; ``run/``: a tiny image run trained on them; ``hub/``: its diffusers export."""
    root = tmp_path_factory.mktemp("battery")
    (root / "rgb").mkdir()
    for i in range(4):
        _png(root / "rgb" / f"{i}.png", i)
    Trainer(load_config("vp/ddpm/cifar10", [*TINY, f"data.root={root / 'rgb'}"]), root / "run").train()
    assert main(["export", "--format", "diffusers", "--workdir", str(root / "run"), "--out", str(root / "hub")]) == 0
    return root


def _folder(tmp: Path, bad: Callable[[Path], None], labels: list | None = None) -> Path:
    """A copy of four good 8x8 PNGs plus what ``bad`` writes into it (and EDM's dataset.json with ``labels``)."""
    folder = tmp / "images"
    folder.mkdir()
    for i in range(4):
        _png(folder / f"{i}.png", i)
    bad(folder)
    if labels is not None:
        (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    return folder


def _train_folder(tmp: Path, folder: Path, *extra: str) -> list[str]:
    return ["train", "--config", "vp/ddpm/cifar10", "--workdir", str(tmp / "w"), "--quiet",
            *[a for s in [*TINY, f"data.root={folder}", *extra] for a in ("--set", s)]]


def _truncated(folder: Path) -> None:
    data = _png(folder / "4.png", 4).read_bytes()
    (folder / "4.png").write_bytes(data[: len(data) // 2])


class _System:  # pickles as a call of os.system (posix.system): must be refused, never run
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _evil(tmp: Path) -> Path:
    path = tmp / "evil.pth"
    path.write_bytes(pickle.dumps({"model": _System(tmp / "pwned")}))
    return path


def _corrupt_hub(root: Path, tmp: Path) -> Path:
    import shutil

    hub = tmp / "hub"
    shutil.copytree(root / "hub", hub)
    weights = hub / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:24] = b"{not json at all"  # the JSON header
    weights.write_bytes(bytes(data))
    return weights


def _npy(tmp: Path, array: np.ndarray) -> str:
    np.save(tmp / "a.npy", array)
    return str(tmp / "a.npy")


def _toy_train(tmp: Path, *sets: str) -> list[str]:
    return ["train", "--config", "toy/checkerboard", "--workdir", str(tmp / "w"), "--quiet",
            *[a for s in [*TOY, *sets] for a in ("--set", s)]]


def _inpaint(root: Path, tmp: Path, image: str, mask: str = "top-half") -> list[str]:
    return ["inpaint", "--workdir", str(root / "run"), "--image", image, "--mask", mask, "--out", str(tmp / "o.npy"),
            *PC]


# (case, argv builder, the error line must match this regex after "scoresde <command>: error: ")
BATTERY: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    # 6. wrong errors
    ("pickle calling os.system", lambda r, t: ["import", "--checkpoint", str(_evil(t)), "--config",
                                               "vp/ddpm/cifar10", "--workdir", str(t / "w")],
     r"evil.pth: refused .* nothing in it was executed: it contains code-executing globals \(posix.system\)"),
    ("corrupt safetensors header in a diffusers folder",
     lambda r, t: ["import", "--checkpoint", str(_corrupt_hub(r, t).parent), "--workdir", str(t / "w")],
     r"hub/diffusion_pytorch_model.safetensors is truncated or corrupt"),
    ("a .py config importing itself", lambda r, t: (
        (t / "configs").mkdir(),
        (t / "configs" / "default_a_configs.py").write_text(
            "from configs.default_a_configs import get_default_configs\n"
            "def get_default_configs():\n  return get_default_configs()\n"),
        (t / "configs" / "run.py").write_text("from configs.default_a_configs import get_default_configs\n"
                                              "def get_config():\n  return get_default_configs()\n"),
        ["train", "--config", str(t / "configs" / "run.py"), "--workdir", str(t / "w")])[-1],
     r"import each other in a cycle: default_a_configs.py -> default_a_configs.py"),
    # 7. config values
    ("optim.lr=Infinity", lambda r, t: _toy_train(t, "optim.lr=Infinity"), r"optim.lr"),
    ("optim.grad_clip=NaN", lambda r, t: _toy_train(t, "optim.grad_clip=NaN"), r"optim.grad_clip"),
    ("training.batch_size=1e12", lambda r, t: _toy_train(t, "training.batch_size=1e12"), r"training.batch_size"),
    ("model.hidden=1e8", lambda r, t: _toy_train(t, "model.hidden=1e8"), r"model.hidden"),
    ("model.beta_max=1e308", lambda r, t: _toy_train(t, "model.beta_max=1e308"), r"model.beta_max"),
    ("seed=1e23", lambda r, t: _toy_train(t, "seed=1e23"), r"seed"),
    # 8. data
    ("a truncated PNG in the image folder", lambda r, t: _train_folder(t, _folder(t, _truncated)),
     r"image .*/images/4.png cannot be read \(.*\): replace or remove it, or set data.skip_bad_files=true"),
    ("a text file named .png", lambda r, t: _train_folder(t, _folder(t, lambda f: (f / "x.png").write_text("hi"))),
     r"image .*/images/x.png cannot be read \(cannot identify image file"),
    ("a float label in dataset.json",
     lambda r, t: _train_folder(t, _folder(t, lambda f: None, [[f"{i}.png", 0.7 if i == 2 else 0] for i in range(4)]),
                                "model.num_classes=2"),
     r"images/dataset.json: labels\[2\] = \[\"2.png\", 0.7\] must be \[file name, integer label >= 0\]"),
    ("a boolean label in dataset.json",
     lambda r, t: _train_folder(t, _folder(t, lambda f: None, [[f"{i}.png", i == 1] for i in range(4)]),
                                "model.num_classes=2"),
     r"images/dataset.json: labels\[0\] = \[\"0.png\", false\] must be"),
    ("--image that is not an image", lambda r, t: (
        (t / "bad.png").write_text("not a png"), _inpaint(r, t, str(t / "bad.png")))[-1], r"bad.png"),
    ("--mask that is not an image", lambda r, t: (
        (t / "m.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10),
        _inpaint(r, t, str(r / "rgb" / "0.png"), str(t / "m.png")))[-1], r"m.png"),
    ("a 0-image .npy", lambda r, t: _inpaint(r, t, _npy(t, np.zeros((0, 8, 8, 3), np.float32))), r"a.npy"),
    # 9. non-finite input
    ("a NaN pixel in --image", lambda r, t: _inpaint(r, t, _npy(t, np.full((1, 8, 8, 3), np.nan, np.float32))),
     r"a.npy: float pixel values must lie in \[0, 1\]"),
    ("a NaN image to encode", lambda r, t: ["encode", "--workdir", str(r / "run"), "--image",
                                            _npy(t, np.full((1, 8, 8, 3), np.nan, np.float32)), "--out",
                                            str(t / "z.npy"), "--quiet"], r"a.npy"),
]


@pytest.mark.parametrize(("case", "argv", "expected"), BATTERY, ids=[c[0] for c in BATTERY])
def test_bad_input_is_one_line_and_writes_nothing(root, tmp_path, capsys, case, argv, expected) -> None:
    args = argv(root, tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    code = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.match(rf"scoresde {args[0]}: error: .*{expected}", lines[0]), lines[0]
    created = {p for p in tmp_path.rglob("*")} - before
    assert not [p for p in created if p.name in ("config.json", "o.npy", "z.npy") or "checkpoint" in p.name], created
    assert not (tmp_path / "pwned").exists()  # the pickle's command never ran


def test_skip_bad_files_trains_without_them_with_one_warning(tmp_path, capsys) -> None:
    folder = _folder(tmp_path, lambda f: (_truncated(f), (f / "x.png").write_text("hi")))
    code = main(_train_folder(tmp_path, folder, "data.skip_bad_files=true"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and len(err) == 1, err
    assert err[0] == (f"scoresde train: warning: {folder}: leaving out 2 unreadable image(s) of 6 "
                      "(data.skip_bad_files): 4.png, x.png")


def test_a_worker_error_is_the_datasets_line_and_resume_after_fixing_works(tmp_path, capsys, monkeypatch) -> None:
    """A file that passes the scan but fails to decode in a DataLoader worker (the scan is a header check) is one
    line naming it; once the file is fixed, the same command resumes from the last checkpoint and finishes."""
    from scoresde.data.images import ImageFolderDataset

    folder = _folder(tmp_path, lambda f: None)
    argv = _train_folder(tmp_path, folder, "training.n_iters=3", "training.num_workers=1")
    monkeypatch.setattr(ImageFolderDataset, "_unreadable", staticmethod(lambda read: None))  # the scan passes
    (folder / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"scoresde train: error: image {folder}/3.png cannot be read ("), err[0]
    assert err[0].endswith("): replace or remove it"), err[0]
    _png(folder / "3.png", 3)  # fixed
    code = main(argv)
    assert code == 0, capsys.readouterr().err
    assert max(s for s, _, _ in list_checkpoints(tmp_path / "w")) == 3


@pytest.mark.parametrize(("fault", "status"), [("sigint", 130), ("sigterm", 143), ("sigint2", 130)])
def test_signals_are_one_line(tmp_path, fault, status) -> None:
    """SIGINT/SIGTERM during step 4: one line, exit 130/143, a pre-emption checkpoint of step 4 (the step boundary;
    the issue: a 66-line KeyboardInterrupt traceback, no checkpoint); a second SIGINT exits at once, one line."""
    workdir = tmp_path / "w"
    code, err = run_forked(f"{fault}:3", _toy_train(tmp_path), tmp_path / "log")
    lines = err.strip().splitlines()
    assert code == status and len(lines) == 1 and "Traceback" not in err, err
    name = {"sigint": "SIGINT", "sigterm": "SIGTERM", "sigint2": "SIGINT"}[fault]
    if fault == "sigint2":
        assert lines[0] == f"{name} received again: exiting at once without a checkpoint", lines[0]
        assert list_checkpoints(workdir) == []
    else:
        assert lines[0].startswith(f"scoresde train: stopped by {name} at step 4; resume from "), lines[0]
        assert [(s, k) for s, k, _ in list_checkpoints(workdir)] == [(4, "preempt")]


def test_import_into_a_workdir_being_trained_is_refused_naming_the_pid(root, tmp_path, capsys) -> None:
    with WorkdirLock(tmp_path / "w"):
        code = main(["import", "--checkpoint", str(root / "hub"), "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"is being trained by another process (pid {os.getpid()} on " in err[0]
    assert not (tmp_path / "w" / "config.json").exists()



def test_old_diverged_checkpoints_are_not_kept_forever(tmp_path) -> None:
    """``nonfinite_<step>`` folders: those of the last divergence are kept, older ones only up to two in all."""
    from scoresde.training.divergence import set_aside_diverged

    root = tmp_path / "checkpoints"
    for name in ("nonfinite_3", "nonfinite_5", "nonfinite_6", "checkpoint_4", "checkpoint_8", "preempt_9"):
        (root / name).mkdir(parents=True)
    kept, moved = set_aside_diverged(tmp_path, 8)
    assert kept == root / "checkpoint_4" and [p.name for p in moved] == ["nonfinite_9", "nonfinite_8"]
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint_4", "nonfinite_8", "nonfinite_9"]
    (root / "checkpoint_10").mkdir()
    _, moved = set_aside_diverged(tmp_path, 10, keep=3)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint_4", "nonfinite_10", "nonfinite_8", "nonfinite_9"]
