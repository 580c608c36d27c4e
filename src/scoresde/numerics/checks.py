"""Small argument checks shared across the package (one message for one mistake)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_choice(name: str, value: Any, valid: Sequence[str]) -> Any:
    """``value`` if it is one of ``valid``, else a ``ValueError`` listing them: ``unknown <name> ...``."""
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values are: {', '.join(valid)}")
    return value


def check_count(name: str, value: Any) -> int:
    """``value`` if it is a positive integer (not a bool, not a float), else a ``ValueError``."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
