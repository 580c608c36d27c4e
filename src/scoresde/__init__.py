"""scoresde: score-based diffusion generative models in pure PyTorch.

The data flow is one way: data -> SDE perturbation -> network -> objective, and
prior -> sampler(model, cond) -> samples -> metrics. The top level re-exports the entry points and the public
subpackages (``scoresde.sdes``, ``scoresde.models``, ``scoresde.losses``, ``scoresde.sampling``, ...).
"""

from . import guidance, losses, metrics, models, sampling, sdes
from .checkpoint import load_checkpoint, load_score_sde_checkpoint
from .checkpoint.diffusers import export_diffusers, load_diffusers
from .guidance import colorize, inpaint
from .likelihood import bits_per_dim, log_likelihood
from .models import DiffusionModel, as_model
from .sampling import sample
from .sampling.latent import encode, interpolate

__version__ = "0.1.0"

__all__ = ["DiffusionModel", "__version__", "as_model", "bits_per_dim", "colorize", "encode", "export_diffusers",
           "guidance", "inpaint", "interpolate", "load_checkpoint", "load_diffusers", "load_score_sde_checkpoint",
           "log_likelihood", "losses", "metrics", "models", "sample", "sampling", "sdes"]
