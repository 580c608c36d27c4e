"""Exact likelihoods through the probability-flow ODE, and bits/dim for discrete data, on data for every SDE (for
phase-space SDEs, CLD and PSLD, the entropy-corrected augmented bound; ``info.bound``). :func:`data_nll` is the
per-dimension likelihood of a run's data with the per-example seeding convention that the CLI and the evaluation
share. ``augmented_log_likelihood`` and ``augmented_bits_per_dim`` are deprecated aliases."""

from .data import data_nll
from .ode import DEQUANTIZATIONS, TRACE_ESTIMATORS, LikelihoodInfo, bits_per_dim, log_likelihood
from .phase_space import AugmentedLikelihoodInfo, augmented_bits_per_dim, augmented_log_likelihood

__all__ = ["DEQUANTIZATIONS", "TRACE_ESTIMATORS", "AugmentedLikelihoodInfo", "LikelihoodInfo",
           "augmented_bits_per_dim", "augmented_log_likelihood", "bits_per_dim", "data_nll", "log_likelihood"]
