"""Exact likelihoods through the probability-flow ODE, and bits/dim for discrete data.

For phase-space SDEs (CLD, PSLD) the data-level entry points are :func:`augmented_log_likelihood` and
:func:`augmented_bits_per_dim` (the entropy-corrected bound over momentum draws).
"""

from .data import data_nll
from .ode import DEQUANTIZATIONS, TRACE_ESTIMATORS, LikelihoodInfo, bits_per_dim, log_likelihood
from .phase_space import augmented_bits_per_dim, augmented_log_likelihood

__all__ = ["DEQUANTIZATIONS", "TRACE_ESTIMATORS", "LikelihoodInfo", "augmented_bits_per_dim",
           "augmented_log_likelihood", "bits_per_dim", "data_nll", "log_likelihood"]
