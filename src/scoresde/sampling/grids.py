"""The time grids of the fixed-step samplers; they live in :mod:`scoresde.numerics.grids` (the likelihood's
fixed-step solver reads them too) and are re-exported here."""

from ..numerics.grids import GRIDS, check_times, time_grid, time_steps

__all__ = ["GRIDS", "check_times", "time_grid", "time_steps"]
