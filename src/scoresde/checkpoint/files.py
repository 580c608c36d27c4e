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
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CorruptCheckpointError, NotACheckpointError, UnsafeCheckpointError

__all__ = ["load_weights_only", "sniff_format"]

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


def _refusal(err: pickle.UnpicklingError) -> str | None:
    """The ``Unsupported global: GLOBAL x`` part of a weights-only refusal, or None for any other refusal."""
    texts = [str(err), str(err.__context__ or "")]
    for text in texts:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if match:
            return match.group(1)
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
        raise NotACheckpointError(f"{path} is not a checkpoint (not a torch/zip/pickle file)")
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
        if name is not None:
            raise UnsafeCheckpointError(
                f"{path}: refused by torch.load(weights_only=True), nothing in it was executed: it contains "
                f"code-executing globals ({name}). Checkpoints of the Score SDE and PSLD code hold only tensors and "
                "plain values; re-save just those entries from a trusted copy") from err
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
