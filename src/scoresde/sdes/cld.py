"""Critically-damped Langevin diffusion (CLD; Dockhorn et al. 2022, "Score-Based Generative Modeling with
Critically-Damped Langevin Diffusion", §3): the position-momentum recipe SDE with noise in the momentum only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .recipe import RecipeSDE, langevin_recipe


class CLD(RecipeSDE):
    """Critically-damped Langevin diffusion (Dockhorn et al. 2022, §3, eq. 5):

        ``dx = M^-1 v beta dt``,  ``dv = (-x - Gamma M^-1 v) beta dt + sqrt(2 Gamma beta) dW``,

    i.e. the recipe with ``D = diag(0, Gamma)``, ``Q = [[0, -1], [1, 0]]``, ``S = diag(1, M)``; ``beta(t)`` linear.

    Args:
        m_inv: inverse mass ``M^-1`` (4 in CLD).
        beta_min, beta_max: ``beta(0)``, ``beta(1)`` (CLD: ``beta0 = 4``, ``beta1 = 0`` i.e. constant 4).
        kappa: initial velocity variance ratio: ``v_0 ~ N(0, kappa M I)`` (CLD's ``gamma = 0.04``; named as PSLD's
            ``kappa``, the same quantity, so that ``gamma`` means position damping on both classes).
        friction: ``Gamma``; ``None`` gives critical damping ``Gamma = 2 sqrt(M)``.
        decomp_mode, score_matching, N, T: see :class:`RecipeSDE`.

    Attributes: ``kappa``, ``friction``, ``m_inv``; ``gamma = 0`` is the position damping (PSLD's ``Gamma``), which CLD
    does not have.
    """

    config_name = "cld"
    config_keys = ("beta_min", "beta_max")
    config_options = ("m_inv", "kappa", "friction", "decomp_mode", "score_matching")
    phase_space = True

    def __init__(
        self,
        m_inv: float = 4.0,
        beta_min: float = 4.0,
        beta_max: float = 4.0,
        kappa: float = 0.04,
        friction: float | None = None,
        decomp_mode: str = "lower",
        score_matching: str = "hsm",
        N: int = 1000,
        T: float = 1.0,
    ) -> None:
        if not (math.isfinite(m_inv) and m_inv > 0):
            raise ValueError(f"m_inv must be a positive finite number, got {m_inv!r}")
        if not (math.isfinite(kappa) and kappa >= 0):
            raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}")
        M = 1.0 / m_inv
        friction = 2.0 * math.sqrt(M) if friction is None else float(friction)
        if not (math.isfinite(friction) and friction > 0):
            raise ValueError(f"friction must be a positive finite number, got {friction!r}")
        self.m_inv, self.kappa, self.friction, self.gamma = float(m_inv), float(kappa), friction, 0.0
        super().__init__(**langevin_recipe(0.0, friction, 1.0, M, kappa), beta_min=beta_min, beta_max=beta_max,
                         score_matching=score_matching, decomp_mode=decomp_mode, N=N, T=T)

    @classmethod
    def from_model_config(cls, model: Mapping[str, Any]) -> CLD:
        """:meth:`SDE.from_model_config`; a ``model.gamma`` (PSLD's position damping, which CLD does not have; CLD's
        initial velocity variance ratio is ``model.kappa``) is refused rather than ignored."""
        if "gamma" in model:
            raise ValueError(f"model.gamma = {model['gamma']!r} has no meaning for CLD (no position damping); its "
                             "initial velocity variance ratio is model.kappa")
        return super().from_model_config(model)  # type: ignore[return-value]

    @property
    def M(self) -> float:
        """Mass ``M = 1 / m_inv``."""
        return 1.0 / self.m_inv
