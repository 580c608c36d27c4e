"""Controllable generation: classifier and classifier-free guidance (score-function wrappers that every sampler and
SDE accepts) and linear inverse problems with a diffusion prior (inpainting, colorization)."""

from .guided import GuidedModel, classifier, classifier_free
from .inverse import INVERSE_METHODS, InverseInfo, colorize, decoupling_matrix, inpaint
from .kernels import LinearKernel

__all__ = ["INVERSE_METHODS", "GuidedModel", "InverseInfo", "LinearKernel", "classifier", "classifier_free",
           "colorize", "decoupling_matrix", "inpaint"]
