"""Training losses: denoising score matching in continuous time (scalar SDEs and, as HSM/DSM, phase space), the
discrete SMLD / DDPM losses, FP-Diffusion's score Fokker–Planck regulariser and metric, and the recipes after Score
SDE: EDM's weighted denoising loss (:func:`edm_loss`, weightings and time distributions in :mod:`.weighting`) and the
flow-matching velocity loss (:func:`flow_matching_loss`).

Each loss is a short function of the SDE interface (``initial_state``, ``marginal_prob``, ``apply_std``, ``sde``,
discrete tables) and the model adapter, numerically identical to the Score SDE reference ``losses.py`` for the same
random draws. One function serves every SDE: :func:`sde_loss` and :func:`fp_loss` read HSM/DSM and the phase-space
kernel from the SDE.
"""

from .dsm import ddpm_loss, sde_loss, smld_loss
from .edm import edm_loss
from .eps_to_score import score_from_eps
from .flow import flow_matching_loss
from .fp import fp_loss
from .fp_core import fp_regularizer
from .fpe import fpe_residual

__all__ = ["ddpm_loss", "edm_loss", "flow_matching_loss", "fp_loss", "fp_regularizer", "fpe_residual", "score_from_eps",
           "sde_loss", "smld_loss"]
