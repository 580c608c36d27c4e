"""scoresde: score-based diffusion generative models in pure PyTorch.

The data flow is one way: data -> SDE perturbation -> network -> objective, and
prior -> sampler(model, cond) -> samples -> metrics. The top level re-exports the entry points and the public
subpackages (``scoresde.sdes``, ``scoresde.models``, ``scoresde.losses``, ``scoresde.sampling``, ...).

They are loaded on first use (PEP 562 module ``__getattr__``), for start-up time: ``import scoresde.cli`` runs this
file, and ``scoresde --help`` must not import torch (``tests/cli/test_startup.py``).
"""

import importlib
import importlib.metadata

__version__ = importlib.metadata.version("scoresde")  # the installed distribution's, from pyproject.toml

#: public name -> the module that defines it (a subpackage itself where the name is the module's)
_EXPORTS = {
    "DiffusionModel": "scoresde.models", "as_model": "scoresde.models", "bits_per_dim": "scoresde.likelihood",
    "colorize": "scoresde.inverse", "encode": "scoresde.sampling.latent",
    "export_diffusers": "scoresde.checkpoint.diffusers.export", "guidance": "scoresde.guidance",
    "inpaint": "scoresde.inverse", "interpolate": "scoresde.sampling.latent", "inverse": "scoresde.inverse",
    "load_checkpoint": "scoresde.checkpoint", "load_diffusers": "scoresde.checkpoint.diffusers.load",
    "load_score_sde_checkpoint": "scoresde.checkpoint", "log_likelihood": "scoresde.likelihood",
    "losses": "scoresde.losses", "metrics": "scoresde.metrics", "models": "scoresde.models",
    "sample": "scoresde.sampling", "sampling": "scoresde.sampling", "sdes": "scoresde.sdes",
    "solve_inverse": "scoresde.inverse",
}

__all__ = ["DiffusionModel", "__version__", "as_model", "bits_per_dim", "colorize", "encode", "export_diffusers",
           "guidance", "inpaint", "interpolate", "inverse", "load_checkpoint", "load_diffusers",
           "load_score_sde_checkpoint", "log_likelihood", "losses", "metrics", "models", "sample", "sampling", "sdes",
           "solve_inverse"]


def __getattr__(name: str):
    """``scoresde.<name>`` of :data:`__all__`, imported on first use (start-up time: torch loads only when needed)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scoresde' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__ == f"scoresde.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names with the lazily imported ones of :data:`__all__`."""
    return sorted({*globals(), *__all__})
