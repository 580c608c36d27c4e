"""Toy data with exact densities and scores: the teaching tool and the oracle of the test suite."""

from .distances import energy_distance, sliced_wasserstein
from .mixture import GaussianMixture

__all__ = ["GaussianMixture", "energy_distance", "sliced_wasserstein"]
