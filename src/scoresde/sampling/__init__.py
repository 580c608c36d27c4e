"""Sampling: predictor–corrector and probability-flow ODE samplers behind :func:`sample`."""

from .api import SampleInfo, sample, sampler_options
from .samplers import SAMPLERS, sample_ode, sample_pc
from .steps import CORRECTORS, PREDICTORS

__all__ = ["CORRECTORS", "PREDICTORS", "SAMPLERS", "SampleInfo", "sample", "sample_ode", "sample_pc",
           "sampler_options"]
