"""What the non-finite-loss guard keeps: the newest checkpoint whose weights gave a finite loss.

A checkpoint of step ``s`` holds the weights after ``s`` updates; the loss of step ``s`` is computed from them only
after the checkpoint is written. When that loss is NaN or infinite (or, with ``training.nonfinite=skip``, the losses
of ``training.max_skips`` + 1 steps in a row, all from the same weights since skipped steps do not update them),
the checkpoints from the first bad step on hold weights that diverge: resuming from one fails the same way. They
are renamed ``checkpoints/nonfinite_<step>/`` (kept for inspection, never resumed from), so the run resumes from the
newest checkpoint with a finite loss. The folders of the last divergence are kept, and older ones only up to ``keep``
folders in all (default 2); the rest are removed, so that repeated divergences of a long run do not fill the disk with
full-size checkpoints nobody resumes from.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..checkpoint.run import checkpoint_dir, list_checkpoints

#: ``nonfinite_<step>`` folders kept by :func:`set_aside_diverged` (the newest, by step)
KEEP_DIVERGED = 2

__all__ = ["divergence_message", "set_aside_diverged"]


def set_aside_diverged(workdir: str | Path, first_bad_step: int, keep: int = KEEP_DIVERGED
                       ) -> tuple[Path | None, list[Path]]:
    """Rename the checkpoints of ``workdir`` of steps ``>= first_bad_step`` to ``nonfinite_<step>`` (replacing an
    older one of that name) and remove older ``nonfinite_*`` folders beyond ``keep`` in all (the ones set aside now
    are always kept); return the newest remaining checkpoint (``None``: none left) and the new paths."""
    moved = []
    for step, _, path in list_checkpoints(workdir):
        if step >= first_bad_step:
            target = checkpoint_dir(workdir) / f"nonfinite_{step}"
            if target.exists():
                shutil.rmtree(target)
            path.rename(target)
            moved.append(target)
    aside = sorted((p for p in checkpoint_dir(workdir).glob("nonfinite_*") if re.fullmatch(r"nonfinite_\d+", p.name)),
                   key=lambda p: int(p.name.split("_")[1]), reverse=True)
    for old in [p for p in aside if p not in moved][max(keep - len(moved), 0):]:  # this event's are always kept
        shutil.rmtree(old, ignore_errors=True)
    remaining = list_checkpoints(workdir)
    return (remaining[0][2] if remaining else None), moved


def divergence_message(value: float, step: int, skipped: int, max_skips: int, kept: Path | None,
                       moved: list[Path]) -> str:
    """The one-line error of the guard: the bad loss and step, the checkpoint a resume starts from, what was set
    aside, and what to change (``skipped``: non-finite steps skipped just before this one)."""
    what = f"non-finite training loss {value} at step {step}"
    if skipped:
        what += f" after {skipped} skipped step(s) in a row (training.max_skips={max_skips})"
    keep = (f"the newest checkpoint with a finite loss is {kept}, where a resume starts" if kept is not None else
            "no checkpoint with a finite loss is left: start again in a new --workdir (e.g. with a lower optim.lr)")
    aside = f"; set aside (weights that diverge): {', '.join(p.name for p in moved)}" if moved else ""
    hint = "" if skipped else ("; to skip such steps, resume with --set training.nonfinite=skip" if kept is not None
                               else "; training.nonfinite=skip skips such steps")
    return f"{what}; stopping: {keep}{aside}{hint}"
