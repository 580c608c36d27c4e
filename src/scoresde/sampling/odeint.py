"""Moved to :mod:`scoresde.numerics.odeint` (the integrator serves the likelihood too, which sits below sampling);
this module re-exports it so that ``scoresde.sampling.odeint.integrate`` keeps working."""

from ..numerics.odeint import ODE_METHODS, SCIPY_METHODS, TORCHDIFFEQ_METHODS, integrate

__all__ = ["ODE_METHODS", "SCIPY_METHODS", "TORCHDIFFEQ_METHODS", "integrate"]
