"""The two design choices of a denoising loss after Score SDE: where in time it looks and how much it weighs each
noise level (Karras et al. 2022, §5 and eq. 2; Kingma & Gao 2023 for the common view).

Every weighting here is a factor ``lambda`` on the data-prediction error ``|| x0_hat - x0 ||^2`` at the noise level
``s = sigma_t / alpha_t`` (``SNR = 1 / s^2``). The same loss in other spaces: ``|| eps_hat - eps ||^2 = SNR ||x0_hat -
x0||^2`` and ``sigma_t^2 || score_hat - score ||^2 = SNR || x0_hat - x0 ||^2``. :data:`WEIGHTINGS`:

* ``"edm"``: ``(s^2 + sigma_d^2) / (s sigma_d)^2 = 1 / c_out^2`` (Karras et al. 2022, §5 "Loss weighting"): the
  preconditioned network's target has unit weight at every ``s``;
* ``"snr"``: ``1 / s^2``, Score SDE's default ``lambda(t) = sigma_t^2`` on the score (Song et al. 2021, eq. 7) and
  DDPM's ``L_simple`` on the noise (Ho et al. 2020, eq. 14);
* ``"likelihood"``: ``g(t)^2 / (s sigma_t)^2``, i.e. ``g(t)^2`` on the score (Song et al. 2021b, Thm. 1): the
  integral bounds the negative log-likelihood;
* ``"min_snr"``: ``min(SNR, gamma)`` (min-SNR-gamma, Hang et al. 2023, eq. 9 for x0 prediction; ``gamma = 5``);
* ``"soft_min_snr"``: ``1 / (s^2 + sigma_d^2)``, the harmonic soft minimum of ``SNR`` and ``sigma_d^-2`` (Crowson's
  ``soft-min-snr`` of k-diffusion's ``Denoiser``, there written on the preconditioned target).

:data:`TIME_DISTRIBUTIONS` (draws from the ``generator``, one per example):

* ``"uniform"``: ``t ~ U(eps, T)`` (Score SDE; one ``rand`` draw: the numbers of :func:`~scoresde.losses.sde_loss`);
* ``"lognormal"``: ``ln s ~ N(P_mean, P_std^2)`` (EDM: ``P_mean = -1.2``, ``P_std = 1.2``; one ``randn`` draw), mapped
  to the time ``t = sde.t_from_lambda(-ln s)``; not truncated to ``[eps, T]`` (EDM does not truncate either);
* ``"logit_normal"``: ``t = eps + (T - eps) sigmoid(u)``, ``u ~ N(m, s^2)`` (Esser et al. 2024, §3.1; ``m = 0``,
  ``s = 1``; one ``randn`` draw).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..numerics.checks import check_choice
from ..numerics.times import check_eps, draw_times
from ..sdes.scalar import ScalarSDE

__all__ = ["DEFAULT_NORMALS", "OBJECTIVES", "TIME_DISTRIBUTIONS", "WEIGHTINGS", "check_recipe", "draw_loss_times",
           "loss_weight"]

WEIGHTINGS: tuple[str, ...] = ("edm", "snr", "likelihood", "min_snr", "soft_min_snr")
TIME_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "lognormal", "logit_normal")
#: default ``(mean, std)`` of the normal each non-uniform time distribution transforms
DEFAULT_NORMALS: dict[str, tuple[float, float]] = {"lognormal": (-1.2, 1.2), "logit_normal": (0.0, 1.0)}
#: training objectives of a run config (``training.objective``) -> their default time distribution (``dsm``: Score
#: SDE's losses, whose times are their own)
OBJECTIVES: dict[str, str | None] = {"dsm": None, "edm": "lognormal", "flow_matching": "uniform"}


def scalar_sde(sde: Any, what: str) -> ScalarSDE:
    """``sde`` if it has a scalar noise schedule (``sde.scalar_schedule``), else one ``ValueError`` naming ``what``."""
    if not getattr(sde, "scalar_schedule", False):
        raise ValueError(f"{what} needs an SDE with a scalar noise schedule x_t = alpha_t x_0 + sigma_t eps, got "
                         f"{type(sde).__name__} (phase-space SDEs train with sde_loss)")
    return sde


def loss_weight(weighting: str, sde: ScalarSDE, t: Tensor, *, sigma_data: float = 0.5,
                gamma: float = 5.0) -> Tensor:
    """The weight ``lambda(t)`` of ``|| x0_hat - x0 ||^2`` (shape ``(B,)``) for ``weighting`` (module docstring).

    Args:
        weighting: one of :data:`WEIGHTINGS`.
        sde: the scalar SDE (``alpha``, ``sigma``; ``sde.sde`` for ``g(t)`` with ``"likelihood"``).
        t: times, shape ``(B,)``.
        sigma_data: the data std ``sigma_d`` of ``"edm"`` and ``"soft_min_snr"`` (0.5: EDM's, images in ``[-1, 1]``).
        gamma: the cap of ``"min_snr"`` (5: Hang et al.'s recommendation).
    """
    check_choice("weighting", weighting, WEIGHTINGS)
    sigma = sde.sigma(t)
    s = sigma / sde.alpha(t)
    if weighting == "edm":
        return (s**2 + sigma_data**2) / (s * sigma_data) ** 2
    if weighting == "snr":
        return 1 / s**2
    if weighting == "likelihood":
        g = sde.sde(torch.zeros_like(t)[:, None], t)[1]
        return g**2 / (s * sigma) ** 2
    if weighting == "min_snr":
        return torch.clamp(1 / s**2, max=gamma)
    return 1 / (s**2 + sigma_data**2)  # soft_min_snr


def draw_loss_times(distribution: str, B: int, sde: ScalarSDE, *, eps: float = 1e-5, mean: float | None = None,
                    std: float | None = None, generator: torch.Generator | None = None,
                    dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
    """``B`` training times from ``distribution`` (:data:`TIME_DISTRIBUTIONS`, module docstring), one draw of the
    ``generator`` (torch's global stream when ``None``) per example.

    ``mean``/``std`` are those of the normal that ``"lognormal"`` (``ln s``) and ``"logit_normal"`` (``logit t``)
    transform (``None``: :data:`DEFAULT_NORMALS`); ``"uniform"`` refuses them. ``eps`` is the smallest time of
    ``"uniform"`` and ``"logit_normal"``. Use ``"lognormal"`` with EDM's preconditioning and loss,
    ``"logit_normal"`` for rectified flow.
    """
    check_choice("time_distribution", distribution, TIME_DISTRIBUTIONS)
    if distribution == "uniform":
        if mean is not None or std is not None:
            raise ValueError("time_distribution 'uniform' takes no mean/std (they belong to 'lognormal' and "
                             "'logit_normal')")
        return draw_times(B, sde, eps, generator, dtype=dtype, device=device)
    check_eps(eps, sde)
    m, sd = DEFAULT_NORMALS[distribution]
    m, sd = (m if mean is None else mean), (sd if std is None else std)
    if not (math.isfinite(m) and math.isfinite(sd) and sd > 0):
        raise ValueError(f"time_distribution {distribution!r} needs a finite mean and a std > 0, got {m!r}, {sd!r}")
    u = torch.randn(B, generator=generator, dtype=dtype, device=device) * sd + m
    if distribution == "lognormal":
        return sde.t_from_lambda(-u)  # ln s = u  <=>  lambda = log(alpha / sigma) = -u
    return eps + (sde.T - eps) * torch.sigmoid(u)


def check_recipe(objective: str, weighting: str | None, time_distribution: str | None, p_mean: float | None,
                 p_std: float | None, gamma: float, *, error: type[ValueError] = ValueError) -> None:
    """One ``error`` line for a training recipe whose options do not go together (``training.objective`` and its
    options in a run config): an unknown name, a weighting of an objective that has none, a time distribution of
    ``"dsm"`` (uniform, Score SDE's), ``p_mean``/``p_std`` without a distribution that reads them, ``p_std <= 0``,
    ``gamma <= 0`` or a ``gamma`` other than 5 without ``"min_snr"``."""
    check_choice("training.objective", objective, tuple(OBJECTIVES), error=error)
    if weighting is not None:
        check_choice("training.loss_weighting", weighting, WEIGHTINGS, error=error)
        if objective != "edm":
            raise error(f"training.loss_weighting={weighting!r} applies to training.objective='edm' only (dsm: "
                        f"training.likelihood_weighting; flow_matching weighs the velocity), got {objective!r}")
    if time_distribution is not None:
        check_choice("training.time_distribution", time_distribution, TIME_DISTRIBUTIONS, error=error)
        if objective == "dsm":
            raise error(f"training.time_distribution={time_distribution!r} applies to training.objective 'edm' and "
                        "'flow_matching'; 'dsm' draws t ~ U(eps, T) as Score SDE")
    distribution = time_distribution or OBJECTIVES[objective]
    for key, value in (("p_mean", p_mean), ("p_std", p_std)):
        if value is not None and distribution not in DEFAULT_NORMALS:
            raise error(f"training.{key}={value!r} is a parameter of the 'lognormal' and 'logit_normal' time "
                        f"distributions; this recipe draws {distribution or 'uniform'!r} times")
    if p_std is not None and not p_std > 0:
        raise error(f"training.p_std must be a finite number > 0, got {p_std!r}")
    if not gamma > 0:
        raise error(f"training.min_snr_gamma must be a finite number > 0, got {gamma!r}")
    if gamma != 5.0 and (weighting or "edm") != "min_snr":
        raise error(f"training.min_snr_gamma={gamma!r} applies to training.loss_weighting='min_snr' only")
