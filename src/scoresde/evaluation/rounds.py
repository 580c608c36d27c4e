"""Resumable, rank-sharded work in rounds: round ``k`` covers items ``[k R, (k + 1) R)``; rank ``r`` of ``W`` does
the rounds with ``k % W == r`` and writes each to its own ``.npz`` atomically, so a crash resumes at the first
missing round and any number of ranks produces the same files. Rank 0 gathers them from the shared folder."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..training.distributed import DistEnv


def round_ranges(num_items: int, round_size: int) -> list[range]:
    """The item ranges of the rounds (the last may be shorter)."""
    if num_items < 1 or round_size < 1:
        raise ValueError(f"need num_items >= 1 and round_size >= 1, got {num_items} and {round_size}")
    return [range(s, min(s + round_size, num_items)) for s in range(0, num_items, round_size)]


def _round_path(directory: Path, k: int) -> Path:
    return directory / f"round_{k:06d}.npz"


def _done(path: Path, items: range) -> bool:
    try:
        with np.load(path, allow_pickle=False) as f:
            return np.array_equal(f["indices"], np.arange(items.start, items.stop))
    except (FileNotFoundError, OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False


def check_protocol(directory: Path, protocol: dict[str, Any], env: DistEnv) -> None:
    """Record ``protocol`` in ``directory/protocol.json`` (rank 0), or refuse to resume a folder made with another
    one: its rounds would not belong to the same run."""
    path = directory / "protocol.json"
    text = json.dumps(protocol, indent=2, sort_keys=True, default=str)
    if env.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(text)
    env.barrier()
    if path.read_text() != text:
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(protocol) if old.get(k) != json.loads(text).get(k))
        raise ValueError(f"{directory} holds rounds of another protocol (differs in {', '.join(diff)}); "
                         "use another --tag or delete that folder")


def run_rounds(directory: Path, num_items: int, round_size: int, env: DistEnv,
               compute: Callable[[range], dict[str, np.ndarray]], *, progress: bool = False, desc: str = "") -> int:
    """Compute the missing rounds of this rank (``compute(items) -> arrays``, first axis over ``items``) and wait
    for every rank; returns the number of rounds this rank computed."""
    directory.mkdir(parents=True, exist_ok=True)
    todo = [(k, r) for k, r in enumerate(round_ranges(num_items, round_size))
            if k % env.world_size == env.rank and not _done(_round_path(directory, k), r)]
    for k, items in tqdm(todo, disable=not progress, desc=desc or "rounds"):
        arrays = compute(items)
        tmp = directory / f".round_{k:06d}.rank{env.rank}.tmp.npz"
        np.savez(tmp, indices=np.arange(items.start, items.stop), **arrays)
        os.replace(tmp, _round_path(directory, k))
    env.barrier()
    return len(todo)


def gather_rounds(directory: Path, num_items: int, round_size: int) -> dict[str, np.ndarray]:
    """Concatenate every round's arrays in item order (rank 0, after :func:`run_rounds`)."""
    parts: dict[str, list[np.ndarray]] = {}
    for k, items in enumerate(round_ranges(num_items, round_size)):
        path = _round_path(directory, k)
        if not _done(path, items):
            raise FileNotFoundError(f"round {k} ({path}) is missing or incomplete")
        with np.load(path, allow_pickle=False) as f:
            for key in f.files:
                parts.setdefault(key, []).append(f[key])
    return {key: np.concatenate(chunks) for key, chunks in parts.items()}
