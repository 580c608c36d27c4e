"""Exact likelihoods through the probability-flow ODE, and bits/dim for discrete data, on data for every SDE (for
phase-space SDEs, CLD and PSLD, the entropy-corrected augmented bound; ``info.bound``). :func:`data_nll` is the
per-dimension likelihood of a run's data with the per-example seeding convention that the CLI and the evaluation
share."""

from .data import data_nll
from .ode import DEQUANTIZATIONS, TRACE_ESTIMATORS, LikelihoodInfo, bits_per_dim, log_likelihood

__all__ = ["DEQUANTIZATIONS", "TRACE_ESTIMATORS", "LikelihoodInfo", "bits_per_dim", "data_nll", "log_likelihood"]
