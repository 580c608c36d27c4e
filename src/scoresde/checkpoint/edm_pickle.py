"""Reading NVlabs/edm network pickles without executing anything from them.

EDM (Karras et al. 2022) saves its networks with ``pickle.dump(dict(ema=net, loss_fn=..., augment_pipe=...,
dataset_kwargs=...))`` where every network class is "persistent" (``torch_utils.persistence``): each object is stored
as a call of ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose ``meta`` holds the **source code of
the module defining the class**, which EDM's own loader ``exec``\\ s. :func:`read_edm_pickle` reads such a file with
a restricted unpickler instead: each persistent object becomes an inert :class:`PersistentRecord` (its class name,
its ``__dict__`` and the keyword arguments it was built with; the source text is kept as data and never run), the
tensors are rebuilt by torch's own constructors (their bytes read with ``torch.load(weights_only=True)``), and any
other global the file names is refused with one :class:`~scoresde.checkpoint.errors.UnsafeCheckpointError` line
before anything is called. Persistent records of classes that EDM does not define are refused too (the source they
carry would run under EDM's loader). :mod:`scoresde.checkpoint.edm` maps the records onto this package's networks.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CorruptCheckpointError, NotACheckpointError, UnsafeCheckpointError

__all__ = ["EDM_CLASSES", "ModuleDictRecord", "PersistentRecord", "is_edm_pickle", "read_edm_pickle"]

#: the persistent classes of NVlabs/edm (``training/networks.py``, ``training/loss.py``, ``training/augment.py``):
#: the only class names a record may carry
EDM_CLASSES = frozenset({
    "Linear", "Conv2d", "GroupNorm", "UNetBlock", "PositionalEmbedding", "FourierEmbedding", "SongUNet", "DhariwalUNet",
    "VPPrecond", "VEPrecond", "iDDPMPrecond", "EDMPrecond", "VPLoss", "VELoss", "EDMLoss", "AugmentPipe"})
_PERSISTENT = ("torch_utils.persistence", "_reconstruct_persistent_obj")
#: numpy dtypes a scalar in the file may have (EDM stores a few numpy floats, e.g. ``skip_scale``)
_NUMPY_KINDS = frozenset("biuf")
#: bytes of the file's start searched for EDM's persistence global by :func:`is_edm_pickle`
SNIFF_BYTES = 1 << 16


@dataclass
class PersistentRecord:
    """One object of an EDM pickle, inert: ``class_name`` (e.g. ``'SongUNet'``), ``state`` (its ``__dict__``:
    for a ``torch.nn.Module``, ``_parameters``, ``_buffers``, ``_modules`` and its plain attributes) and ``init_kwargs``
    (the keyword arguments of its constructor, as EDM's persistence records them)."""

    class_name: str
    state: dict[str, Any]
    init_kwargs: dict[str, Any] = field(default_factory=dict)

    def modules(self) -> dict[str, Any]:
        """The child modules (records), by name (``{}`` for a record that is no module)."""
        return {k: v for k, v in dict(self.state.get("_modules") or {}).items() if v is not None}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The record's own parameters and buffers (not its children's), by name; ``None`` entries left out."""
        out = {}
        for group in ("_parameters", "_buffers"):
            out.update({k: v for k, v in dict(self.state.get(group) or {}).items() if v is not None})
        return out


class ModuleDictRecord:
    """A ``torch.nn.ModuleDict`` of the file (EDM's ``enc``/``dec``), inert: its ``state`` (``__dict__``)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"a ModuleDict with state of type {type(state).__name__}")
        self.state = state

    def modules(self) -> dict[str, Any]:
        """The entries, in order."""
        return {k: v for k, v in dict(self.state.get("_modules") or {}).items() if v is not None}


class _EasyDict(dict):
    """``dnnlib.util.EasyDict`` read as a plain dict."""


def _record(meta: Any) -> PersistentRecord:
    """``_reconstruct_persistent_obj(meta)`` made inert: the record of ``meta`` (its source code is not run)."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise pickle.UnpicklingError("a persistence record that is not a class record")
    name = meta["class_name"]
    if name not in EDM_CLASSES:
        raise _UnsafeRecord(name)
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"the persistence record of {name} has state of type {type(state).__name__}")
    kwargs = state.get("_init_kwargs") or {}
    return PersistentRecord(name, state, dict(kwargs) if isinstance(kwargs, dict) else {})


class _UnsafeRecord(pickle.UnpicklingError):
    """A persistence record of a class EDM does not define."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _load_storage(data: Any) -> Any:
    """``torch.storage._load_from_bytes`` with ``weights_only=True``: a storage's bytes, read as data only."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"storage bytes of type {type(data).__name__}")
    return torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")


def _numpy_dtype(name: Any, *args: Any) -> np.dtype:
    dtype = np.dtype(name) if isinstance(name, str) else None
    if dtype is None or dtype.kind not in _NUMPY_KINDS:
        raise pickle.UnpicklingError(f"numpy dtype {name!r}")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = b"") -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMPY_KINDS or not isinstance(data, bytes):
        raise pickle.UnpicklingError("a numpy scalar that is not a number")
    return np.frombuffer(data, dtype=dtype)[0].item()


#: every global an EDM network pickle names, and what the restricted unpickler gives for it
_GLOBALS: dict[tuple[str, str], Any] = {
    _PERSISTENT: _record,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch.nn.modules.container", "ModuleDict"): ModuleDictRecord,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("dnnlib.util", "EasyDict"): _EasyDict,
}


class _Unpickler(pickle.Unpickler):
    """Resolves only :data:`_GLOBALS`; anything else is refused before it could be called."""

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _UnsafeGlobal(f"{module}.{name}")
        return found


class _UnsafeGlobal(pickle.UnpicklingError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def is_edm_pickle(path: str | Path) -> bool:
    """Whether ``path`` is a plain pickle naming EDM's persistence global in its first :data:`SNIFF_BYTES` bytes (an
    EDM network pickle: its first object is a persistent network)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return False
    return head[:1] == b"\x80" and b"torch_utils.persistence" in head and b"_reconstruct_persistent_obj" in head


