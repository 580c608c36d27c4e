"""From a validated :class:`~scoresde.training.config.Config` to the objects of a run: score model, loss and the
loss's times."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..config import Config, build_score_model
from ..losses import ddpm_loss, edm_loss, flow_matching_loss, fp_loss, sde_loss, smld_loss
from ..losses.weighting import OBJECTIVES, draw_loss_times
from ..models import DiffusionModel, ScoreModel
from ..numerics.times import draw_times
from ..sdes import VESDE, VPSDE, DiscreteVPSDE


def build_model(cfg: Config) -> ScoreModel:
    """A randomly initialised :class:`ScoreModel` (network + SDE with the original conventions) for ``cfg``."""
    return build_score_model(cfg.to_dict()).train()


def build_optimizer(cfg: Config, params) -> torch.optim.Adam:
    """Adam with the original ``optim`` fields (lr, beta1 with beta2=0.999, eps, weight_decay, amsgrad); the
    warm-up and clipping are applied per step by the trainer.

    The update is the same Adam (Kingma & Ba 2015) as the original's per-parameter loop, run as multi-tensor
    kernels: ``fused=True`` when every parameter lives on a CUDA device (one kernel for all parameters),
    ``foreach=True`` otherwise (CPU). Results equal the for-loop implementation to float rounding.
    """
    o = cfg.optim
    params = list(params)
    fast = {"fused": True} if params and all(p.device.type == "cuda" for p in params) else {"foreach": True}
    return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, 0.999), eps=o.eps, weight_decay=o.weight_decay,
                            amsgrad=o.amsgrad, **fast)


def check_objective(cfg: Config, model: DiffusionModel) -> None:
    """Refuse objective settings the original does not define (discrete sub-VP, discrete likelihood weighting), and
    phase-space settings that do not apply (the SDE says whether its state has auxiliary variables)."""
    t = cfg.training
    phase_space = model.sde.has_auxiliary
    _check_recipe_objective(cfg, model)
    if (t.fp_alpha or t.fp_beta) and not t.continuous:
        raise ValueError("the FP-Diffusion regulariser (training.fp_alpha, training.fp_beta) needs "
                         "training.continuous=true and a continuous-time SDE (vesde, vpsde, subvpsde, psld, cld)")
    if t.fp_min_time and not phase_space:
        raise ValueError(f"training.fp_min_time={t.fp_min_time} applies to phase-space SDEs (psld, cld) only; "
                         f"the scalar-SDE regulariser covers every t as the original (set it to 0)")
    if phase_space:
        if not t.continuous or t.likelihood_weighting:
            raise ValueError(f"training.sde {t.sde} trains with HSM/DSM in continuous time: set "
                             "training.continuous=true and training.likelihood_weighting=false")
        return
    if t.continuous:
        return
    if t.likelihood_weighting:
        raise ValueError("training.likelihood_weighting needs training.continuous=true (as in the original)")
    if type(model.sde) not in DISCRETE_LOSSES:
        raise ValueError("discrete training (training.continuous=false) is defined for vesde, vpsde and "
                         f"discrete_vpsde, not {t.sde}")


def _check_recipe_objective(cfg: Config, model: DiffusionModel) -> None:
    """``training.objective`` 'edm' / 'flow_matching' need a continuous scalar-SDE run without Score SDE's options;
    ``model.sigma_data`` must be read by the preconditioning or the loss weighting."""
    t = cfg.training
    reads_sigma_data = _preconditioned(model) or (
        t.objective == "edm" and (t.loss_weighting or "edm") in ("edm", "soft_min_snr"))
    if cfg.model.get("sigma_data") is not None and not reads_sigma_data:
        raise ValueError("model.sigma_data is read by model.preconditioning='edm' and by training.loss_weighting 'edm' "
                         "/ 'soft_min_snr' of training.objective='edm'; this run has none of them")
    if t.objective == "dsm":
        return
    if model.sde.has_auxiliary or not t.continuous or t.likelihood_weighting or t.fp_alpha or t.fp_beta:
        raise ValueError(f"training.objective={t.objective!r} needs a scalar SDE, training.continuous=true, "
                         "training.likelihood_weighting=false (use training.loss_weighting='likelihood') and no "
                         "FP-Diffusion regulariser (training.fp_alpha = fp_beta = 0)")


def _preconditioned(model: DiffusionModel) -> bool:
    """Whether ``model`` wraps its network with a preconditioning (``ScoreModel(..., preconditioning=...)``)."""
    return getattr(model, "precond", None) is not None


def training_times(cfg: Config, sde: Any, B: int, generator: torch.Generator | None) -> Tensor:
    """The times of one continuous-time training batch of ``B`` examples, one draw per example from ``generator``:
    ``t ~ U(eps, T)`` for ``training.objective='dsm'`` (Score SDE's draw), else the recipe's time distribution
    (``training.time_distribution``, ``p_mean``, ``p_std``: :func:`~scoresde.losses.weighting.draw_loss_times`)."""
    t = cfg.training
    if t.objective == "dsm":
        return draw_times(B, sde, t.eps, generator)
    return draw_loss_times(t.time_distribution or OBJECTIVES[t.objective], B, sde, eps=t.eps, mean=t.p_mean,
                           std=t.p_std, generator=generator)


#: the discrete-time losses of the original, by SDE class (exact class: sub-VP has none)
DISCRETE_LOSSES = {VESDE: smld_loss, VPSDE: ddpm_loss, DiscreteVPSDE: ddpm_loss}


def _sigma_data(cfg: Config, model: DiffusionModel) -> float:
    """``sigma_d`` of the loss weighting: the model's EDM preconditioning's, else ``model.sigma_data``, else 0.5."""
    own = getattr(getattr(model, "precond", None), "sigma_data", None)
    return float(own if own is not None else cfg.model.get("sigma_data") or 0.5)


def compute_loss(cfg: Config, model: DiffusionModel, x: Tensor, cond: dict[str, Any] | None = None,
                 **draws: Any) -> Tensor:
    """The training loss of the original ``get_step_fn`` on a preprocessed batch ``x``: continuous DSM (HSM/DSM on
    phase-space SDEs), with the FP-Diffusion regulariser when ``training.fp_alpha``/``fp_beta`` are set, or the
    SMLD (VE) / DDPM (VP) loss when ``training.continuous`` is false; with ``training.objective`` 'edm' or
    'flow_matching' :func:`~scoresde.losses.edm_loss` / :func:`~scoresde.losses.flow_matching_loss` with the run's
    recipe options. ``cond`` (batch-first tensors) goes to the model; ``draws`` are the loss's random inputs
    (``t``/``labels``, ``momentum``, ``noise``, ``probes``) or a ``generator``."""
    t = cfg.training
    if t.objective != "dsm":
        recipe = {"time_distribution": t.time_distribution or OBJECTIVES[t.objective], "p_mean": t.p_mean,
                  "p_std": t.p_std, "eps": t.eps, "reduce_mean": t.reduce_mean, "cond": cond}
        if t.objective == "flow_matching":
            return flow_matching_loss(model, model.sde, x, **recipe, **draws)
        return edm_loss(model, model.sde, x, weighting=t.loss_weighting or "edm", gamma=t.min_snr_gamma,
                        sigma_data=_sigma_data(cfg, model), **recipe, **draws)
    if t.continuous and (t.fp_alpha or t.fp_beta):  # FP-Diffusion: DSM + score Fokker-Planck regulariser
        extra = {"min_time": t.fp_min_time} if model.sde.has_auxiliary else {
            "likelihood_weighting": t.likelihood_weighting}
        return fp_loss(model, model.sde, x, alpha=t.fp_alpha, beta=t.fp_beta, mode=t.fp_mode, weighting=t.fp_weighting,
                       m=t.fp_m, reduce_mean=t.reduce_mean, eps=t.eps, cond=cond, **extra, **draws)
    if t.continuous:
        return sde_loss(model, model.sde, x, reduce_mean=t.reduce_mean, likelihood_weighting=t.likelihood_weighting,
                        eps=t.eps, cond=cond, **draws)
    return DISCRETE_LOSSES[type(model.sde)](model, model.sde, x, reduce_mean=t.reduce_mean, cond=cond, **draws)
