"""Public name space of the training losses (``scoresde.losses.sde_loss`` etc.); see :mod:`scoresde.objectives`."""

from .objectives import (
    ddpm_loss,
    fp_loss,
    fp_regularizer,
    fpe_residual,
    phase_space_fp_loss,
    phase_space_loss,
    score_from_eps,
    sde_loss,
    smld_loss,
)

__all__ = ["ddpm_loss", "phase_space_loss", "score_from_eps", "sde_loss", "smld_loss"]
__all__ += ["fp_loss", "fp_regularizer", "fpe_residual", "phase_space_fp_loss"]
