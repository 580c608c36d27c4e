"""``scoresde restore`` on a tiny digits run (one training step, two sampling steps): every task writes restorations of
the run's size from a measurement of the task's size; noiseless restorations meet the measurement exactly (which fails
if the [0, 1] -> model scale mapping of the measurement were wrong); ``--degrade`` + ``--save-measurement`` round-trips;
every bad input is one error line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.cli import main
from scoresde.cli.image_files import half_mask
from scoresde.cli.restore_commands import model_measurement, random_mask, task_operator
from scoresde.config import load_config
from scoresde.data import load_digits16
from scoresde.inverse import Blur, Downsample, Mask, gaussian_kernel
from scoresde.training import Trainer

TINY = ["model.nf=8", "model.ch_mult=[1]", "model.attn_resolutions=[]", "model.num_scales=30",
        "training.n_iters=1", "training.snapshot_freq=1", "training.eval_freq=0", "training.batch_size=4",
        "training.snapshot_sampling=false", "training.log_freq=1", "training.snapshot_freq_for_preemption=1"]
FAST = ["--method", "ddrm", "--steps", "2", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny digits run, two clean test digits (clean.npy, clean.png) and an 8x8 measurement (small.png)."""
    root = tmp_path_factory.mktemp("restore")
    Trainer(load_config("digits/vp_ddpmpp", TINY), root / "run", progress=False).train()
    images = load_digits16("test").images[:2].numpy()  # (2, 1, 16, 16) uint8
    np.save(root / "clean.npy", images.transpose(0, 2, 3, 1))
    Image.fromarray(images[0, 0]).save(root / "clean.png")
    Image.fromarray(images[0, 0, ::2, ::2]).save(root / "small.png")
    return {"run": str(root / "run"), "root": root, "clean": images.astype(np.float32) / 255.0}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_model_measurement_is_the_measurement_of_the_centred_data() -> None:
    """y = A x on [0, 1] maps to A (2 x - 1) with sigma doubled, for averaging, blurring and masking operators."""
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = random_mask((1, 8, 8), 0.5, 1)
    for op in (Downsample(2, (1, 8, 8)), Blur(gaussian_kernel(3, 1.0), (1, 8, 8)), Mask(mask),
               Mask(torch.stack([mask, 1 - mask, mask]), per_row=True)):
        y, s = model_measurement(op, op(x), 0.05, centered=True)
        assert torch.allclose(y, op(2 * x - 1), atol=1e-12) and s == pytest.approx(0.1)
        y, s = model_measurement(op, op(x), 0.05, centered=False)
        assert torch.equal(y, op(x)) and s == 0.05


def test_random_mask_drops_the_fraction_and_is_reproducible() -> None:
    m = random_mask((3, 16, 16), 0.25, 7)
    assert m.shape == (1, 16, 16) and int((m == 0).sum()) == 64
    assert torch.equal(m, random_mask((3, 16, 16), 0.25, 7)) and not torch.equal(m, random_mask((3, 16, 16), 0.25, 8))
    assert task_operator("inpaint-random", (1, 16, 16), missing=0.25, mask_seed=7).mask.sum() == 192


@pytest.mark.parametrize(("task", "extra", "params", "measured"), [
    ("sr2", [], {}, (8, 8)),
    ("sr4", [], {}, (4, 4)),
    ("deblur", ["--kernel-size", "3", "--blur-std", "0.8"], {"kernel_size": 3, "blur_std": 0.8}, (16, 16)),
    ("deblur", ["--kernel", "motion", "--angle", "45"], {"kernel": "motion", "angle": 45.0}, (16, 16)),
    ("inpaint-random", ["--missing", "0.3", "--mask-seed", "3"], {"missing": 0.3, "mask_seed": 3}, (16, 16)),
    ("inpaint", ["--mask", "top-half"], {"mask": half_mask("top-half", (1, 16, 16))[0]}, (16, 16)),
])
def test_noiseless_restoration_meets_the_measurement(run, capsys, tmp_path, task, extra, params, measured) -> None:
    """Degrade the clean digits, restore them at sigma_y = 0: the restorations (16x16) reproduce the saved measurement
    through the task's operator, and restoring the saved measurement again (no --degrade) gives the same images."""
    base = ["restore", "--workdir", run["run"], "--task", task, "--sigma-y", "0", *extra, *FAST]
    code, out, err = _run([*base, "--image", str(run["root"] / "clean.npy"), "--degrade", "--out",
                           str(tmp_path / "a.npy"), "--save-measurement", str(tmp_path / "y.npy")], capsys)
    assert code == 0, err
    assert f"restored 2 image(s) x 1 ({task}" in out
    x, y = np.load(tmp_path / "a.npy"), np.load(tmp_path / "y.npy")
    assert x.shape == (2, 16, 16, 1) and y.shape == (2, *measured, 1)
    op = task_operator(task, (1, 16, 16), **params)
    ax = op(torch.from_numpy(x).permute(0, 3, 1, 2).double())
    assert torch.allclose(ax, op(torch.from_numpy(run["clean"]).double()), atol=2e-5)  # A x_restored = y
    assert torch.allclose(torch.from_numpy(y).permute(0, 3, 1, 2).double(), ax, atol=2e-5)
    code, _, err = _run([*base, "--image", str(tmp_path / "y.npy"), "--out", str(tmp_path / "b.npy")], capsys)
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "b.npy"), x)


