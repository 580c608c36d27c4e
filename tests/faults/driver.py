"""Run ``scoresde`` with a fault injected, for the fault tests (``python tests/faults/driver.py FAULT ARGS...``).

FAULT is ``none``; ``step:K`` (SIGKILL this process when training is about to compute step K, i.e. after every
write of step K - 1); ``sigterm:K`` / ``sigint:K`` / ``sigint2:K`` (the same moment, SIGTERM / SIGINT / two
SIGINTs); ``write:N`` (SIGKILL it during the N-th checkpoint file write, after the temporary file
holds its content and before it is moved into place); ``enospc:N`` (the N-th checkpoint file write fails with
``ENOSPC``, as on a full disk). :func:`run_forked` runs a command with a fault in a forked child of the test
process (an interpreter start-up costs seconds on a loaded machine). Nothing here is imported by the package.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path


def install(fault: str) -> None:
    """Patch this process so that ``fault`` happens (module docstring)."""
    kind, _, number = fault.partition(":")
    if kind in ("step", "sigterm", "sigint", "sigint2"):
        from scoresde.training import Trainer

        real_step, stop = Trainer.train_step, int(number)
        sig = {"step": signal.SIGKILL, "sigterm": signal.SIGTERM}.get(kind, signal.SIGINT)

        def train_step(self, *args, **kwargs):
            if self.step == stop:  # the work of steps < K is done, step K's is not
                os.kill(os.getpid(), sig)
                if kind == "sigint2":  # a second Ctrl-C while the first is being handled
                    os.kill(os.getpid(), sig)
            return real_step(self, *args, **kwargs)

        Trainer.train_step = train_step
    elif kind in ("write", "enospc"):
        from scoresde.checkpoint import native

        real_write, count, target = native.atomic_write, [0], int(number)

        def write(path, fn, **kw):
            count[0] += 1
            if count[0] != target:
                return real_write(path, fn, **kw)

            def faulty(tmp):
                if kind == "enospc":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                fn(tmp)
                os.kill(os.getpid(), signal.SIGKILL)

            return real_write(path, faulty, **kw)

        native.atomic_write = write
    elif kind != "none":
        raise ValueError(f"unknown fault {fault!r}")


_CLONE_NEWNS, _CLONE_NEWUSER, _MS_RDONLY = 0x00020000, 0x10000000, 1


def mount_tmpfs(folder: Path, size: str, read_only: bool = False) -> None:
    """Mount a fresh tmpfs of ``size`` (e.g. ``"64k"``) on ``folder`` in a new user and mount namespace of this
    process (no root needed where unprivileged user namespaces are allowed; nothing outside this process sees it).
    ``OSError`` where the system does not allow it. Call it only in a single-threaded (e.g. forked) process."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    for name, text in (("uid_map", f"0 {uid} 1"), ("setgroups", "deny"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)
    flags = _MS_RDONLY if read_only else 0
    if libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs", flags, f"size={size}".encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {folder}")


def tmpfs_available(folder: Path) -> bool:
    """Whether :func:`mount_tmpfs` works here (tried in a forked child)."""
    pid = os.fork()
    if pid == 0:
        try:
            mount_tmpfs(folder, "16k")
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def run_forked(fault: str, argv: list[str], log: Path, *, tmpfs: tuple[Path, str, bool] | None = None,
               file_size: int | None = None, listing: Path | None = None) -> tuple[int, str]:
    """``scoresde ARGV`` with ``fault`` in a forked child of this process (no interpreter start-up: torch is
    already imported); returns its exit status (``-9`` when killed) and its stderr, kept in ``log``.

    ``tmpfs = (folder, size, read_only)`` mounts a tmpfs there first (:func:`mount_tmpfs`); ``file_size`` sets
    ``RLIMIT_FSIZE`` (``ulimit -f``) in bytes; ``listing``: a file where the child writes, after the command, the
    relative path and size of every file under the tmpfs folder (which disappears with the child)."""
    read_end, write_end = os.pipe()  # a pipe, not a file: RLIMIT_FSIZE does not limit it
    pid = os.fork()
    if pid == 0:  # the child: stderr to the pipe, never return into pytest
        code = 99
        try:
            os.close(read_end)
            os.dup2(write_end, 2)
            sys.stderr = open(2, "w", closefd=False)
            import torch

            torch.set_num_threads(1)
            install(fault)
            if tmpfs is not None:
                mount_tmpfs(*tmpfs)
            if file_size is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
            from scoresde.cli import main as cli

            code = cli(argv)
            if listing is not None and tmpfs is not None:
                files = sorted(f"{p.relative_to(tmpfs[0])} {p.stat().st_size}" for p in tmpfs[0].rglob("*"))
                listing.write_text("".join(line + "\n" for line in files))
        except SystemExit as stop:  # what the interpreter would exit with (a second signal exits at once)
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:  # report anything, then leave
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        err = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    log.write_text(err)
    return code, err


def main() -> int:
    install(sys.argv[1])
    from scoresde.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
