"""Atomic output files and folders, with one clear error per storage fault.

Every file a command writes (checkpoints, samples, likelihood and evaluation results, exported folders) goes through
:func:`atomic_write` (or :func:`atomic_directory` for a folder): the content is written to a hidden temporary name in
the target's folder and moved into place with ``os.replace`` only once complete, so a crash, a kill, a full disk or a
file-size limit never leaves a half-written file under the target's name, and the temporary file is removed when the
write fails. A failed write is one :class:`StorageError` (an ``OSError``) naming the target and the cause (``No space
left on device``, ``File too large``, ``Read-only file system``, ``Permission denied``), whichever library wrote it:
``torch.save`` and ``safetensors`` report these faults as ``RuntimeError`` / ``SafetensorError``, translated here.

Python ignores ``SIGXFSZ`` (CPython sets it to ``SIG_IGN`` at start-up), so exceeding ``ulimit -f`` is an ``EFBIG``
error of the write, not a killed process.
"""

from __future__ import annotations

import errno as errno_codes
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["StorageError", "atomic_directory", "atomic_write", "storage_error"]

#: what to add to the system's message for the faults a user can act on
_HINTS = {errno_codes.ENOSPC: "free space or write elsewhere",
          errno_codes.EFBIG: "the file-size limit (ulimit -f) is smaller than the file"}


class StorageError(OSError):
    """A write that failed for a storage reason (disk full, file too large, read-only, no permission), naming the
    file: ``str()`` is ``cannot write PATH: REASON``, one line."""

    def __str__(self) -> str:
        hint = _HINTS.get(self.errno)
        return f"cannot write {self.filename}: {self.strerror}" + (f" ({hint})" if hint else "")


def _errno_of(err: BaseException) -> tuple[int | None, str] | None:
    """``(errno, reason)`` of a write failure reported by any writer, or ``None`` for an error that is not one: an
    ``OSError`` (also as the cause/context of torch's ``RuntimeError`` when writing through a Python file object), or
    a Rust ``os error N`` (safetensors) / torch's C++ writer message."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError):
            if e.errno is not None:
                return e.errno, e.strerror or os.strerror(e.errno)
            return None if not str(e) else (None, str(e).splitlines()[0])  # numpy: "N requested and M written"
        e = e.__cause__ or e.__context__
    text = str(err)
    match = re.search(r"\(os error (\d+)\)", text)
    if match:
        code = int(match.group(1))
        return code, os.strerror(code)
    match = re.search(r"strerror: (.+)$", text.splitlines()[0] if text else "")
    if match:  # torch's C++ writer opening a file: "open file failed with strerror: Read-only file system"
        reason = match.group(1).strip()
        codes = {os.strerror(c): c for c in (errno_codes.EROFS, errno_codes.EACCES, errno_codes.ENOSPC,
                                              errno_codes.EFBIG, errno_codes.ENOENT)}
        return codes.get(reason), reason
    return None


def storage_error(err: BaseException, target: str | Path) -> StorageError | None:
    """The :class:`StorageError` naming ``target`` for a failed write ``err`` (see :func:`_errno_of`), or ``None``
    when ``err`` is not a storage fault (a bug or a bad value, which must pass through unchanged)."""
    found = _errno_of(err)
    if found is None:
        return None
    code, reason = found
    if code is None and "requested and" in reason and "written" in reason:  # numpy's short write: a size limit
        code, reason = errno_codes.EFBIG, f"{os.strerror(errno_codes.EFBIG)} ({reason})"
    error = StorageError(code if code is not None else errno_codes.EIO, reason, str(target))
    return error


def _fsync(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's file-creation mask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(target: str | Path, write: Callable[[Path], object], *, fsync: bool = True) -> Path:
    """Write ``target`` through ``write(tmp)``, which writes the whole file at ``tmp`` (a hidden name in the same
    folder with the same suffix, so that writers choosing the format by suffix, such as PIL or ``np.save``, behave
    as for ``target``), then move it into place with ``os.replace``; returns ``target``.

    Use it for every output file: nothing is left under ``target`` or the temporary name when ``write`` fails or
    the process is killed before the rename (a killed process leaves only the hidden ``.<name>.*.tmp<suffix>``).
    ``fsync`` (default ``True``) flushes the file and its folder to disk before returning, so that a power loss
    after the return keeps it; the missing folder of ``target`` is created.

    Raises:
        StorageError: the write failed for a storage reason (disk full, file too large, read-only, permission),
            naming ``target``. Other errors of ``write`` pass through unchanged (after the temporary file is removed).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
        os.close(fd)
    except OSError as err:
        raise storage_error(err, target) from err
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 -> the mode a plain open() would give (0644 usually)
        if fsync:
            _fsync(tmp)
        os.replace(tmp, target)
        if fsync:
            _fsync(target.parent)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        translated = storage_error(err, target) if isinstance(err, Exception) else None
        if translated is not None:
            raise translated from err
        raise
    return target


def atomic_directory(target: str | Path, write: Callable[[Path], object]) -> Path:
    """Write the folder ``target`` through ``write(tmp)``, which fills the fresh hidden folder ``tmp`` next to it;
    returns ``target``.

    A new ``target`` appears whole, by one rename, or not at all. Into an existing folder, each written file replaces
    the file of its name by ``os.replace`` (other files are kept), after the whole set was written. When ``write``
    fails the hidden folder is removed; storage faults are one :class:`StorageError` naming ``target``.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as err:
        raise storage_error(err, target) from err
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 -> the mode of a plain mkdir (0755 usually)
        if not target.exists():
            os.replace(tmp, target)
        else:
            for path in sorted(tmp.rglob("*")):
                dest = target / path.relative_to(tmp)
                if path.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                else:
                    os.replace(path, dest)
            shutil.rmtree(tmp)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        translated = storage_error(err, target) if isinstance(err, Exception) else None
        if translated is not None:
            raise translated from err
        raise
    return target
