"""Exact likelihoods through the probability-flow ODE, and bits/dim for discrete data."""

from .ode import DEQUANTIZATIONS, TRACE_ESTIMATORS, LikelihoodInfo, bits_per_dim, log_likelihood

__all__ = ["DEQUANTIZATIONS", "TRACE_ESTIMATORS", "LikelihoodInfo", "bits_per_dim", "log_likelihood"]
