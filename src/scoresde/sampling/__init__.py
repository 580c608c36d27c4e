"""Sampling: one registry of samplers (predictor–corrector, probability-flow ODE, SSCS, DDIM) behind :func:`sample`
(their time grids are :mod:`scoresde.numerics.grids`)."""

from .api import SampleInfo, sample, sampler_options
from .ddim import sample_ddim
from .dpm_solver import sample_dpm_solver
from .heun import sample_heun
from .registry import SAMPLERS, SamplerRegistry, SamplerSpec
from .samplers import sample_ode, sample_pc
from .sscs import sample_sscs
from .steps import CORRECTORS, PREDICTORS
from .unipc import sample_unipc

__all__ = ["CORRECTORS", "PREDICTORS", "SAMPLERS", "SampleInfo", "SamplerRegistry", "SamplerSpec",
           "sample", "sample_ddim", "sample_dpm_solver", "sample_heun", "sample_ode", "sample_pc", "sample_sscs",
           "sample_unipc", "sampler_options"]
