"""Damaged checkpoints and interrupted writes (issue 22 item 1): every file of a checkpoint is checksummed; a
bit-flipped, truncated or zero-length file makes every command that reads the run fall back to the previous
checkpoint with one warning line (or, with no other checkpoint, one error line); the hidden folders of interrupted
writes are removed by the next start and never loaded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import scoresde
from scoresde.checkpoint import CorruptCheckpointError, SkippedCheckpointWarning
from scoresde.checkpoint.native import load_checkpoint_directory, load_training_state
from scoresde.checkpoint.run import remove_interrupted_writes
from scoresde.cli import main
from scoresde.config import load_config
from scoresde.training import Trainer

#: a DDPM (exportable to diffusers) on 8x8 colour images (colorize needs colour), two checkpoints in seconds
TINY = ["model.nf=32", "model.num_res_blocks=1", "model.ch_mult=[1]", "model.attn_resolutions=[]",
        "model.num_scales=30", "training.n_iters=2", "training.snapshot_freq=1", "training.eval_freq=0",
        "training.batch_size=4", "training.snapshot_sampling=false", "training.log_freq=1",
        "training.snapshot_freq_for_preemption=1", "data.dataset=folder", "data.num_channels=3", "data.image_size=8"]
PC = ["--steps", "3", "--set", "predictor=euler_maruyama", "--set", "corrector=none", "--quiet"]
ODE = ["--rtol", "1e-1", "--atol", "1e-1", "--quiet"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A tiny run folder with checkpoints of steps 1 and 2, and the images its commands read."""
    root = tmp_path_factory.mktemp("integrity")
    rng = np.random.default_rng(0)
    (root / "rgb").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / "rgb" / f"{i}.png")
    Trainer(load_config("vp/ddpm/cifar10", [*TINY, f"data.root={root / 'rgb'}"]), root / "run", progress=False).train()
    assert sorted(p.name for p in (root / "run" / "checkpoints").iterdir()) == ["checkpoint_1", "checkpoint_2"]
    return root


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "bitflip":  # one exponent bit of the last float32 weight (the file ends with tensor data)
        data[-1] ^= 0x40
        path.write_bytes(bytes(data))
    elif how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.write_bytes(b"")


def _commands(root: Path, run: Path, out: Path) -> dict[str, list[str]]:
    img, other = str(root / "rgb" / "0.png"), str(root / "rgb" / "1.png")
    w = ["--workdir", str(run)]
    return {
        "sample": ["sample", *w, "--num", "2", "--out", str(out / "s.npz"), "--sampler", "dpm_solver", "--steps", "2",
                   "--quiet"],
        "likelihood": ["likelihood", *w, "--num", "2", "--method", "rk4", "--steps", "2", "--quiet"],
        "eval": ["eval", *w, "--metrics", "bpd", "--bpd-num", "2", "--bpd-batch-size", "2", "--tag", "t", "--quiet"],
        "export": ["export", "--format", "diffusers", *w, "--out", str(out / "hub")],
        "inpaint": ["inpaint", *w, "--image", img, "--mask", "top-half", "--out", str(out / "i.npy"), *PC],
        "colorize": ["colorize", *w, "--image", img, "--out", str(out / "c.npy"), *PC],
        "encode": ["encode", *w, "--image", img, "--out", str(out / "z.npy"), *ODE],
        "interpolate": ["interpolate", *w, "--images", img, other, "--num", "3", "--out", str(out / "st.npy"), *ODE],
        "train": ["train", *w, "--quiet", "--set", "training.n_iters=3"],
    }


# every reading command, each with one kind of damage (all three kinds are covered for each loader below)
CASES = [("sample", "bitflip"), ("likelihood", "truncated"), ("eval", "empty"), ("export", "bitflip"),
         ("inpaint", "truncated"), ("colorize", "empty"), ("encode", "bitflip"), ("interpolate", "truncated"),
         ("train", "empty")]


