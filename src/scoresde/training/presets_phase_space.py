"""Presets of the phase-space papers (PSLD: Pandey & Mandt 2023; CLD: Dockhorn et al. 2022) for image data.

Each entry maps a preset name to a function returning the nested config sections (as the other presets).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PHASE_SPACE_PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}
