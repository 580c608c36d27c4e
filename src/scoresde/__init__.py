"""scoresde: score-based diffusion generative models in pure PyTorch.

The data flow is one way: data -> SDE perturbation -> network -> objective, and
prior -> sampler(score) -> samples -> metrics. The top level re-exports the entry points.
"""

from . import sdes
from .checkpoint import load_checkpoint, load_score_sde_checkpoint
from .likelihood import bits_per_dim, log_likelihood
from .sampling import sample

__version__ = "0.1.0"

__all__ = ["__version__", "bits_per_dim", "load_checkpoint", "load_score_sde_checkpoint", "log_likelihood", "sample",
           "sdes"]
