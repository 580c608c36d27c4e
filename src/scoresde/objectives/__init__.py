"""Training objectives: denoising score matching in continuous time (scalar SDEs and, as HSM/DSM, phase space), the
discrete SMLD / DDPM losses, and FP-Diffusion's score Fokker–Planck regulariser and metric.

Each loss is a short function of the SDE interface (``initial_state``, ``marginal_prob``, ``apply_std``, ``sde``,
discrete tables) and the model adapter, numerically identical to the Score SDE reference ``losses.py`` for the same
random draws. ``phase_space_loss`` and ``phase_space_fp_loss`` are deprecated aliases of ``sde_loss`` and ``fp_loss``.
"""

from .dsm import ddpm_loss, sde_loss, smld_loss
from .fp import fp_loss, phase_space_fp_loss
from .fp_core import fp_regularizer
from .fpe import fpe_residual
from .phase_space import phase_space_loss, score_from_eps

__all__ = ["ddpm_loss", "phase_space_loss", "score_from_eps", "sde_loss", "smld_loss"]
__all__ += ["fp_loss", "fp_regularizer", "fpe_residual", "phase_space_fp_loss"]
