"""Inverse problems with a diffusion prior: inpainting and colorization (``scoresde.inpaint``, ``scoresde.colorize``),
one module per method with its paper (:mod:`.replacement`, :mod:`.repaint`, :mod:`.smc`), their registry
:data:`INVERSE_METHODS` and entry points (:mod:`.api`), the observation and its basis (:mod:`.observation`), the linear
SDEs' Gaussian transitions (:mod:`.kernels`) and particle resampling (:mod:`.resampling`).

Layer: above :mod:`scoresde.sampling`; imports ``models``, ``sdes``, ``numerics`` and ``sampling`` only.
"""

from .api import INVERSE_METHODS, InverseInfo, colorize, inpaint
from .kernels import LinearKernel
from .observation import Observation, decoupling_matrix
from .operators import (
                        Blur,
                        Composed,
                        Dense,
                        Downsample,
                        Grey,
                        LinearOperator,
                        Mask,
                        dense_matrix,
                        gaussian_kernel,
                        motion_kernel,
)

__all__ = ["INVERSE_METHODS", "Blur", "Composed", "Dense", "Downsample", "Grey", "InverseInfo", "LinearKernel",
           "LinearOperator", "Mask", "Observation", "colorize", "decoupling_matrix", "dense_matrix", "gaussian_kernel",
           "inpaint", "motion_kernel"]
