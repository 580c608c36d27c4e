"""Phase-space Langevin diffusion (PSLD; Pandey & Mandt 2023, "A Complete Recipe for Diffusion Generative Models",
§3.2): the position-momentum recipe SDE with damping in both blocks."""

from __future__ import annotations

import math

from .recipe import RecipeSDE, langevin_recipe


class PSLD(RecipeSDE):
    """Phase-space Langevin diffusion (Pandey & Mandt 2023, §3.2):

        ``dx = beta/2 (M^-1 m - Gamma x) dt + sqrt(beta Gamma) dW_x``,
        ``dm = beta/2 (-x - nu m) dt + sqrt(M nu beta) dW_m``,

    i.e. the recipe with ``D = 1/2 diag(Gamma, M nu)``, ``Q = 1/2 [[0, -1], [1, 0]]``, ``S = diag(1, M)`` and critical
    damping ``M^-1 = (Gamma - nu)^2 / 4``. ``Gamma = 0`` is CLD with ``beta_CLD = beta / 2`` and ``M^-1 = nu^2 / 4``.

    Args:
        beta_min, beta_max: ``beta(0)``, ``beta(1)`` (8 and 8 in PSLD's CIFAR-10 setup).
        nu: momentum damping (4.01 in PSLD).
        gamma: position damping ``Gamma`` (0.01 in PSLD), ``>= 0``.
        kappa: initial momentum variance ratio: ``m_0 ~ N(0, kappa M I)`` (0.04 in PSLD).
        decomp_mode, score_matching, N, T: see :class:`RecipeSDE`.
    """

    config_name = "psld"
    config_keys = ("beta_min", "beta_max")
    config_options = ("nu", "gamma", "kappa", "decomp_mode", "score_matching")
    phase_space = True

    def __init__(
        self,
        beta_min: float = 8.0,
        beta_max: float = 8.0,
        nu: float = 4.01,
        gamma: float = 0.01,
        kappa: float = 0.04,
        decomp_mode: str = "lower",
        score_matching: str = "hsm",
        N: int = 1000,
        T: float = 1.0,
    ) -> None:
        if not (math.isfinite(gamma) and gamma >= 0 and math.isfinite(nu) and nu >= 0 and gamma != nu):
            raise ValueError(f"PSLD needs finite gamma >= 0, nu >= 0 and gamma != nu, got gamma={gamma}, nu={nu}")
        if not (math.isfinite(kappa) and kappa >= 0):
            raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}")
        self.nu, self.gamma, self.kappa = float(nu), float(gamma), float(kappa)
        self.m_inv = (gamma - nu) ** 2 / 4.0
        M = 1.0 / self.m_inv
        super().__init__(**langevin_recipe(gamma / 2.0, M * nu / 2.0, 0.5, M, kappa), beta_min=beta_min,
                         beta_max=beta_max, score_matching=score_matching, decomp_mode=decomp_mode, N=N, T=T)

    @property
    def M(self) -> float:
        """Mass ``M = 4 / (Gamma - nu)^2``."""
        return 1.0 / self.m_inv
