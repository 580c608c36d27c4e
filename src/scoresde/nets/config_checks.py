"""Checks of a network's config sections: refuse what a network cannot honour instead of ignoring it.

Used by the ``from_config`` builders of :class:`~scoresde.nets.ncsnpp.NCSNpp` and :class:`~scoresde.nets.ddpm.DDPM`:
an unknown key (a typo, an option of another network) or a value the architecture does not implement (say
``model.normalization = 'InstanceNorm'`` on NCSN++) is a ``ValueError`` naming it. Single arguments are checked by
:mod:`scoresde.numerics.checks`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from ..numerics.checks import HintMismatch, convert_to_hint

__all__ = ["check_attn_resolutions", "check_config_keys", "check_config_types", "check_config_value"]


def check_config_value(cfg: Mapping[str, Any], key: str, allowed: Sequence[Any], why: str) -> None:
    """Reject a config entry that the network cannot honour (instead of silently ignoring it)."""
    if key in cfg and cfg[key] not in allowed:
        raise ValueError(f"unsupported model.{key} {cfg[key]!r}; allowed values: {list(allowed)} ({why})")


def check_config_keys(section: str, cfg: Mapping[str, Any], known: set[str]) -> None:
    """Reject unknown keys in a config section, naming them."""
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown {section} config keys {unknown}; known keys: {sorted(known)}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is not None and issubclass(origin, Sequence):
        items = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        args = typing.get_args(hint)
        return f"a list of {items.get(args[0], str(args[0]))}" if args else "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def check_config_types(section: str, values: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """``values`` checked against the parameters of ``cls.__init__`` they feed: a value of the wrong type (e.g.
    ``model.ch_mult = '1,2'``, ``model.nf = 'abc'``) is refused naming the key, the expected type and the value,
    before the network is built (where such a value fails deep inside torch). Returns the values read as their
    types (:func:`scoresde.numerics.checks.convert_to_hint`: whole-number floats as integers, lists as tuples)."""
    hints = typing.get_type_hints(cls.__init__)
    out = dict(values)
    for key, value in values.items():
        if key in hints:
            try:
                out[key] = convert_to_hint(value, hints[key])
            except HintMismatch:
                raise ValueError(f"{section}.{key} must be {_describe(hints[key])}, got {value!r}") from None
    return out


def check_attn_resolutions(attn_resolutions: Sequence[int], resolutions: Sequence[int], image_size: int) -> None:
    """Refuse attention at a resolution the U-Net does not have (it would silently add no attention)."""
    missing = [r for r in attn_resolutions if r not in resolutions]
    if missing:
        raise ValueError(f"model.attn_resolutions {list(attn_resolutions)} names resolution(s) {missing} that this "
                         f"network does not have; with image_size {image_size} and {len(resolutions)} levels of "
                         f"ch_mult they are {list(resolutions)}")
