"""The argument checks shared by the whole package: one function, one message for each kind of mistake.

* :func:`check_choice`: a value from a fixed set (``unknown <name> <value>; valid values are: a, b``);
* :func:`check_count`: a positive integer (``<name> must be a positive integer, got ...``);
* :func:`check_flag`: a bool, never a truthy string (``<name> must be true or false, got ...``);
* :func:`check_class_labels`: class labels of a batch; :func:`check_tensor`: a tensor argument (optionally
  non-empty and finite, naming the first bad index);
* :class:`Bounds` / :func:`check_number`: a number that must be finite and lie in an interval (config fields carry
  their ``Bounds`` as field metadata);
* :func:`convert_to_hint`: a config value read as its annotated type (the callers word the refusal).

Each takes ``error=``, the exception class to raise (a ``ValueError`` subclass such as the config's ``ConfigError``),
so that every layer refuses bad input with the same words.
"""

from __future__ import annotations

import collections.abc
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch


def check_choice(name: str, value: Any, valid: Sequence[Any], *, ignore_case: bool = False,
                 error: type[ValueError] = ValueError) -> Any:
    """``value`` if it is one of ``valid``, else ``error`` listing them: ``unknown <name> <value>; valid values are:
    a, b``. With ``ignore_case`` a string matching a (lower-case) valid value in any case is accepted and returned
    lower-cased (the networks' config strings such as ``'GroupNorm'``)."""
    probe = value.lower() if ignore_case and isinstance(value, str) else value
    try:
        ok = probe in valid
    except TypeError:  # an unhashable value tested against a set
        ok = False
    if not ok:
        raise error(f"unknown {name} {value!r}; valid values are: {', '.join(str(v) for v in valid)}")
    return probe


def check_count(name: str, value: Any, *, error: type[ValueError] = ValueError) -> int:
    """``value`` if it is a positive integer (not a bool, not a float), else ``error``."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise error(f"{name} must be a positive integer, got {value!r}")
    return value


def check_flag(name: str, value: Any, *, error: type[ValueError] = ValueError) -> bool:
    """``value`` if it is a bool, else ``error`` (a string such as ``'False'`` is not silently truthy)."""
    if not isinstance(value, bool):
        raise error(f"{name} must be true or false, got {value!r}")
    return value


#: what the data argument of the entry points (``log_likelihood``, ``bits_per_dim``, ``encode``) must be
DATA_TENSOR = "a tensor of data (batch first)"


def check_tensor(name: str, value: Any, what: str = "a tensor", *, finite: bool = False,
                 nonempty: bool = False) -> Any:
    """``value`` if it is a tensor, else ``TypeError``: ``<name> must be <what>, got <type>`` (the entry points' check
    of their data arguments, before any shape is read).

    With ``nonempty`` a tensor without entries (a 0-row batch) is a ``ValueError``; with ``finite`` a NaN or infinite
    entry is a ``ValueError`` naming the first one's index (``x_T has a non-finite entry nan at index (3, 0); it must
    be finite``): one NaN would otherwise spread to every sample through batch-wide quantities (the Langevin step
    size) or stop an adaptive ODE solver with a step-size underflow. Integer tensors are always finite."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{name} must hold at least one entry (a batch of at least one example), got shape "
                         f"{tuple(value.shape)}")
    if finite and (value.is_floating_point() or value.is_complex()):
        bad = ~torch.isfinite(value.detach())
        if bool(bad.any()):
            index = tuple(int(i) for i in torch.nonzero(bad)[0])
            entry = value.detach()[index].item()
            raise ValueError(f"{name} has a non-finite entry {entry} at index {index}; it must be finite")
    return value


