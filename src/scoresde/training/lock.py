"""An advisory lock on a run folder, so that two trainers never write the same run.

``scoresde train`` holds an exclusive :func:`fcntl.flock` lock on ``<workdir>/train.lock`` while it reads and writes
the run; the file holds the holder's PID and host name. The kernel releases a ``flock`` lock when its holder exits,
however it exits (``kill -9`` included), so a lock file left by a dead process is stale by construction and the next
trainer takes it. Only training takes the lock: evaluation shards, ``sample`` and the other readers of a run are
unaffected. On file systems without ``flock`` (some network mounts) the lock is not enforced: a warning says so.
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from pathlib import Path
from types import TracebackType

try:  # fcntl is POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "WorkdirLock", "WorkdirLockedError"]

#: name of the lock file in a run folder
LOCK_FILE = "train.lock"


class WorkdirLockedError(ValueError):
    """Another live process trains this run folder (it holds the lock): the ``--workdir`` given cannot be used now.
    A ``ValueError`` so that the CLI reports it as one line."""


class WorkdirLock:
    """Exclusive advisory lock on ``workdir`` for one trainer (a context manager; :meth:`acquire` / :meth:`release`).

    Args:
        workdir: the run folder (created if missing).

    :meth:`acquire` never waits: a lock held by a live process raises :class:`WorkdirLockedError` naming its PID.
    Locks are per open file, so a second :class:`WorkdirLock` on the same folder in the same process is refused
    too; :meth:`acquire` on a lock already held by this object is a no-op.
    """

    def __init__(self, workdir: str | Path) -> None:
        self.path = Path(workdir) / LOCK_FILE
        self._file = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock and write this process's PID into the lock file, or raise :class:`WorkdirLockedError`."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # kept open while the lock is held
        if fcntl is None:  # pragma: no cover - Windows
            warnings.warn(f"{self.path}: no flock on this platform; the run folder is not locked", stacklevel=2)
        else:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise WorkdirLockedError(f"{self.path.parent} is being trained by another process ({holder}; lock "
                                         f"file {self.path}): wait for it to stop, or use another --workdir") from None
            except OSError as err:  # a file system without flock
                warnings.warn(f"{self.path}: cannot lock ({err}); the run folder is not locked", stacklevel=2)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        """Release the lock (the lock file stays, holding the last holder's PID; a no-op when not held)."""
        if self._file is None:
            return
        if fcntl is not None:
            with contextlib.suppress(OSError):  # unlocking a file being closed may fail harmlessly
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