@pytest.mark.parametrize(("command", "how"), CASES)
def test_every_command_falls_back_to_the_newest_valid_checkpoint(pristine, tmp_path, capsys, command, how) -> None:
    run = tmp_path / "run"
    shutil.copytree(pristine / "run", run)
    _damage(run / "checkpoints" / "checkpoint_2" / "model.safetensors", how)
    code = main(_commands(pristine, run, tmp_path)[command])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"scoresde {command}: warning: skipping unusable checkpoint {run}/checkpoints/"
                               "checkpoint_2: CorruptCheckpointError: ")
    assert f"{run}/checkpoints/checkpoint_2/model.safetensors is corrupt" in lines[0]  # the file is named
    if command in ("sample", "likelihood", "eval", "export"):  # they report the step they used
        assert "(step 1" in captured.out and "(step 2" not in captured.out, captured.out
    if command == "sample":
        assert int(np.load(tmp_path / "s.npz")["step"]) == 1
    if command == "train":  # resumed from step 1 and went on to 3
        assert "resuming at step 1 of 3" in captured.out
        assert json.loads((run / "checkpoints" / "checkpoint_3" / "checkpoint.json").read_text())["step"] == 3


@pytest.mark.parametrize("command", ["sample", "inpaint", "train"])
def test_a_single_damaged_checkpoint_is_one_error_line(pristine, tmp_path, capsys, command) -> None:
    run = tmp_path / "run"
    shutil.copytree(pristine / "run", run)
    shutil.rmtree(run / "checkpoints" / "checkpoint_2")
    _damage(run / "checkpoints" / "checkpoint_1" / "model.safetensors", "truncated")
    code = main(_commands(pristine, run, tmp_path)[command])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"scoresde {command}: error: none of the checkpoints of run folder {run} loads: "
                          "checkpoint_1: CorruptCheckpointError: ")
    assert not (run / "checkpoints" / "checkpoint_3").exists()  # train did not start afresh over the damaged run


@pytest.mark.parametrize("how", ["bitflip", "truncated", "empty"])
@pytest.mark.parametrize("name", ["model.safetensors", "ema.safetensors", "optimizer.pt", "trainer.pt"])
def test_load_checkpoint_skips_any_damaged_file(pristine, tmp_path, how, name) -> None:
    """The same checkpoint is chosen whichever weights are asked for: damage anywhere refuses it as a whole."""
    run = tmp_path / "run"
    shutil.copytree(pristine / "run", run)
    _damage(run / "checkpoints" / "checkpoint_2" / name, how)
    for use_ema in (True, False):
        with pytest.warns(SkippedCheckpointWarning, match=rf"checkpoint_2: CorruptCheckpointError: .*{name} is "
                                                          "corrupt: its sha256 differs"):
            model = scoresde.load_checkpoint(run, use_ema=use_ema)
        assert model.step == 1


def test_the_bit_flip_of_the_issue_is_caught(pristine, tmp_path) -> None:
    """Issue 22 item 2: one flipped exponent bit in model.safetensors loaded silently (samples around 4e34)."""
    directory = tmp_path / "checkpoint_2"
    shutil.copytree(pristine / "run" / "checkpoints" / "checkpoint_2", directory)
    path = directory / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # the top exponent bit of the last float32 (little-endian): 1e-3 becomes about 3e35
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"model\.safetensors is corrupt: its sha256 differs"):
        load_checkpoint_directory(directory, use_ema=False)
    # without its recorded checksums the same file loads, with the flipped value: what the checksum is for
    meta = json.loads((directory / "checkpoint.json").read_text())
    del meta["sha256"]
    (directory / "checkpoint.json").write_text(json.dumps(meta))
    flipped = load_checkpoint_directory(directory, use_ema=False)
    good = load_checkpoint_directory(pristine / "run" / "checkpoints" / "checkpoint_2", use_ema=False)
    diff = [(a - b).abs().max().item() for a, b in zip(flipped.net.state_dict().values(),
                                                          good.net.state_dict().values(), strict=True)]
    assert sum(d > 0 for d in diff) == 1 and max(diff) > 1e30


