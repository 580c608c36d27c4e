"""The controllable-generation commands end to end on tiny runs (a couple of training steps, few sampling steps):
``sample --class/--guidance``, ``inpaint``, ``colorize``, ``encode``, ``interpolate``; outputs exist with the right
shapes and values, and every bad input is one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.cli import main
from scoresde.cli.common import class_labels
from scoresde.cli.image_files import half_mask, read_mask
from scoresde.config import load_config
from scoresde.data import load_digits16
from scoresde.training import Trainer

TINY = ["model.nf=8", "model.ch_mult=[1]", "model.attn_resolutions=[]", "model.num_scales=30",
        "training.n_iters=1", "training.snapshot_freq=1", "training.eval_freq=0", "training.batch_size=4",
        "training.snapshot_sampling=false", "training.log_freq=1", "training.snapshot_freq_for_preemption=1"]
FAST = ["--sampler", "dpm_solver", "--steps", "2", "--quiet"]
TINY_CLASSIFIER = ["classifier.steps=1", "classifier.nf=8", "classifier.ch_mult=[1]", "classifier.batch_size=4",
                   "classifier.eval_num=4", "classifier.eval_bins=1", "classifier.warmup=0"]


def _train(path, preset: str, extra: tuple[str, ...] = ()) -> str:
    Trainer(load_config(preset, [*TINY, *extra]), path, progress=False).train()
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A class-conditional and an unconditional tiny digits run, two digit files and classifiers for VP / sub-VP."""
    from scoresde.cli.classifier_commands import train_classifier

    root = tmp_path_factory.mktemp("controllable")
    images = load_digits16("test").images[:3].numpy()  # (3, 1, 16, 16)
    np.save(root / "three.npy", images.transpose(0, 2, 3, 1))  # the CLI's layout: channels last
    for i, name in enumerate(("a.png", "b.png")):
        Image.fromarray(images[i, 0]).save(root / name)
    train_classifier("digits/vp_ddpmpp", root / "clf_vp", overrides=TINY_CLASSIFIER)
    train_classifier("digits/vp_ddpmpp", root / "clf_subvp", overrides=[*TINY_CLASSIFIER, "training.sde=subvpsde"])
    return {"cond": _train(root / "cond", "digits/vp_ddpmpp_conditional"),
            "uncond": _train(root / "uncond", "digits/vp_ddpmpp"), "root": root}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_class_labels_split_the_samples_into_blocks() -> None:
    assert class_labels("3", 4, 10).tolist() == [3, 3, 3, 3]
    assert class_labels("all", 6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert class_labels("7,2", 5, 10).tolist() == [7, 7, 7, 2, 2]
    with pytest.raises(ValueError, match=r"label 10 is outside \[0, 10\)"):
        class_labels("1,10", 4, 10)


def test_masks_name_the_observed_half(tmp_path) -> None:
    top = half_mask("top-half", (1, 4, 4))
    assert top[0, 0, :, 0].tolist() == [1, 1, 0, 0] and top.sum() == 8
    assert (half_mask("bottom-half", (1, 4, 4)) == 1 - top).all()
    assert half_mask("left-half", (1, 4, 4))[0, 0, 0].tolist() == [1, 1, 0, 0]
    Image.fromarray((top[0, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "m.png")
    assert torch.equal(read_mask(str(tmp_path / "m.png"), (1, 4, 4)), top)
    np.save(tmp_path / "m.npy", np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match=r"only 0 .* and 1"):
        read_mask(str(tmp_path / "m.npy"), (1, 4, 4))


def test_sample_with_classifier_free_and_classifier_guidance(runs, capsys) -> None:
    root = runs["root"]
    code, _, err = _run(["sample", "--workdir", runs["cond"], "--num", "6", "--class", "0,4,9", "--guidance", "cfg",
                           "--scale", "2", "--out", str(root / "cfg.npz"), *FAST], capsys)
    assert code == 0, err
    saved = np.load(root / "cfg.npz")
    assert saved["samples"].shape == (6, 16, 16, 1) and saved["labels"].tolist() == [0, 0, 4, 4, 9, 9]
    assert int(saved["nfe"]) > 2  # guided: two model calls per step count as one guided evaluation each
    code, _, err = _run(["sample", "--workdir", runs["uncond"], "--num", "2", "--class", "5", "--guidance",
                         "classifier", "--classifier", str(root / "clf_vp"), "--out", str(root / "clf.npz"), *FAST],
                        capsys)
    assert code == 0, err
    assert np.load(root / "clf.npz")["labels"].tolist() == [5, 5]


def test_guidance_options_reach_classifier_free(runs, capsys) -> None:
    """--interval outside every noise level of the run is the plain conditional model (one network evaluation per
    model call); --rescale/--threshold change the guided samples and keep two network evaluations per call."""
    root, base = runs["root"], ["sample", "--workdir", runs["cond"], "--num", "4", "--class", "3,8", "--seed", "5"]
    outs = {}
    for name, extra in (("plain", []), ("cfg", ["--guidance", "cfg", "--scale", "3"]),
                        ("off", ["--guidance", "cfg", "--scale", "3", "--interval", "1e9,2e9"]),
                        ("opts", ["--guidance", "cfg", "--scale", "3", "--rescale", "0.7", "--threshold", "99.5"])):
        code, _, err = _run([*base, *extra, "--out", str(root / f"{name}.npz"), *FAST], capsys)
        assert code == 0, err
        outs[name] = np.load(root / f"{name}.npz")
    assert np.array_equal(outs["off"]["samples"], outs["plain"]["samples"])
    nfe = {name: int(out["nfe"]) for name, out in outs.items()}
    assert nfe["off"] == nfe["plain"] and nfe["cfg"] == nfe["opts"] == 2 * nfe["plain"], nfe
    assert np.abs(outs["opts"]["samples"] - outs["cfg"]["samples"]).max() > 1e-3


@pytest.mark.parametrize(("argv", "message"), [
    (["--class", "10"], "label 10 is outside [0, 10)"),
    (["--threshold", "99"], "--threshold needs --class"),
    (["--class", "1", "--interval", "0.1,1"], "--interval needs --guidance"),
    (["--class", "1", "--guidance", "cfg", "--interval", "3"], "--interval must be two noise levels LO,HI"),
    (["--class", "1", "--guidance", "classifier", "--classifier", "SUBVP", "--rescale", "0.5"],
     "--rescale is classifier-free guidance's option"),
    (["--class", "1", "--guidance", "cfg", "--rescale", "2"], "rescale"),
    (["--class", "1", "--guidance", "cfg", "--threshold", "150"], "threshold"),
    (["--scale", "2"], "--scale needs --class"),
    (["--class", "1", "--scale", "2"], "--scale needs --guidance"),
    (["--class", "1", "--guidance", "classifier"], "needs --classifier DIR"),
    (["--class", "1", "--guidance", "classifier", "--classifier", "SUBVP"], "trained for another SDE"),
    (["--class", "x"], "expected a label, a comma list"),
    (["--class", "1", "--guidance", "classifier", "--classifier", "RUN"],
     "is a score model's run folder, not a classifier; --guidance classifier needs the --workdir of `scoresde "
     "train-classifier`"),
    (["--class", "1", "--guidance", "classifier", "--classifier", "RUN/checkpoints"], "is not a classifier folder"),
])
def test_bad_class_options_are_one_line(runs, argv, message, capsys) -> None:
    argv = [a.replace("SUBVP", str(runs["root"] / "clf_subvp")).replace("RUN", runs["uncond"]) for a in argv]
    code, _, err = _run(["sample", "--workdir", runs["cond"], "--num", "2", *argv, *FAST], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_guidance_on_an_unconditional_run_is_refused(runs, capsys) -> None:
    for argv in (["--class", "3"], ["--class", "3", "--guidance", "cfg"]):
        code, _, err = _run(["sample", "--workdir", runs["uncond"], "--num", "2", *argv, *FAST], capsys)
        assert code == 2 and "unconditional" in err and len(err.strip().splitlines()) == 1, err


def test_inpaint_keeps_the_observed_half_and_writes_grid_and_array(runs, capsys) -> None:
    root = runs["root"]
    base = ["inpaint", "--workdir", runs["cond"], "--image", str(root / "three.npy"), "--mask", "top-half",
            "--steps", "21", "--quiet"]
    code, _, err = _run([*base, "--set", "corrector=none", "--num-per-image", "2", "--out", str(root / "inp.npy")],
                        capsys)
    assert code == 0, err
    done = np.load(root / "inp.npy")
    assert done.shape == (6, 16, 16, 1)  # channels last, as it was read
    given = np.repeat(np.load(root / "three.npy"), 2, axis=0) / 255.0
    assert np.abs(done[:, :8] - given[:, :8]).max() < 1e-5  # the observed top half is the input's
    assert np.abs(done[:, 8:] - given[:, 8:]).max() > 0.1  # the bottom half was sampled
    code, _, err = _run([*base, "--method", "smc", "--set", "num_particles=2", "--out", str(root / "inp.png")],
                        capsys)
    assert code == 0, err
    assert Image.open(root / "inp.png").size == (2 * 16 * 4 + 3 * 4, 3 * 16 * 4 + 4 * 4)  # 3 rows: input, 1 draw


@pytest.mark.parametrize(("argv", "message"), [
    (["--mask", "MASK5"], "shape (5, 5) does not fit this run's images of 16x16 pixels"),
    (["--mask", "MASK3"], "does not broadcast to the images (3, 1, 16, 16)"),
    (["--mask", "middle"], "expected one of top-half"),
    (["--mask", "top-half", "--method", "smc", "--set", "num_particle=2"], "unknown option(s) ['num_particle']"),
    (["--mask", "top-half", "--image", "BIG"], "shape (1, 20, 20, 1) does not fit this run's images of 16x16"),
    (["--mask", "top-half", "--image", "NCHW"], "shape (3, 1, 16, 16) is channels first; expected channels last"),
])
def test_bad_inpainting_input_is_one_line(runs, argv, message, tmp_path, capsys) -> None:
    np.save(tmp_path / "m5.npy", np.ones((5, 5)))
    np.save(tmp_path / "m3.npy", np.ones((2, 16, 16)))
    np.save(tmp_path / "big.npy", np.zeros((1, 20, 20, 1), np.uint8))
    np.save(tmp_path / "nchw.npy", np.zeros((3, 1, 16, 16), np.uint8))
    files = {"MASK5": "m5.npy", "MASK3": "m3.npy", "BIG": "big.npy", "NCHW": "nchw.npy"}
    argv = [str(tmp_path / files[a]) if a in files else a for a in argv]
    code, _, err = _run(["inpaint", "--workdir", runs["cond"], "--image", str(runs["root"] / "three.npy"), *argv,
                         "--out", str(tmp_path / "x.png"), "--steps", "2", "--quiet"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()


def test_encode_and_interpolate(runs, capsys) -> None:
    root = runs["root"]
    ode = ["--rtol", "1e-2", "--atol", "1e-2", "--quiet"]
    code, out, err = _run(["encode", "--workdir", runs["cond"], "--image", str(root / "three.npy"), "--out",
                           str(root / "z.npy"), *ode], capsys)
    assert code == 0, err
    z = np.load(root / "z.npy")
    assert z.shape == (3, 1, 16, 16) and np.isfinite(z).all() and "NFE" in out  # the model's state layout
    assert abs(float(z.std()) - float((np.load(root / "three.npy") / 127.5 - 1).std())) > 0.05  # moved to T
    code, _, err = _run(["interpolate", "--workdir", runs["cond"], "--images", str(root / "a.png"),
                         str(root / "b.png"), "--num", "4", "--class", "2", "--out", str(root / "strip.npy"), *ode],
                        capsys)
    assert code == 0, err
    assert np.load(root / "strip.npy").shape == (4, 16, 16, 1)
    code, _, err = _run(["interpolate", "--workdir", runs["cond"], "--images", str(root / "three.npy"),
                         str(root / "b.png"), "--out", str(root / "s.png"), *ode], capsys)
    assert code == 2 and "holds 3 images" in err


def test_colorize_keeps_the_grey_value(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "rgb"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    run = _train(tmp_path / "run", "digits/vp_ddpmpp", ("data.dataset=folder", f"data.root={folder}",
                                                       "data.num_channels=3", "data.image_size=8"))
    code, _, err = _run(["colorize", "--workdir", run, "--image", str(folder / "0.png"), "--steps", "21", "--set",
                         "corrector=none", "--out", str(tmp_path / "c.npy"), "--quiet"], capsys)
    assert code == 0, err
    colour = np.load(tmp_path / "c.npy")
    grey = np.asarray(Image.open(folder / "0.png"), dtype=np.float32).mean(-1) / 255.0
    assert colour.shape == (1, 8, 8, 3) and np.abs(colour[0].mean(-1) - grey).max() < 1e-4
    code, _, err = _run(["colorize", "--workdir", str(tmp_path / "run"), "--image", str(folder / "0.png"),
                         "--out", str(tmp_path / "c.gif"), "--quiet"], capsys)
    assert code == 2 and "--out must end in .png or .npy" in err


def test_colorize_refuses_a_grey_run(runs, capsys, tmp_path) -> None:
    code, _, err = _run(["colorize", "--workdir", runs["uncond"], "--image", str(runs["root"] / "a.png"), "--out",
                         str(tmp_path / "c.png"), "--quiet"], capsys)
    assert code == 2 and "needs a run of colour images" in err


def test_sample_npz_records_no_labels_without_class(runs, capsys, tmp_path) -> None:
    code, _, err = _run(["sample", "--workdir", runs["cond"], "--num", "2", "--out", str(tmp_path / "u.npz"), *FAST],
                        capsys)
    assert code == 0, err
    assert "labels" not in np.load(tmp_path / "u.npz").files
    assert json.loads(str(np.load(tmp_path / "u.npz")["options"]))["steps"] == 2


def test_sample_output_is_inpaint_input(runs, capsys, tmp_path) -> None:
    """One layout: the uint8 channels-last samples of `sample --out x.npz` are read back by inpaint (and encode) as
    the same images, and the observed half of the completions is those pixels."""
    code, _, err = _run(["sample", "--workdir", runs["uncond"], "--num", "2", "--out", str(tmp_path / "s.npz"),
                         *FAST], capsys)
    assert code == 0, err
    samples = np.load(tmp_path / "s.npz")["samples"]
    assert samples.shape == (2, 16, 16, 1) and samples.dtype == np.uint8
    code, _, err = _run(["inpaint", "--workdir", runs["uncond"], "--image", str(tmp_path / "s.npz"), "--mask",
                         "left-half", "--steps", "3", "--set", "predictor=euler_maruyama", "--set", "corrector=none",
                         "--out", str(tmp_path / "i.npy"), "--quiet"], capsys)
    assert code == 0, err
    done = np.load(tmp_path / "i.npy")
    assert done.shape == (2, 16, 16, 1)
    assert np.abs(done[:, :, :8] - samples[:, :, :8] / 255.0).max() < 1e-5


def test_too_few_inpainting_steps_name_what_inpaint_offers(runs, capsys, tmp_path) -> None:
    """VP's discrete chain needs steps > beta_max (20): the error names inpaint's remedies, not the ddim sampler
    (a `sample` option that inpaint does not have), and the remedies it names run."""
    base = ["inpaint", "--workdir", runs["uncond"], "--image", str(runs["root"] / "a.png"), "--mask", "top-half",
            "--out", str(tmp_path / "i.npy"), "--quiet"]
    code, _, err = _run([*base, "--steps", "20"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--steps 21 or more" in err and "predictor=euler_maruyama" in err and "ddim" not in err, err
    for remedy in (["--steps", "21", "--set", "corrector=none"],
                   ["--steps", "4", "--set", "predictor=euler_maruyama", "--set", "corrector=none"],
                   ["--steps", "4", "--method", "smc", "--set", "num_particles=2"]):
        code, _, err = _run([*base, *remedy], capsys)
        assert code == 0, (remedy, err)
