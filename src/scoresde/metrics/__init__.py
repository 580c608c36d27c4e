"""Sample-quality metrics: FID, KID and Inception Score from Inception-v3 features, and their statistics files.

The scores are NumPy float64 functions of extracted features; the Inception network (torch-fidelity's port of the
2015-12-05 TF graph) is imported lazily by :mod:`scoresde.metrics.inception`, only when features are extracted.
"""

from .distances import (
    MeanStd,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    polynomial_kernel,
)
from .inception import InceptionFeatures, InceptionOutput, load_inception
from .stats import FeatureStats, StatsAccumulator, load_reference_stats, save_reference_stats

__all__ = ["FeatureStats", "InceptionFeatures", "InceptionOutput", "MeanStd", "StatsAccumulator",
           "frechet_distance", "inception_score", "kernel_inception_distance", "load_inception",
           "load_reference_stats", "mmd2_unbiased", "polynomial_kernel", "save_reference_stats"]