def test_noisy_round_trip_and_the_grid(run, capsys, tmp_path) -> None:
    """sigma_y > 0: the measurement saved by --degrade (values may leave [0, 1]) restores to the same images; the PNG
    grid holds a row per image: clean, measurement, N restorations (16x16 digits are drawn 4x, padding 4)."""
    base = ["restore", "--workdir", run["run"], "--task", "sr2", "--sigma-y", "0.1", "--num-per-image", "2", *FAST]
    code, _, err = _run([*base, "--image", str(run["root"] / "clean.npy"), "--degrade", "--out",
                         str(tmp_path / "a.npy"), "--save-measurement", str(tmp_path / "y.npy")], capsys)
    assert code == 0, err
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (2, 8, 8, 1) and (y.min() < 0 or y.max() > 1)  # noise on a black background goes below 0
    small = run["clean"].reshape(2, 1, 8, 2, 8, 2).mean((3, 5)).transpose(0, 2, 3, 1)
    assert 0.05 < float(np.std(y - small)) < 0.15  # the noise of sigma_y = 0.1 was added
    code, _, err = _run([*base, "--image", str(tmp_path / "y.npy"), "--out", str(tmp_path / "b.npy")], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "b.npy").shape == (4, 16, 16, 1)
    assert np.array_equal(np.load(tmp_path / "b.npy"), np.load(tmp_path / "a.npy"))
    code, _, err = _run([*base, "--image", str(run["root"] / "clean.npy"), "--degrade", "--out",
                         str(tmp_path / "g.png")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size == (4 + 4 * (64 + 4), 4 + 2 * (64 + 4))  # 4 columns, 2 rows


def test_a_measurement_image_file_and_png_measurement(run, capsys, tmp_path) -> None:
    """An 8x8 PNG is an sr2 measurement; --save-measurement .png writes the one measurement at its own size."""
    code, _, err = _run(["restore", "--workdir", run["run"], "--task", "sr2", "--sigma-y", "0.05", "--image",
                         str(run["root"] / "small.png"), "--out", str(tmp_path / "x.npy"), "--save-measurement",
                         str(tmp_path / "y.png"), *FAST], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "x.npy").shape == (1, 16, 16, 1)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "y.png")), np.asarray(Image.open(run["root"] /
                                                                                             "small.png")))


@pytest.mark.parametrize(("argv", "message"), [
    (["--task", "sr2", "--image", "CLEANPNG"], "is 16x16 pixels; --task sr2 on this run (16x16, 1 channel(s)) "
                                               "measures 8x8 images"),
    (["--task", "sr2", "--image", "CLEANNPY"], "--task sr2 on this run (16x16, 1 channel(s)) measures 8x8"),
    (["--task", "sr3", "--image", "CLEANNPY", "--degrade"], "the factor 3 must divide this run's 16x16 images"),
    (["--task", "colorize", "--image", "CLEANNPY", "--degrade"], "needs a run of colour images"),
    (["--task", "deblur", "--kernel-size", "17", "--image", "CLEANNPY", "--degrade"], "larger than this run's"),
    (["--task", "deblur", "--mask", "top-half", "--image", "CLEANNPY"], "--task deblur does not use it"),
    (["--task", "inpaint", "--image", "CLEANNPY"], "--task inpaint needs --mask"),
    (["--task", "sr2", "--image", "MISSING"], "image file"),
    (["--task", "sr2", "--image", "SMALLPNG", "--set", "num_particle=2", "--method", "smc"],
     "unknown option(s) ['num_particle']"),
    (["--task", "sr2", "--image", "SMALLPNG", "--method", "projection", "--sigma-y", "0.1"], "noiseless"),
])
def test_bad_restore_input_is_one_line(run, capsys, tmp_path, argv, message) -> None:
    files = {"CLEANPNG": run["root"] / "clean.png", "CLEANNPY": run["root"] / "clean.npy",
             "SMALLPNG": run["root"] / "small.png", "MISSING": tmp_path / "nope.png"}
    argv = [str(files[a]) if a in files else a for a in argv]
    sigma = [] if "--sigma-y" in argv else ["--sigma-y", "0.05"]
    code, _, err = _run(["restore", "--workdir", run["run"], *argv, *sigma, "--out", str(tmp_path / "x.png"),
                         "--steps", "2", "--quiet"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--task", "sr1"], "unknown task 'sr1'"),
    (["--task", "denoise"], "unknown task 'denoise'"),
    (["--task", "sr2", "--sigma-y", "-0.1"], "expected a finite number >= 0"),
    (["--task", "sr2", "--sigma-y", "nan"], "expected a finite number >= 0"),
    (["--task", "inpaint-random", "--missing", "1"], "strictly between 0 and 1"),
    (["--task", "deblur", "--blur-std", "0"], "expected a finite number > 0"),
])
def test_bad_options_are_argparse_errors(run, capsys, tmp_path, argv, message) -> None:
    sigma = [] if "--sigma-y" in argv else ["--sigma-y", "0.05"]
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", "--workdir", run["run"], "--image", str(run["root"] / "small.png"), *argv, *sigma, "--out",
              str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err.strip().splitlines()[-1], err
