"""From a validated :class:`~scoresde.training.config.Config` to the objects of a run: score model and loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..checkpoint.build import build_score_model
from ..models import ScoreModel
from ..objectives import ddpm_loss, phase_space_loss, sde_loss, smld_loss
from ..objectives.fp import fp_loss, phase_space_fp_loss
from ..sdes import VESDE, VPSDE, ScalarSDE
from ..sdes.phase_space import RecipeSDE
from .config import Config, SamplingConfig


def build_model(cfg: Config) -> ScoreModel:
    """A randomly initialised :class:`ScoreModel` (network + SDE with the original conventions) for ``cfg``."""
    return build_score_model(cfg.to_dict()).train()


def build_optimizer(cfg: Config, params) -> torch.optim.Adam:
    """Adam with the original ``optim`` fields (lr, beta1 with beta2=0.999, eps, weight_decay, amsgrad); the
    warm-up and clipping are applied per step by the trainer."""
    o = cfg.optim
    return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, 0.999), eps=o.eps, weight_decay=o.weight_decay,
                            amsgrad=o.amsgrad)


def check_objective(cfg: Config, model: ScoreModel) -> None:
    """Refuse objective settings the original does not define (discrete sub-VP, discrete likelihood weighting)."""
    t = cfg.training
    if (t.fp_alpha or t.fp_beta) and not (t.continuous and isinstance(model.sde, (ScalarSDE, RecipeSDE))):
        raise ValueError("the FP-Diffusion regulariser (training.fp_alpha, training.fp_beta) needs "
                         "training.continuous=true and a continuous-time SDE (vesde, vpsde, subvpsde, psld, cld)")
    if t.fp_min_time and not isinstance(model.sde, RecipeSDE):
        raise ValueError(f"training.fp_min_time={t.fp_min_time} applies to phase-space SDEs (psld, cld) only; "
                         f"the scalar-SDE regulariser covers every t as the original (set it to 0)")
    if isinstance(model.sde, RecipeSDE):
        if not t.continuous or t.likelihood_weighting:
            raise ValueError(f"training.sde {t.sde} trains with HSM/DSM in continuous time: set "
                             "training.continuous=true and training.likelihood_weighting=false")
        return
    if t.continuous:
        return
    if t.likelihood_weighting:
        raise ValueError("training.likelihood_weighting needs training.continuous=true (as in the original)")
    if not isinstance(model.sde, (VESDE, VPSDE)) or type(model.sde).__name__ == "SubVPSDE":
        raise ValueError(f"discrete training (training.continuous=false) is defined for vesde and vpsde, "
                         f"not {t.sde}")


def compute_loss(cfg: Config, model: ScoreModel, x: Tensor, **draws: Any) -> Tensor:
    """The training loss of the original ``get_step_fn`` on a preprocessed batch ``x``: continuous DSM, or the
    SMLD (VE) / DDPM (VP) loss when ``training.continuous`` is false. ``draws`` are the loss's random inputs
    (``t``/``labels`` and ``noise``) or a ``generator``."""
    t = cfg.training
    if isinstance(model.sde, RecipeSDE):  # phase space: HSM/DSM in epsilon form (Dockhorn et al. 2022, §3.2)
        if t.fp_alpha or t.fp_beta:  # + the phase-space score Fokker-Planck regulariser (FP-Diffusion)
            return phase_space_fp_loss(model, model.sde, x, alpha=t.fp_alpha, beta=t.fp_beta, mode=t.fp_mode,
                                       weighting=t.fp_weighting, m=t.fp_m, blocks=model.blocks,
                                       reduce_mean=t.reduce_mean, eps=t.eps, min_time=t.fp_min_time, **draws)
        return phase_space_loss(model, model.sde, x, blocks=model.blocks, reduce_mean=t.reduce_mean, eps=t.eps,
                                **draws)
    if t.continuous and (t.fp_alpha or t.fp_beta):  # FP-Diffusion: DSM + score Fokker-Planck regulariser
        return fp_loss(model, model.sde, x, alpha=t.fp_alpha, beta=t.fp_beta, mode=t.fp_mode, weighting=t.fp_weighting,
                       m=t.fp_m, reduce_mean=t.reduce_mean, likelihood_weighting=t.likelihood_weighting, eps=t.eps,
                       **draws)
    if t.continuous:
        return sde_loss(model, model.sde, x, reduce_mean=t.reduce_mean, likelihood_weighting=t.likelihood_weighting,
                        eps=t.eps, **draws)
    fn = smld_loss if isinstance(model.sde, VESDE) else ddpm_loss
    return fn(model, model.sde, x, reduce_mean=t.reduce_mean, **draws)


def sampler_options(s: SamplingConfig) -> tuple[str, dict[str, Any]]:
    """``(sampler name, options)`` for :func:`scoresde.sample` from the ``sampling`` section."""
    if s.method == "pc":
        return "pc", {"predictor": s.predictor, "corrector": s.corrector, "snr": s.snr,
                      "n_steps_each": s.n_steps_each, "probability_flow": s.probability_flow, "eps": s.eps,
                      "denoise": s.noise_removal, "grid": s.grid}
    if s.method == "sscs":
        return "sscs", {"grid": s.grid, "eps": s.eps, "denoise": s.noise_removal}
    return "ode", {"rtol": s.rtol, "atol": s.atol, "method": s.ode_method, "eps": s.eps, "denoise": s.noise_removal}
