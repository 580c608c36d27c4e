"""The run folder's ``config.json``: written when a run starts, compared when it resumes.

A resumed run must train what the run folder's checkpoints were trained with: its config may differ from the saved
one only in the scheduling keys of :data:`RESUMABLE_CHANGES` and the sections of :data:`RESUMABLE_SECTIONS`
(:func:`check_workdir_config`); any other difference is refused, naming the keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, config_from_dict
from ..models.phase_space_model import MODEL_DEFAULTS as PHASE_SPACE_MODEL_DEFAULTS

__all__ = ["RESUMABLE_CHANGES", "RESUMABLE_SECTIONS", "check_workdir_config", "prepare_workdir"]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


#: Keys a resumed run may change: they schedule the run but do not change what a step computes.
RESUMABLE_CHANGES = frozenset({"training.n_iters", "training.log_freq", "training.eval_freq", "training.snapshot_freq",
                               "training.snapshot_freq_for_preemption", "training.snapshot_sampling",
                               "training.num_workers", "training.num_snapshot_samples", "training.snapshot_sampler",
                               "training.snapshot_steps", "training.nonfinite", "training.max_skips",
                               "model.checkpointing", "model.channels_last"})
#: config sections a resumed run may change freely: they choose how snapshots are sampled and how the run is
#: evaluated, not what is trained
RESUMABLE_SECTIONS = ("sampling", "eval")


def prepare_workdir(workdir: str | Path, cfg: Config) -> None:
    """Create ``workdir`` and write ``config.json``. An existing one must hold the same config except for the
    scheduling keys of :data:`RESUMABLE_CHANGES` (e.g. a longer ``training.n_iters``) and the sections of
    :data:`RESUMABLE_SECTIONS`; any other difference is refused, naming the keys that differ."""
    check_workdir_config(workdir, cfg)
    workdir = Path(workdir)
    path = workdir / "config.json"
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cfg.to_dict(), indent=2))
    tmp.replace(path)


def _with_defaults(saved: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """A saved config as this version reads it: options added since it was written take their defaults (typed
    sections through :func:`config_from_dict`; the phase-space model keys of ``MODEL_DEFAULTS``), so that a new
    option does not make every older run folder "another config"."""
    try:
        saved = json.loads(json.dumps(config_from_dict(saved).to_dict()))
    except (ConfigError, TypeError, ValueError):  # a config this version cannot read: compare it as written
        return saved
    model = cfg.to_dict().get("model", {})
    saved["model"] = {**{k: v for k, v in PHASE_SPACE_MODEL_DEFAULTS.items() if k in model}, **saved.get("model", {})}
    return saved


def check_workdir_config(workdir: str | Path, cfg: Config) -> None:
    """Raise :class:`ConfigError` if ``workdir`` holds a run whose config differs from ``cfg`` outside
    :data:`RESUMABLE_CHANGES` (writes nothing)."""
    workdir = Path(workdir)
    path = workdir / "config.json"
    if path.exists():
        saved = _flatten(_with_defaults(json.loads(path.read_text()), cfg))
        new = _flatten(json.loads(json.dumps(cfg.to_dict())))
        diff = sorted(k for k in set(saved) | set(new) if saved.get(k) != new.get(k) and k not in RESUMABLE_CHANGES
                      and k.split(".")[0] not in RESUMABLE_SECTIONS)
        if diff:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in diff[:8])
            raise ConfigError(f"{workdir} holds a run with another config ({shown}); use a new --workdir, or "
                              "resume with the saved config")

