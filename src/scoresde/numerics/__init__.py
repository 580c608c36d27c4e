"""Low-level numerics shared by the losses, the likelihood and the samplers: the divergence engine (exact and
Hutchinson, reverse or forward mode), the adaptive ODE integrator, the time draw ``t ~ U(eps, T)`` and its check,
per-example seeding. Nothing here imports the rest of the package."""

from .checks import check_choice, check_count, check_flag
from .divergence import AD_MODES, ALIASES, ESTIMATORS, check_ad, divergence, draw_probes, estimator_name, is_hutchinson
from .odeint import ODE_METHODS, integrate
from .seeding import example_generators, sample_seed
from .times import check_eps, check_times, draw_times

__all__ = ["AD_MODES", "ALIASES", "ESTIMATORS", "ODE_METHODS", "check_ad", "check_choice", "check_count", "check_eps", "check_flag",
           "check_times", "divergence", "draw_probes", "draw_times", "estimator_name", "example_generators",
           "integrate", "is_hutchinson", "sample_seed"]
