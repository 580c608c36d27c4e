"""Checks of a network's config sections: refuse what a network cannot honour instead of ignoring it.

Used by the ``from_config`` builders of :class:`~scoresde.nets.ncsnpp.NCSNpp` and :class:`~scoresde.nets.ddpm.DDPM`:
an unknown key (a typo, an option of another network) or a value the architecture does not implement (say
``model.normalization = 'InstanceNorm'`` on NCSN++) is a ``ValueError`` naming it. Single arguments are checked by
:mod:`scoresde.numerics.checks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["check_config_keys", "check_config_value"]


def check_config_value(cfg: Mapping[str, Any], key: str, allowed: Sequence[Any], why: str) -> None:
    """Reject a config entry that the network cannot honour (instead of silently ignoring it)."""
    if key in cfg and cfg[key] not in allowed:
        raise ValueError(f"unsupported model.{key} {cfg[key]!r}; allowed values: {list(allowed)} ({why})")


def check_config_keys(section: str, cfg: Mapping[str, Any], known: set[str]) -> None:
    """Reject unknown keys in a config section, naming them."""
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown {section} config keys {unknown}; known keys: {sorted(known)}")
