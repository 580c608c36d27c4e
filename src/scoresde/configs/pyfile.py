"""Deprecated: moved to :mod:`scoresde.config.pyfile`; re-exported here."""

from ..config.pyfile import parse_config_file, parse_config_source

__all__ = ["parse_config_file", "parse_config_source"]
