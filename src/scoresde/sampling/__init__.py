"""Sampling: one registry of samplers (predictor–corrector, probability-flow ODE, SSCS, DDIM) behind :func:`sample`
(their time grids are :mod:`scoresde.numerics.grids`, or fitted to the model by :func:`optimize_grid`)."""

from .api import SampleInfo, sample, sampler_options
from .ddim import sample_ddim
from .dpm_solver import sample_dpm_solver
from .grid_fit import GridFit, optimize_grid
from .heun import sample_heun
from .registry import SAMPLERS, SamplerRegistry, SamplerSpec
from .samplers import sample_ode, sample_pc
from .sscs import sample_sscs
from .steps import CORRECTORS, PREDICTORS
from .unipc import sample_unipc

__all__ = ["CORRECTORS", "PREDICTORS", "SAMPLERS", "GridFit", "SampleInfo", "SamplerRegistry", "SamplerSpec",
           "optimize_grid", "sample", "sample_ddim", "sample_dpm_solver", "sample_heun", "sample_ode", "sample_pc",
           "sample_sscs", "sample_unipc", "sampler_options"]
