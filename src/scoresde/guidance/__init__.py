"""Controllable generation: classifier and classifier-free guidance (score-function wrappers that every sampler and
SDE accepts). Inverse problems (inpainting, colorization) are in :mod:`scoresde.inverse`."""

from .guided import GuidedModel, classifier, classifier_free

__all__ = ["GuidedModel", "classifier", "classifier_free"]
