"""The one config resolver: every loader, the factory and the CLI turn a config source into nested dicts here."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .presets import RawConfig, get_preset
from .pyfile import parse_config_file

__all__ = ["ConfigLike", "resolve_config"]


class DataclassInstance(Protocol):
    """Any dataclass instance, e.g. the typed :class:`~scoresde.config.Config` (named structurally: the schema
    imports this module, so this module does not import the schema)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


#: what :func:`resolve_config` accepts: nested dicts, a typed :class:`~scoresde.config.Config`, a ``.json`` or
#: original ``configs/**.py`` path, or a preset name
ConfigLike = Mapping[str, Any] | str | Path | DataclassInstance


def resolve_config(source: ConfigLike) -> RawConfig:
    """The config ``source`` as nested plain dicts in the original layout (not validated: see
    :func:`scoresde.config.load_config` for the typed :class:`~scoresde.config.Config`).

    ``source`` is one of:

    * a mapping (deep-copied as is);
    * a typed :class:`~scoresde.config.Config` (any dataclass instance, read with :func:`dataclasses.asdict`);
    * a ``*.json`` file (e.g. a run's ``config.json`` or a reference fixture's ``*.config.json``);
    * an original Score SDE ``configs/**.py`` file, parsed and never executed
      (:func:`scoresde.config.parse_config_file`);
    * a preset name of the one registry (:func:`scoresde.config.get_preset`): original (``ve/...``), ours
      (``toy/...``, ``digits/...``), phase space (``psld/...``, ``cld/...``) or FP (``fp/...``).

    Raises:
        FileNotFoundError: a ``.json``/``.py`` path that does not exist (and is not a preset's file name).
        ValueError: an unknown preset name (the message lists the closest ones).
        TypeError: anything else.
    """
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    if dataclasses.is_dataclass(source) and not isinstance(source, type):
        return dataclasses.asdict(source)
    if not isinstance(source, (str, Path)):
        raise TypeError(f"a config must be a dict, a Config, a .json/.py path or a preset name, got "
                        f"{type(source).__name__}")
    path = Path(source)
    if path.suffix == ".json" and path.is_file():
        return json.loads(path.read_text())
    if path.suffix == ".py" and path.is_file():
        return parse_config_file(path)
    if path.suffix == ".json":
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        return get_preset(str(source))
    except ValueError:
        if path.suffix == ".py":  # neither a file nor the file name of an original preset
            raise FileNotFoundError(f"config file {path} does not exist") from None
        raise
