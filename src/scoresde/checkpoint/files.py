"""Reading a ``torch.save`` file safely, with one clear error for each way it can fail.

:func:`load_weights_only` is the only way scoresde reads the ``.pth``/``.ckpt`` files of other code: with
``torch.load(weights_only=True)``, so nothing in a file is ever executed. A file that does not load is reported as
one of (all :class:`~scoresde.checkpoint.errors.IncompatibleCheckpointError`, hence ``ValueError``):

* :class:`~scoresde.checkpoint.errors.CorruptCheckpointError`: a zip archive or pickle that is truncated or corrupt;
* :class:`~scoresde.checkpoint.errors.NotACheckpointError`: not a checkpoint at all (not a torch zip archive nor a
  pickle: a text file, an image, a safetensors file, ...);
* :class:`~scoresde.checkpoint.errors.UnsafeCheckpointError`: refused because it holds code-executing globals.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import Tensor

from .errors import CorruptCheckpointError, NotACheckpointError, UnsafeCheckpointError

__all__ = ["load_safetensors", "load_weights_only", "safetensors_error", "sniff_format"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
#: messages of torch's zip reader for damaged archives
_CORRUPT = re.compile(r"PytorchStreamReader|zip archive|central directory|corrupt|magic number|inline_container|"
                      r"failed reading|unexpected EOF", re.IGNORECASE)


def sniff_format(path: str | Path) -> str:
    """``'zip'`` (``torch.save``'s default format), ``'pickle'`` (legacy ``torch.save`` or plain pickle),
    ``'safetensors'``, ``'empty'`` or ``'unknown'``, from the first bytes of the file."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        return "empty"
    if head[:4] in _ZIP_MAGIC:
        return "zip"
    # safetensors: a little-endian u64 header length, then the JSON header (checked before pickle: the length's
    # first bytes can look like pickle's PROTO opcode)
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:  # pickle PROTO opcode and a protocol number
        return "pickle"
    return "unknown"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__ + (" (unexpected end of file)" if isinstance(
        err, EOFError) else "")


#: globals a checkpoint of tensors and plain values may name (torch's own rebuild functions, storages and dtypes are
#: every ``torch.*``); any other global is code the unpickler would call, so the file is refused as unsafe
_DATA_GLOBALS = {"collections.OrderedDict", "_codecs.encode", "builtins.set", "builtins.frozenset", "builtins.slice",
                 "builtins.complex", "builtins.bytearray"}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
#: bytes of a pickle scanned for its globals (a legacy torch.save pickle keeps tensor data after the pickle)
SCAN_LIMIT = 1 << 26


def pickle_globals(data: bytes) -> list[str] | None:
    """The ``module.name`` globals a pickle stream names (``GLOBAL``/``INST``, and ``STACK_GLOBAL`` from the strings
    pushed or memoised before it), read with :mod:`pickletools` without executing anything; ``None`` where ``data``
    does not start with a pickle stream."""
    names: list[str] = []
    recent: list[Any] = []  # the last pushed values that matter: strings (or None for anything else)
    memo: dict[Any, Any] = {}
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
                recent.append(None)
            elif op.name == "STACK_GLOBAL":
                module, name = recent[-2:] if len(recent) >= 2 else (None, None)
                names.append(f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else "?")
                recent.append(None)
            elif op.name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                memo[len(memo) if op.name == "MEMOIZE" else arg] = recent[-1] if recent else None
                continue
            else:
                recent.append(memo.get(arg) if op.name in ("BINGET", "LONG_BINGET", "GET")
                              else arg if op.name in _STRING_OPS else None)
                del recent[:-4]
            if op.name == "STOP":
                return names
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return None


def _unsafe_globals(path: Path, kind: str) -> list[str]:
    """The globals of the file's pickle that are not data (:data:`_DATA_GLOBALS`, ``torch.*``): code-executing."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.open(member).read(SCAN_LIMIT)
        else:
            with open(path, "rb") as handle:
                data = handle.read(SCAN_LIMIT)
    except (OSError, zipfile.BadZipFile, StopIteration):
        return []
    names = pickle_globals(data) or []
    return [n for n in dict.fromkeys(names) if not (n.startswith("torch.") or n in _DATA_GLOBALS)]


def _unsafe(path: Path, names: list[str], err: BaseException | None) -> UnsafeCheckpointError:
    error = UnsafeCheckpointError(
        f"{path}: refused by torch.load(weights_only=True), nothing in it was executed: it contains code-executing "
        f"globals ({', '.join(names)}). "
        "Checkpoints of the Score SDE and PSLD code hold only tensors and plain values; re-save just those entries "
        "from a trusted copy")
    error.__cause__ = err
    return error


def _refusal(err: pickle.UnpicklingError) -> str | None:
    """The ``Unsupported global: GLOBAL x`` part of a weights-only refusal, or None for any other refusal."""
    texts = [str(err), str(err.__context__ or "")]
    for text in texts:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)|unsupported GLOBAL ([\w.]+) whose module", text)
        if match:
            return match.group(1) or match.group(2)
    return None


def load_weights_only(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one clear error per failure (module docstring).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptCheckpointError: truncated or corrupt.
        NotACheckpointError: not a torch zip archive nor a pickle, or a directory (scoresde's own checkpoints: use
            :func:`scoresde.load_checkpoint`).
        UnsafeCheckpointError: holds code-executing globals (refused; nothing in it was executed).
    """
    path = Path(path)
    if path.is_dir():
        raise NotACheckpointError(f"{path} is a directory, not a checkpoint file: for checkpoints in scoresde's own "
                                  "format (a checkpoint directory or a run folder) use scoresde.load_checkpoint")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    kind = sniff_format(path)
    if kind == "empty":
        raise CorruptCheckpointError(f"{path} is truncated or corrupt: the file is empty")
    if kind == "safetensors":
        raise NotACheckpointError(f"{path} is not a torch checkpoint but a safetensors file: load scoresde's own "
                                  "checkpoints by their directory or run folder")
    if kind == "unknown":
        unsafe = _unsafe_globals(path, kind)  # a protocol-0/1 pickle has no PROTO opcode to sniff
        if unsafe:
            raise _unsafe(path, unsafe, None)
        raise NotACheckpointError(f"{path} is not a checkpoint (not a torch/zip/pickle file)")
    if kind == "pickle":  # refused before torch reads it (and warns about the protocol of a hand-made pickle)
        unsafe = _unsafe_globals(path, kind)
        if unsafe:
            raise _unsafe(path, unsafe, None)
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise CorruptCheckpointError(f"{path} is truncated or corrupt: {_first_line(err)}") from err
        if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
            raise NotACheckpointError(f"{path} is not a checkpoint: a zip archive without torch.save's data.pkl")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        name = _refusal(err)
        unsafe = _unsafe_globals(path, kind) or ([name] if name is not None else [])
        if unsafe:
            raise _unsafe(path, unsafe, err) from err
        if kind == "pickle" and "truncated" in str(err).lower():
            raise CorruptCheckpointError(f"{path} is truncated or corrupt: {_first_line(err)}") from err
        detail = _first_line(err.__context__) if err.__context__ is not None else _first_line(err)
        raise NotACheckpointError(f"{path} is not a torch checkpoint: a pickle that torch.load(weights_only=True) "
                                  f"cannot read ({detail})") from err
    except RuntimeError as err:  # torch's zip reader; other RuntimeErrors (e.g. a CUDA map_location) pass through
        if not _CORRUPT.search(str(err)):
            raise
        raise CorruptCheckpointError(f"{path} is truncated or corrupt: {_first_line(err)}") from err
    except (EOFError, OSError, KeyError) as err:
        raise CorruptCheckpointError(f"{path} is truncated or corrupt: {_first_line(err)}") from err


def safetensors_error(path: str | Path, err: Exception) -> CorruptCheckpointError:
    """The one-line :class:`CorruptCheckpointError` for a safetensors file that cannot be read, naming it."""
    text = str(err).strip().splitlines()
    return CorruptCheckpointError(f"{path} is truncated or corrupt: {text[0] if text else type(err).__name__}")


def load_safetensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """``safetensors.torch.load_file`` with a truncated or corrupt file (header, length, dtype) reported as one
    :class:`CorruptCheckpointError` line naming the file, instead of the library's traceback."""
    try:
        return safetensors.torch.load_file(str(path), device=str(device))
    except (safetensors.SafetensorError, OSError) as err:
        raise safetensors_error(path, err) from err
