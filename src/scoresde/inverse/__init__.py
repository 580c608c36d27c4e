"""Linear inverse problems with a diffusion prior: ``scoresde.solve_inverse`` for any measurement ``y = A x + sigma_y
n`` with a linear operator (:mod:`.operators`: ``Dense``, ``Mask``, ``Grey``, ``Downsample``, ``Blur``), and its thin
forms ``scoresde.inpaint`` and ``scoresde.colorize``; one module per method with its paper (:mod:`.replacement`,
:mod:`.repaint`, :mod:`.projection`, :mod:`.smc`, ...), their registry :data:`INVERSE_METHODS` and entry points
(:mod:`.api`), the problem a method receives (:mod:`.solve`), the observation and its basis (:mod:`.observation`), the
linear SDEs' Gaussian transitions (:mod:`.kernels`) and particle resampling (:mod:`.resampling`).

Layer: above :mod:`scoresde.sampling`; imports ``models``, ``sdes``, ``numerics`` and ``sampling`` only.
"""

from .api import INVERSE_METHODS, InverseInfo, colorize, inpaint, solve_inverse
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
from .solve import InverseProblem, SpectralObservation

__all__ = ["INVERSE_METHODS", "Blur", "Composed", "Dense", "Downsample", "Grey", "InverseInfo", "InverseProblem",
           "LinearKernel", "LinearOperator", "Mask", "Observation", "SpectralObservation", "colorize",
           "decoupling_matrix", "dense_matrix", "gaussian_kernel", "inpaint", "motion_kernel", "solve_inverse"]