def test_checksums_are_recorded_for_every_file(pristine) -> None:
    directory = pristine / "run" / "checkpoints" / "checkpoint_1"
    meta = json.loads((directory / "checkpoint.json").read_text())
    files = sorted(p.name for p in directory.iterdir() if p.name != "checkpoint.json")
    assert sorted(meta["sha256"]) == files == sorted(meta["files"].values())
    for name, digest in meta["sha256"].items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest


def test_old_checkpoints_without_checksums_load_and_name_a_corrupt_file(pristine, tmp_path) -> None:
    directory = tmp_path / "old"
    shutil.copytree(pristine / "run" / "checkpoints" / "checkpoint_2", directory)
    meta = json.loads((directory / "checkpoint.json").read_text())
    del meta["sha256"]
    (directory / "checkpoint.json").write_text(json.dumps(meta))
    state = load_training_state(directory)
    reference = load_training_state(pristine / "run" / "checkpoints" / "checkpoint_2")
    assert state.step == 2 and state.model_state.keys() == reference.model_state.keys()
    assert all(torch.equal(state.model_state[k], reference.model_state[k]) for k in state.model_state)
    _damage(directory / "model.safetensors", "truncated")
    with pytest.raises(CorruptCheckpointError, match=r"old/model\.safetensors is truncated or corrupt"):
        load_checkpoint_directory(directory, use_ema=False)
    shutil.copy(pristine / "run" / "checkpoints" / "checkpoint_2" / "model.safetensors", directory)
    _damage(directory / "optimizer.pt", "empty")
    with pytest.raises(CorruptCheckpointError, match=r"old/optimizer\.pt is truncated or corrupt"):
        load_training_state(directory)
    (directory / "ema.safetensors").unlink()
    with pytest.raises(CorruptCheckpointError, match=r"old/ema\.safetensors is missing"):
        load_checkpoint_directory(directory)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftover_temp_folders_are_removed_at_the_next_start_and_never_loaded(pristine, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(pristine / "run", run)
    root, host = run / "checkpoints", socket.gethostname()
    # an interrupted write of step 3: complete-looking content, but under the hidden name
    dead = root / f".checkpoint_3.pid{_dead_pid()}@{host}@abc123"
    shutil.copytree(root / "checkpoint_2", dead)
    alive = root / f".checkpoint_4.pid{os.getpid()}@{host}@def456"  # a write still in progress: kept
    alive.mkdir()
    old_unnamed, new_unnamed = root / ".preempt_5.x1y2z3", root / ".preempt_6.q9w8e7"  # an older version's names
    old_unnamed.mkdir()
    new_unnamed.mkdir()
    hour_ago = time.time() - 3700
    os.utime(old_unnamed, (hour_ago, hour_ago))
    code = main(_commands(pristine, run, tmp_path)["sample"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == "", captured.err
    assert int(np.load(tmp_path / "s.npz")["step"]) == 2  # not the leftover "step 3"
    assert not dead.exists() and not old_unnamed.exists() and alive.is_dir() and new_unnamed.is_dir()
    assert remove_interrupted_writes(run) == []  # nothing more until they are stale
    assert set(remove_interrupted_writes(run, stale_after_s=0.0)) == {alive, new_unnamed}


def test_a_writer_removes_the_leftovers_of_a_killed_one(pristine, tmp_path) -> None:
    """The trainer's start (resume, then every save) removes them too."""
    run = tmp_path / "run"
    shutil.copytree(pristine / "run", run)
    dead = run / "checkpoints" / f".checkpoint_2.pid{_dead_pid()}@{socket.gethostname()}@zz"
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    Trainer(load_config(json.loads((run / "config.json").read_text()), ["training.n_iters=3"]), run,
            progress=False).train()
    assert not dead.exists() and sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint_1", "checkpoint_2", "checkpoint_3"]
