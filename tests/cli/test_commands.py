"""The command line: each bad input is one clear error line with a non-zero exit, and nothing is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scoresde.cli import build_parser, main

TINY = ["--set", "model.hidden=16", "--set", "model.depth=1", "--set", "training.batch_size=32",
        "--set", "training.n_iters=10", "--set", "training.snapshot_freq=10", "--set", "training.eval_freq=5",
        "--set", "training.snapshot_freq_for_preemption=5", "--set", "training.log_freq=5",
        "--set", "training.num_snapshot_samples=50", "--set", "model.num_scales=30"]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--config", "nope/preset"], "unknown preset 'nope/preset'"),
        (["train", "--config", "toy/two_moons", "--set", "training.bach_size=3"],
         "unknown config key training.bach_size; did you mean batch_size?"),
        (["train", "--config", "toy/two_moons", "--set", "optim.lr=fast"], "optim.lr must be of type float"),
        (["train", "--config", "vp/cifar10_ddpmpp_continuous"], "CIFAR10 needs data.root"),
        (["train", "--config", "vp/cifar10_ddpmpp_continuous", "--set", "data.root=/no/such/dir"],
         "CIFAR-10 not found under /no/such/dir"),
        (["train", "--config", "ve/celebahq_256_ncsnpp_continuous", "--set", "data.root=/no/such/dir"],
         "dataset path /no/such/dir does not exist"),
        (["train", "--config", "digits/vp_ddpmpp", "--set", "data.num_channels=3"],
         "dataset digits has images of shape (1, 16, 16) (C, H, W) but the config expects (3, 16, 16)"),
        (["train", "--config", "vp/cifar10_ddpmpp_continuous", "--set", "data.root=/tmp", "--set",
          "data.image_size=64"], "cifar10 images are 32x32, got resolution=64"),
        (["sample", "--workdir", "{tmp}/nothing"], "is not a scoresde run folder (no config.json)"),
        (["train"], "holds no run to resume (no config.json): start one with --config PRESET"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(argv, message, tmp_path, capsys) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "train":
        argv += ["--workdir", str(tmp_path / "run")]
    code, _out, err = _run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err and err.startswith(f"scoresde {argv[0]}: error:")
    assert not (tmp_path / "run").exists()


def test_existing_workdir_with_another_config_is_refused_untouched(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *TINY]) == 0
    before = (run / "config.json").read_text()
    code, _, err = _run(["train", "--config", "toy/two_moons", "--workdir", str(run), *TINY, "--set",
                         "optim.lr=0.1"], capsys)
    assert code == 2 and "holds a run with another config (optim.lr: 0.002 -> 0.1)" in err
    assert (run / "config.json").read_text() == before


def test_a_resume_keeps_the_runs_n_iters_and_a_finished_run_says_so_in_one_line(tmp_path, capsys) -> None:
    """Issue 26 item 7(f): resuming without the original --set training.n_iters continued to the preset's n_iters;
    n_iters below the current step printed 'resuming at step 10 of 5 ... stopped at step 10: ;'."""
    run = tmp_path / "run"
    assert main(["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *TINY]) == 0
    capsys.readouterr()
    pairs = [TINY[i:i + 2] for i in range(0, len(TINY), 2)]
    without_n_iters = [a for pair in pairs if pair[1] != "training.n_iters=10" for a in pair]
    assert len(without_n_iters) == len(TINY) - 2
    assert main(["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *without_n_iters]) == 0
    out = capsys.readouterr().out
    assert out == f"{run} is at step 10 and training.n_iters is 10: nothing to train (to continue, --set " \
                  "training.n_iters=N with N > 10)\n"
    assert main(["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *TINY, "--set",
                 "training.n_iters=5"]) == 0
    assert "is at step 10 and training.n_iters is 5: nothing to train" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["training"]["n_iters"] == 10  # nothing was rewritten


def test_a_bad_sampling_option_is_refused_before_training_and_sampling_may_change_on_resume(tmp_path, capsys) -> None:
    """Issue 26 item 7(b): sampling.predictor=foo was accepted, trained to the first snapshot and stopped there, and
    the fixed config was then refused on resume."""
    run = tmp_path / "run"
    code, _, err = _run(["train", "--config", "toy/two_moons", "--workdir", str(run), *TINY, "--set",
                         "sampling.predictor=foo"], capsys)
    assert code == 2 and "unknown sampling.predictor 'foo'; valid values are: euler_maruyama" in err
    assert not run.exists()
    assert main(["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *TINY]) == 0
    assert main(["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *TINY, "--set",
                 "sampling.predictor=euler_maruyama", "--set", "training.n_iters=12"]) == 0
    assert json.loads((run / "config.json").read_text())["sampling"]["predictor"] == "euler_maruyama"


def test_train_sample_likelihood_and_import_end_to_end(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *TINY]) == 0
    assert (run / "samples" / "step_10.png").exists()
    # resuming a finished run with a longer schedule continues it
    assert main(["train", "--workdir", str(run), "--quiet", "--set", "training.n_iters=15"]) == 0
    assert "resuming at step 10 of 15" in capsys.readouterr().out
    assert main(["sample", "--workdir", str(run), "--num", "30", "--out", str(tmp_path / "s.npz"), "--quiet"]) == 0
    data = np.load(tmp_path / "s.npz")
    assert data["samples"].shape == (30, 2) and int(data["step"]) == 15
    assert main(["sample", "--workdir", str(run), "--step", "3"]) == 2  # no such step: an error
    assert main(["likelihood", "--workdir", str(run), "--num", "20", "--quiet"]) == 0
    result = json.loads((run / "eval" / "likelihood_test_step_15.json").read_text())
    assert result["unit"] == "nats/dim" and result["num"] == 20 and 0 < result["value"] < 20  # 15 steps: barely trained
    assert main(["configs", "--filter", "toy/"]) == 0
    assert "toy/checkerboard" in capsys.readouterr().out


def test_import_of_an_original_checkpoint(tmp_path, capsys) -> None:
    ref = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
    if not (ref / "ddpmpp_vp.ckpt.pt").exists():
        pytest.skip("../shared/reference is absent")
    run = tmp_path / "imported"
    assert main(["import", "--score-sde", str(ref / "ddpmpp_vp.ckpt.pt"), "--config",
                 str(ref / "ddpmpp_vp.config.json"), "--workdir", str(run)]) == 0
    import torch

    from scoresde import load_checkpoint

    model = load_checkpoint(run / "checkpoints" / "checkpoint_3")
    step = model.step
    io = torch.load(ref / "ddpmpp_vp.io.pt", weights_only=True)
    with torch.no_grad():
        score = model.score(io["x"], io["t"])
    scale = io["score_ema"].flatten(1).abs().amax(1).clamp_min(1)
    assert step == 3 and ((score - io["score_ema"]).flatten(1).abs().amax(1) / scale).max() < 1e-4
    assert main(["import", "--score-sde", str(ref / "ddpmpp_vp.ckpt.pt"), "--config", "vp/cifar10_ddpmpp",
                 "--workdir", str(run)]) == 2  # never over an existing run


def test_help_of_every_command_is_useful() -> None:
    parser = build_parser()
    text = parser.format_help()
    for command in ("train", "sample", "likelihood", "configs", "import", "demo"):
        assert command in text
    out = subprocess.run([sys.executable, "-m", "scoresde", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--workdir" in out.stdout and "torchrun" in out.stdout


def test_threads_option_sets_torch_threads(tmp_path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["train", "--config", "toy/two_moons", "--workdir", str(tmp_path / "run"), "--quiet", *TINY,
                     "--threads", "3"]) == 0
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit):  # argparse: "--threads: must be a positive integer"
        build_parser().parse_args(["train", "--workdir", str(tmp_path / "r2"), "--threads", "0"])
