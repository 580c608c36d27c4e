"""Run ``scoresde`` with a fault injected, for the fault tests (``python tests/faults/driver.py FAULT ARGS...``).

FAULT is ``none``; ``step:K`` (SIGKILL this process when training is about to compute step K, i.e. after every
write of step K - 1); ``write:N`` (SIGKILL it during the N-th checkpoint file write, after the temporary file
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
    if kind == "step":
        from scoresde.training import Trainer

        real_step, stop = Trainer.train_step, int(number)

        def train_step(self, *args, **kwargs):
            if self.step == stop:  # the work of steps < K is done, step K's is not
                os.kill(os.getpid(), signal.SIGKILL)
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


def run_forked(fault: str, argv: list[str], log: Path) -> tuple[int, str]:
    """``scoresde ARGV`` with ``fault`` in a forked child of this process (no interpreter start-up: torch is
    already imported); returns its exit status (``-9`` when killed) and its stderr, kept in ``log``."""
    pid = os.fork()
    if pid == 0:  # the child: stderr to the log, never return into pytest
        code = 99
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            sys.stderr = open(2, "w", closefd=False)
            import torch

            torch.set_num_threads(1)
            install(fault)
            from scoresde.cli import main as cli

            code = cli(argv)
        except BaseException:  # report anything, then leave
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, log.read_text()


def main() -> int:
    install(sys.argv[1])
    from scoresde.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
