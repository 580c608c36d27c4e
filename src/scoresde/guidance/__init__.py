"""Controllable generation: classifier and classifier-free guidance (score-function wrappers that every sampler and
SDE accepts), with CFG rescale, dynamic thresholding and guidance in an interval of noise levels. One module per
method, its paper in the header. Inverse problems (inpainting, colorization) are in :mod:`scoresde.inverse`."""

from .base import GuidedFunction, GuidedModel
from .classifier import classifier
from .classifier_free import classifier_free
from .interval import noise_level
from .rescale import rescale_guided
from .thresholding import dynamic_threshold

__all__ = ["GuidedFunction", "GuidedModel", "classifier", "classifier_free", "dynamic_threshold", "noise_level",
           "rescale_guided"]
