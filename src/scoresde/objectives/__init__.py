"""Training objectives: denoising score matching in continuous time and the discrete SMLD / DDPM losses.

Each loss is a short function of the SDE interface (``marginal_prob``, ``sde``, discrete tables) and the model,
numerically identical to the Score SDE reference ``losses.py`` for the same random draws.
"""

from .dsm import ddpm_loss, sde_loss, smld_loss
from .fp import fp_loss, fp_regularizer, fpe_residual, phase_space_fp_loss
from .phase_space import phase_space_loss, score_from_eps

__all__ = ["ddpm_loss", "phase_space_loss", "score_from_eps", "sde_loss", "smld_loss"]
__all__ += ["fp_loss", "fp_regularizer", "fpe_residual", "phase_space_fp_loss"]
