"""One preset: a function returning a fresh config and a one-line description of it, kept together.

:class:`Preset` is what :data:`scoresde.config.presets.PRESETS` maps names to: calling it returns the config (nested
plain dicts, :data:`RawConfig`), and ``description`` says in one line which SDE, network, data and resolution it
trains and where the values come from (``scoresde configs`` prints it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Preset", "RawConfig"]

#: a config as nested plain dicts in the original layout, not yet validated (the typed one is
#: :class:`scoresde.config.Config`)
RawConfig = dict[str, Any]


@dataclass(frozen=True)
class Preset:
    """A named config: ``preset()`` returns a fresh copy of it (the caller may modify it); ``description`` is one line:
    SDE, network, data and resolution, then its source (a paper, the original code, or scoresde's own).

    Raises:
        ValueError: an empty description or one of several lines (``scoresde configs`` prints one line per preset).
    """

    build: Callable[[], RawConfig]
    description: str

    def __post_init__(self) -> None:
        if not self.description.strip() or "\n" in self.description:
            raise ValueError(f"a preset description is one non-empty line, got {self.description!r}")

    def __call__(self) -> RawConfig:
        return self.build()
