"""Deprecated location: the scatter plots moved to :mod:`scoresde.training.plots` (the trainer draws them, and a lower
layer must not import the CLI)."""

from ..training.plots import scatter_panels

__all__ = ["scatter_panels"]
