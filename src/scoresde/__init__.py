"""scoresde: score-based diffusion generative models in pure PyTorch.

The data flow is one way: data -> SDE perturbation -> network -> objective, and
prior -> sampler(model, cond) -> samples -> metrics. The top level re-exports the entry points and the public
subpackages (``scoresde.sdes``, ``scoresde.models``, ``scoresde.losses``, ``scoresde.sampling``, ...).
"""

import importlib.metadata

from . import guidance, inverse, losses, metrics, models, sampling, sdes
from .checkpoint import load_checkpoint, load_score_sde_checkpoint
from .checkpoint.diffusers.export import export_diffusers
from .checkpoint.diffusers.load import load_diffusers
from .inverse import colorize, inpaint
from .likelihood import bits_per_dim, log_likelihood
from .models import DiffusionModel, as_model
from .sampling import sample
from .sampling.latent import encode, interpolate

__version__ = importlib.metadata.version("scoresde")  # the installed distribution's, from pyproject.toml

__all__ = ["DiffusionModel", "__version__", "as_model", "bits_per_dim", "colorize", "encode", "export_diffusers",
           "guidance", "inpaint", "interpolate", "inverse", "load_checkpoint", "load_diffusers",
           "load_score_sde_checkpoint", "log_likelihood", "losses", "metrics", "models", "sample", "sampling", "sdes"]