def read_edm_pickle(path: str | Path) -> Any:
    """The object of an EDM pickle (usually ``{'ema': PersistentRecord('EDMPrecond'), 'loss_fn': ..., ...}``) with
    every persistent object an inert :class:`PersistentRecord` and every ``ModuleDict`` a :class:`ModuleDictRecord`;
    nothing from the file is executed (module docstring).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file names a global other than tensors, plain containers and EDM's persistence
            record, or a persistence record of a class EDM does not define (refused before anything is called).
        CorruptCheckpointError: truncated or corrupt.
        NotACheckpointError: not a pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as handle:
            return _Unpickler(handle).load()
    except _UnsafeGlobal as err:
        raise UnsafeCheckpointError(
            f"{path}: refused, nothing in it was executed: it names the global {err.name}, which an EDM network "
            "pickle never holds (only tensors, plain values and EDM's persistence records)") from None
    except _UnsafeRecord as err:
        raise UnsafeCheckpointError(
            f"{path}: refused, nothing in it was executed: it holds a persistent class {err.name!r} that EDM does not "
            f"define, whose source code EDM's own loader would run; EDM's classes are {', '.join(sorted(EDM_CLASSES))}"
        ) from None
    except (EOFError, pickle.UnpicklingError) as err:
        text = str(err).strip().splitlines()
        detail = text[0] if text else type(err).__name__
        if isinstance(err, EOFError) or "truncated" in detail or "ran out" in detail.lower():
            raise CorruptCheckpointError(f"{path} is truncated or corrupt: {detail}") from None
        raise NotACheckpointError(f"{path} is not an EDM network pickle: {detail}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError) as err:
        text = str(err).strip().splitlines()
        raise NotACheckpointError(f"{path} is not an EDM network pickle: "
                                  f"{text[0] if text else type(err).__name__}") from None
