"""``metrics.jsonl``, the run folder's log: one strict-JSON record per line, consistent across resumes.

Each record is ``{"step": s, "<name>": value, ...}``; a non-finite value (a diverged loss) is written as ``null``,
since bare ``NaN``/``Infinity`` are not JSON and strict parsers reject them. A resumed run first cuts the log back to
its checkpoint's step (:func:`truncate_metrics`), so that records written after that checkpoint by the interrupted
run are not duplicated when the resumed run logs those steps again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

__all__ = ["append_metrics", "metrics_record", "truncate_metrics"]


def metrics_record(step: int, scalars: Mapping[str, float]) -> str:
    """One line of ``metrics.jsonl`` (without the newline): strict JSON, non-finite values as ``null``."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in scalars.items()}
    return json.dumps({"step": int(step), **clean}, allow_nan=False)


def append_metrics(path: str | Path, step: int, scalars: Mapping[str, float]) -> None:
    """Append :func:`metrics_record` of ``step`` and ``scalars`` to the log ``path``."""
    with open(path, "a") as f:
        f.write(metrics_record(step, scalars) + "\n")


def truncate_metrics(path: str | Path, step: int, *, drop_train_at_step: bool = False) -> int:
    """Cut the log ``path`` back to a checkpoint of ``step``: keep the records of steps ``<= step``, drop later ones
    and any line that is not a complete JSON record (a write cut by a kill); returns the number of lines dropped.

    With ``drop_train_at_step`` the training-loss record of ``step`` itself is dropped too: the checkpoint carries
    the losses of the log window that record summarised early (the end of a ``--max-steps`` run), so the resumed run
    logs them with the rest of their window. The file is rewritten atomically (temporary file, then rename).
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            s = int(record["step"])
        except (ValueError, KeyError, TypeError):
            dropped += 1
            continue
        if s > step or (drop_train_at_step and s == step and "train/loss" in record):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)
    return dropped
