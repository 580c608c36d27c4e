"""Storage faults (issue 22 items 3 and 8): a full disk, a file-size limit (``ulimit -f``) and a read-only folder
are one error line naming the path, for the commands that write samples and for training's checkpoints, and
nothing half-written is left. The full disk and the read-only folder are real tmpfs mounts in a user namespace of a
forked child (no root needed); where the system forbids them, those cases are skipped and the full disk is still
covered by an injected ``ENOSPC`` (tests/faults/driver.py). ``chmod`` read-only folders are tested when not root
(root writes through them)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from scoresde.checkpoint.atomic import StorageError, atomic_directory, atomic_write
from scoresde.config import load_config
from scoresde.training import Trainer

from .driver import run_forked, tmpfs_available

TOY = ["model.hidden=16", "model.depth=1", "training.batch_size=16", "training.n_iters=2",
       "training.snapshot_freq=2", "training.snapshot_freq_for_preemption=2", "training.eval_freq=0",
       "training.snapshot_sampling=false", "training.log_freq=1"]
#: a toy whose first checkpoint (about 1.3 MB: weights, EMA, Adam's two moments) does not fit a 256 KB tmpfs
BIG = ["model.hidden=256", "model.depth=2", "training.batch_size=16", "training.n_iters=3",
       "training.snapshot_freq=3", "training.snapshot_freq_for_preemption=3", "training.eval_freq=0",
       "training.snapshot_sampling=false", "training.log_freq=1"]
FULL, READ_ONLY, TOO_LARGE = ("No space left on device", "Read-only file system", "File too large")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("storage") / "run"
    Trainer(load_config("toy/checkerboard", TOY), workdir).train()
    return workdir


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory) -> bool:
    return tmpfs_available(tmp_path_factory.mktemp("probe"))


def _sample(run: Path, out: Path) -> list[str]:
    """160 KB of samples (20000 2-D float32 points) in one .npz."""
    return ["sample", "--workdir", str(run), "--num", "20000", "--out", str(out), "--sampler", "dpm_solver",
            "--steps", "2", "--quiet"]


def _train(workdir: Path) -> list[str]:
    return ["train", "--config", "toy/checkerboard", "--workdir", str(workdir), "--quiet",
            *[a for s in BIG for a in ("--set", s)]]


def _one_line(code: int, err: str, prefix: str, *needles: str) -> None:
    assert code == 2, err  # not killed by SIGXFSZ (-25), not a traceback (1)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(prefix), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize(("size", "read_only", "reason"), [("64k", False, FULL), ("64k", True, READ_ONLY)])
def test_sample_onto_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(toy_run, can_mount, tmp_path, size,
                                                                            read_only, reason) -> None:
    if not can_mount:
        pytest.skip("no tmpfs in a user namespace here (unprivileged user namespaces disabled)")
    mnt, listing = tmp_path / "mnt", tmp_path / "listing.txt"
    mnt.mkdir()
    out = mnt / "s.npz"
    code, err = run_forked("none", _sample(toy_run, out), tmp_path / "log", tmpfs=(mnt, size, read_only),
                           listing=listing)
    _one_line(code, err, f"scoresde sample: error: cannot write {out}: {reason}")
    assert listing.read_text() == ""  # no half-written s.npz, no temporary file


def test_training_onto_a_full_disk_is_one_line_and_leaves_no_torn_checkpoint(can_mount, tmp_path) -> None:
    if not can_mount:
        pytest.skip("no tmpfs in a user namespace here (unprivileged user namespaces disabled)")
    mnt, listing = tmp_path / "mnt", tmp_path / "listing.txt"
    mnt.mkdir()
    code, err = run_forked("none", _train(mnt / "run"), tmp_path / "log", tmpfs=(mnt, "256k", False),
                           listing=listing)
    _one_line(code, err, f"scoresde train: error: cannot write {mnt}/run/checkpoints/checkpoint_3: {FULL}")
    left = [line.split()[0] for line in listing.read_text().splitlines()]
    assert not [p for p in left if "/." in p or p.startswith(".")], left  # no hidden temporary file or folder
    assert "run/checkpoints" in left and not [p for p in left if p.startswith("run/checkpoints/")], left


def test_training_with_an_injected_enospc_is_one_line(tmp_path) -> None:
    """The full disk without a mount (runs everywhere): the 2nd file write of the first checkpoint fails."""
    workdir = tmp_path / "run"
    code, err = run_forked("enospc:2", _train(workdir), tmp_path / "log")
    _one_line(code, err, f"scoresde train: error: cannot write {workdir}/checkpoints/checkpoint_3: {FULL}")
    assert [p.name for p in (workdir / "checkpoints").iterdir()] == []


@pytest.mark.parametrize("command", ["sample", "train"])
def test_a_file_size_limit_is_one_line_not_a_killed_process(toy_run, tmp_path, command) -> None:
    """``ulimit -f``: the kernel sends SIGXFSZ, which Python ignores, and the write fails with EFBIG."""
    out = tmp_path / "s.npz"
    argv = _sample(toy_run, out) if command == "sample" else _train(tmp_path / "run")
    code, err = run_forked("none", argv, tmp_path / "log", file_size=64 * 1024)
    target = out if command == "sample" else tmp_path / "run" / "checkpoints" / "checkpoint_3"
    _one_line(code, err, f"scoresde {command}: error: cannot write {target}: {TOO_LARGE}", "ulimit -f")
    if command == "sample":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]
    else:
        assert list((tmp_path / "run" / "checkpoints").iterdir()) == []


@pytest.mark.parametrize("command", ["likelihood", "sample-png"])
def test_small_outputs_over_a_file_size_limit_leave_nothing(toy_run, tmp_path, command) -> None:
    """The likelihood result and a PNG grid over a 100-byte ``ulimit -f``: one line naming the file, no file."""
    if command == "likelihood":
        argv = ["likelihood", "--workdir", str(toy_run), "--num", "4", "--batch-size", "4", "--method", "rk4",
                "--steps", "2", "--quiet"]
        folder = toy_run / "eval"
    else:
        folder = tmp_path / "out"
        argv = [*_sample(toy_run, folder / "s.png")[:4], "64", *_sample(toy_run, folder / "s.png")[5:]]
    before = set(folder.rglob("*")) if folder.exists() else set()
    code, err = run_forked("none", argv, tmp_path / "log", file_size=100)
    _one_line(code, err, f"scoresde {command.split('-')[0]}: error: cannot write {folder}/", TOO_LARGE)
    assert set(folder.rglob("*")) == before  # neither the file nor a temporary one


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod read-only folder (tmpfs test above covers it)")
def test_sample_into_a_chmod_read_only_folder_is_one_line(toy_run, tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code, err = run_forked("none", _sample(toy_run, folder / "s.npz"), tmp_path / "log")
        _one_line(code, err, f"scoresde sample: error: cannot write {folder / 's.npz'}: Permission denied")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(stat.S_IRWXU)


# ---- the helper itself --------------------------------------------------------------------------------------------
def _full(tmp: Path) -> None:
    tmp.write_bytes(b"half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_keeps_the_old_file_and_leaves_no_temporary_on_failure(tmp_path) -> None:
    target = tmp_path / "out.npy"
    atomic_write(target, lambda tmp: np.save(tmp, np.arange(3)))
    assert np.load(target).tolist() == [0, 1, 2] and [p.name for p in tmp_path.iterdir()] == ["out.npy"]
    with pytest.raises(StorageError) as info:
        atomic_write(target, _full)
    assert str(info.value) == f"cannot write {target}: No space left on device (free space or write elsewhere)"
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert np.load(target).tolist() == [0, 1, 2] and [p.name for p in tmp_path.iterdir()] == ["out.npy"]
    with pytest.raises(ZeroDivisionError):  # not a storage fault: passes through, still nothing left
        atomic_write(tmp_path / "x.json", lambda tmp: 1 / 0)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]


@pytest.mark.parametrize(("message", "expected"), [
    ("Error while serializing: I/O error: File too large (os error 27)", TOO_LARGE),
    ("[enforce fail at inline_container.cc:747] . open file failed with strerror: Read-only file system", READ_ONLY),
])
def test_writer_errors_of_safetensors_and_torch_become_storage_errors(tmp_path, message, expected) -> None:
    def fail(tmp: Path) -> None:
        raise RuntimeError(message)

    with pytest.raises(StorageError, match=f"^cannot write {tmp_path / 'w.safetensors'}: {expected}"):
        atomic_write(tmp_path / "w.safetensors", fail)
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path) -> None:
    def fill(tmp: Path) -> None:
        (tmp / "a.json").write_text("1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(b"2")

    target = tmp_path / "hub"
    atomic_directory(target, fill)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["a.json", "sub", "sub/b.bin"]
    (target / "keep.txt").write_text("mine")
    atomic_directory(target, lambda tmp: (tmp / "a.json").write_text("3"))  # into an existing folder: per file
    assert (target / "a.json").read_text() == "3" and (target / "keep.txt").read_text() == "mine"
    with pytest.raises(StorageError, match=f"^cannot write {tmp_path / 'new'}: No space left"):
        atomic_directory(tmp_path / "new", lambda tmp: _full(tmp / "a.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_outputs_get_the_mode_of_a_plain_write(tmp_path, mask) -> None:
    """The temporary file of ``atomic_write`` (mkstemp: 0600) and folder of ``atomic_directory`` (mkdtemp: 0700) end
    with the modes ``open`` / ``mkdir`` give under the umask, so outputs are as readable as before the atomic writes."""
    old = os.umask(mask)
    try:
        path = atomic_write(tmp_path / "samples.npy", lambda tmp: np.save(tmp, np.zeros(3)))
        folder = atomic_directory(tmp_path / "export", lambda tmp: (tmp / "a.txt").write_text("a"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((folder / "a.txt").stat().st_mode) == 0o666 & ~mask
