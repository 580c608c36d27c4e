"""A noise-predicting network on the phase space (data and momentum) as the model adapter of a PSLD/CLD SDE."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..sdes.linalg import apply_blocks, state_blocks
from ..sdes.recipe import RecipeSDE
from .adapter import DiffusionModel

#: what a phase-space network predicts: the noise of every block, or of the momentum block only
BLOCKS = ("all", "momentum")

#: keys of the ``model`` config section read by :class:`PhaseSpaceScoreModel` (not network options), and the
#: value a config without the key gets
MODEL_DEFAULTS = {"blocks": "all", "mixed_score": False, "mixed_data_var": None}
MODEL_KEYS = tuple(MODEL_DEFAULTS)


def reference_cov(sde: RecipeSDE, t: Tensor, data_var: float) -> Tensor:
    """``Sigma_ref(t) = Phi(t) diag(data_var, Sigma_0[1:, 1:]) Phi(t)^T + noise_cov(t)``, shape ``(B, k, k)``: the
    covariance of ``z_t`` per coordinate when the data are ``N(0, data_var)`` and the momentum starts from the
    SDE's initial law (the same for HSM and DSM: both have this marginal)."""
    init = sde.initial_cov.clone()
    init[0, :] = 0.0
    init[:, 0] = 0.0
    init[0, 0] = float(data_var)
    return sde.kernel_cov(t, initial_cov=init)


def reference_score(sde: RecipeSDE, z: Tensor, t: Tensor, blocks: str, data_var: float) -> Tensor:
    """The Gaussian part of the mixed score (Dockhorn et al. 2022, §3.2 "mixed score", after Vahdat et al. 2021).

    ``blocks="momentum"`` (CLD's parameterisation): ``-m / Sigma_ref^{mm}(t)`` in the momentum block, zero
    elsewhere; with ``data_var=0`` this is CLD's code (the momentum marginal of the kernel from a point mass).
    ``blocks="all"``: the full score ``-Sigma_ref(t)^-1 z`` of ``N(0, Sigma_ref)`` (needs ``data_var > 0``).
    """
    cov = reference_cov(sde, t, data_var)
    if blocks == "momentum":
        zb = state_blocks(z, sde.k)
        scale = (-1.0 / cov[:, -1, -1]).to(z.dtype).reshape(-1, *([1] * (zb.dim() - 2)))
        out = torch.zeros_like(zb)
        out[:, -1] = scale * zb[:, -1]
        return out.reshape(z.shape)
    return -apply_blocks(torch.linalg.inv(cov).to(z.dtype), z)


class PhaseSpaceScoreModel(nn.Module, DiffusionModel):
    """``score(z, t) = -L_t^-T eps_theta(z, t)`` for a phase-space SDE (Dockhorn et al. 2022, §3.2; Pandey & Mandt
    2023, §3), with ``L_t`` the kernel factor of the SDE's own training mode (HSM or DSM).

    As in PSLD's code the network is fed the raw time ``t`` (no rescaling, no division by a noise level).

    Args:
        net: ``net(z, t)`` with ``z`` the full state (data and momentum on dim 1), predicting the noise of every
            block (``blocks="all"``) or of the momentum block only (``blocks="momentum"``: CLD / PSLD with
            ``Gamma = 0``, lower factor).
        sde: the phase-space SDE.
        blocks: ``"all"`` or ``"momentum"``.
        mixed_score: CLD's mixed score: ``score = reference_score(z, t) - L_t^-T eps_theta``, the network learning
            only the residual from the score the state would have for Gaussian data (:func:`reference_score`).
        mixed_data_var: the data variance of that reference; default ``0`` for ``blocks="momentum"`` (CLD's
            choice) and ``1`` for ``blocks="all"`` (``N(0, I)`` data, as LSGM; must be positive there).
    """

    def __init__(self, net: nn.Module, sde: RecipeSDE, *, blocks: str = "all", mixed_score: bool = False,
                 mixed_data_var: float | None = None) -> None:
        super().__init__()
        if blocks not in BLOCKS:
            raise ValueError(f"unknown blocks {blocks!r}; valid values are: {', '.join(BLOCKS)}")
        if mixed_data_var is None:
            mixed_data_var = 0.0 if blocks == "momentum" else 1.0
        if not mixed_data_var >= 0 or (blocks == "all" and mixed_score and mixed_data_var <= 0):
            raise ValueError(f"mixed_data_var must be >= 0 (> 0 with blocks='all'), got {mixed_data_var!r}")
        self.net, self.sde, self.blocks = net, sde, blocks
        self.mixed_score, self.mixed_data_var = bool(mixed_score), float(mixed_data_var)
        self.continuous = True

    def with_net(self, net: nn.Module) -> PhaseSpaceScoreModel:
        """The same SDE and parameterisation around another network (e.g. the DDP-wrapped training copy)."""
        return PhaseSpaceScoreModel(net, self.sde, blocks=self.blocks, mixed_score=self.mixed_score,
                                    mixed_data_var=self.mixed_data_var)

    def extra_repr(self) -> str:
        return f"blocks={self.blocks!r}, mixed_score={self.mixed_score}, mixed_data_var={self.mixed_data_var}"

    prediction = "eps"

    def labels(self, t: Tensor) -> Tensor:
        """The network's time input: ``t`` itself."""
        return t

    def net_output(self, z: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """The raw network output: the noise prediction of every block, of the momentum block only
        (``blocks="momentum"``), or of the residual from the reference score (``mixed_score``)."""
        return self.net(z, self.labels(t), **cond)

    def eps(self, z: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Noise of the whole state, ``-L_t^T score``: the network output itself for a plain all-block model."""
        if self.blocks == "all" and not self.mixed_score:
            return self.net_output(z, t, **cond).to(z.dtype)
        return self.sde.score_to_eps(z, t, self.score(z, t, **cond))

    def score(self, z: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Score of the full state, ``-L_t^-T eps`` (``sde.eps_to_score``; with ``blocks="momentum"`` the momentum
        score ``-eps / L[-1, -1]`` and zero elsewhere), plus :func:`reference_score` with ``mixed_score``."""
        eps = self.net_output(z, t, **cond)
        if self.blocks == "all":
            score = self.sde.eps_to_score(z, t, eps).to(z.dtype)
        else:
            score = momentum_score(self.sde, eps, t).to(z.dtype)
        if self.mixed_score:
            score = score + reference_score(self.sde, z, t, self.blocks, self.mixed_data_var)
        return score

    def x0(self, z: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Tweedie's estimate of the whole initial state ``z_0`` (``sde.denoise``)."""
        return self.sde.denoise(z, t, self.score(z, t, **cond))

    def forward(self, z: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """``score(z, t, **cond)``."""
        return self.score(z, t, **cond)


def momentum_score(sde: RecipeSDE, eps_pred: Tensor, t: Tensor) -> Tensor:
    """The score of a momentum-only noise prediction ``eps`` (``(B, C, ...)``) with the lower kernel factor: ``-eps /
    L[-1, -1]`` in the momentum block and zero in the others, which the reverse SDE never reads when those blocks have
    no diffusion (CLD, PSLD with ``Gamma = 0``)."""
    if sde.decomp_mode != "lower":
        raise ValueError("a momentum-only epsilon needs decomp_mode='lower' (only then L^-T eps is block-local)")
    L = sde.kernel_factor(t).to(eps_pred)
    scale = (-1.0 / L[:, -1, -1]).reshape(-1, *([1] * (eps_pred.dim() - 1)))
    return torch.cat([torch.zeros_like(eps_pred)] * (sde.k - 1) + [scale * eps_pred], dim=1)
