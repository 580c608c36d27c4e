"""Low-level numerics and helpers shared by the losses, the likelihood and the samplers: the divergence engine (exact
and Hutchinson, reverse or forward mode), the ODE integrators, the time grids, the time draw ``t ~ U(eps, T)`` and its
check, per-example seeding, the argument checkers and the name -> function registry.

Layering: this package sits directly above :mod:`scoresde.sdes` (the time grids and the time checks read an SDE's
``T``, ``eps`` and ``lambda_t``) and imports nothing else of the package.
"""

from .checks import check_choice, check_count, check_flag
from .divergence import AD_MODES, ALIASES, ESTIMATORS, check_ad, divergence, draw_probes, estimator_name, is_hutchinson
from .odeint import ODE_METHODS, integrate
from .seeding import example_generators, sample_seed
from .times import check_eps, check_times, draw_times

__all__ = ["AD_MODES", "ALIASES", "ESTIMATORS", "ODE_METHODS", "check_ad", "check_choice", "check_count", "check_eps",
           "check_flag", "check_times", "divergence", "draw_probes", "draw_times", "estimator_name",
           "example_generators", "integrate", "is_hutchinson", "sample_seed"]