def check_class_labels(labels: Any, batch_size: int, num_classes: int | None, *, allow_null: bool = False) -> Any:
    """``labels`` as int64 if it is an integer tensor of shape ``(batch_size,)`` with entries in ``[0, num_classes)``
    (``[-1, num_classes)`` with ``allow_null``: ``-1`` is classifier-free guidance's null label; no upper bound for
    ``num_classes=None``), else one ``ValueError`` naming the bad dtype, shape or label. The one check of class labels
    for classifiers, conditional networks, guidance and the mixture oracle."""
    low = -1 if allow_null else 0
    high = "" if num_classes is None else f", {num_classes})"
    allowed = f"an integer tensor of shape ({batch_size},) with entries in [{low}{high or ', ...)'}"
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"class_labels must be {allowed}, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"class_labels must be {allowed}, got dtype {labels.dtype}")
    if tuple(labels.shape) != (batch_size,):
        raise ValueError(f"class_labels must be {allowed}, got shape {tuple(labels.shape)}")
    if batch_size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < low or (num_classes is not None and hi >= num_classes):
            raise ValueError(f"class_labels must be {allowed}, got label {lo if lo < low else hi}")
    return labels.long()


@dataclass(frozen=True)
class Bounds:
    """The allowed values of a number: finite (unless ``finite=False``) and in the interval from ``low`` to ``high``
    (``None``: unbounded on that side; ``low_open``/``high_open`` exclude the end). Declared next to a config field
    as its metadata (``field(default=..., metadata={"bounds": Bounds(low=0, low_open=True)})``) and checked by
    :func:`check_number`."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    finite: bool = True

    def describe(self, integer: bool = False) -> str:
        """The allowed values in words: ``a positive integer``, ``an integer in [1, 2147483647]``, ``a finite
        number > 0``, ``a finite number in [0, 1)``."""
        if integer and self.high is None and self.low == 1 and not self.low_open:
            return "a positive integer"
        kind = "an integer" if integer else "a finite number" if self.finite else "a number"
        show = str if integer else (lambda v: f"{v:g}")
        if self.low is not None and self.high is not None:
            return (f"{kind} in {'(' if self.low_open else '['}{show(self.low)}, {show(self.high)}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {show(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {show(self.high)}"
        return kind

    def contains(self, value: float) -> bool:
        """Whether ``value`` is allowed."""
        if math.isnan(value) or (self.finite and math.isinf(value)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


#: the range of an integer option: torch stores integers (seeds, sizes, counts) as int64
INT64_RANGE = (-(2**63), 2**63 - 1)


def check_number(name: str, value: Any, bounds: Bounds = Bounds(), *, error: type[ValueError] = ValueError) -> Any:
    """``value`` if it is a number (not a bool) allowed by ``bounds``, else ``error``: ``<name> must be <allowed>,
    got <value>`` (``optim.lr must be a finite number > 0, got inf``). An ``int`` is described as an integer and must
    also lie in :data:`INT64_RANGE` (``seed=1e23`` would otherwise fail inside torch without naming the key)."""
    integer = isinstance(value, int)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds.contains(value):
        raise error(f"{name} must be {bounds.describe(integer)}, got {value!r}")
    if integer and not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
        raise error(f"{name} must be {bounds.describe(integer)} in the int64 range [-2**63, 2**63 - 1], got {value!r}")
    return value


class HintMismatch(ValueError):
    """A value that does not fit a type hint (:func:`convert_to_hint`); the caller words the message."""


def convert_to_hint(value: Any, hint: Any) -> Any:
    """``value`` converted to the annotated type ``hint``: the one reading of typed options from configs (JSON,
    ``--set``, original ``.py`` files), for the config schema and the networks' ``from_config``.

    An int where a float belongs becomes a float, a whole-number float where an int belongs an int (JSON numbers), a
    list a tuple for ``tuple[X, ...]`` / ``Sequence[X]`` (each item converted), a mapping a dict; ``X | None`` takes
    ``None``; a bool is never an int. :class:`HintMismatch` if the value does not fit; ``TypeError`` for a hint
    outside these."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        return convert_to_hint(value, next(a for a in args if a is not type(None)))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is dict or hint is dict:
        if isinstance(value, Mapping):
            return dict(value)
    elif origin in (tuple, collections.abc.Sequence):  # tuple[X, ...] / Sequence[X] from a JSON list
        if isinstance(value, (list, tuple)):
            return tuple(convert_to_hint(item, typing.get_args(hint)[0]) for item in value)
    else:
        raise TypeError(f"unsupported option type {hint}")
    raise HintMismatch(f"{value!r} is not of type {hint}")

