"""Any scalar noise schedule ``x_t = alpha(t) x_0 + sigma(t) eps`` as an SDE (:class:`ScheduleSDE`).

A Gaussian kernel with scalar coefficients ``alpha(t)``, ``sigma(t)`` is the marginal law of exactly one linear SDE
``dx = f(t) x dt + g(t) dW`` (Kingma et al. 2021, "Variational Diffusion Models", App. A; Lu et al. 2022, DPM-Solver
eq. 2.2; Karras et al. 2022, EDM eq. 4 and App. B.2):

* ``f(t) = d log alpha / dt``,
* ``g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2 = -2 sigma(t)^2 d lambda / dt`` with the half log-SNR
  ``lambda(t) = log(alpha(t) / sigma(t))``,

so ``g^2 >= 0`` exactly when ``lambda`` decreases. Everything the samplers, the likelihood, guidance, inpainting and
the losses ask of a scalar SDE (the schedule queries of :class:`~scoresde.sdes.scalar.ScalarSDE`, ``sde``,
``marginal_prob``, the prior, Tweedie, the exact ancestral step, DDIM) follows from the two functions. The named
schedules (``EDM``, ``CosineVP``, ``RectifiedFlow``: ``sdes/edm.py``, ``sdes/cosine.py``, ``sdes/rectified_flow.py``)
subclass it with their closed forms; VE, VP and sub-VP keep their own classes (their numbers follow the reference
code op for op).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .base import batch_broadcast
from .scalar import ScalarSDE

__all__ = ["ScheduleSDE"]

ScheduleFn = Callable[[Tensor], Tensor]
"""``fn(t) -> tensor``: a schedule coefficient evaluated elementwise, written with differentiable torch operations."""

F64 = torch.float64


def _check_finite(name: str, value: float, *, low: float | None = None, high: float | None = None,
                  allowed: str = "") -> float:
    """``value`` as a float if it is a finite real number in ``(low, high)``, else one ``ValueError`` line."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or value > low) and (high is None or value < high)
    if not ok:
        raise ValueError(f"{name} must be {allowed or 'a finite number'}, got {value!r}")
    return float(value)


class ScheduleSDE(ScalarSDE):
    """The linear SDE of a scalar noise schedule ``x_t = alpha(t) x_0 + sigma(t) eps`` given by ``alpha`` and
    ``sigma`` alone (drift ``f = d log alpha / dt``, diffusion ``g^2 = d sigma^2 / dt - 2 f sigma^2``; module
    docstring).

    Use it for a schedule that has no class of its own (to try a schedule from a paper, or to reproduce a network
    trained on one); the named schedules :class:`~scoresde.sdes.EDM`, :class:`~scoresde.sdes.CosineVP` and
    :class:`~scoresde.sdes.RectifiedFlow` are subclasses with closed forms, and VE/VP/sub-VP are
    :class:`~scoresde.sdes.VESDE`/:class:`~scoresde.sdes.VPSDE`/:class:`~scoresde.sdes.SubVPSDE` (which keep the
    reference code's numerics; ``ScheduleSDE(alpha=vp_alpha, sigma=vp_sigma)`` gives the same SDE to rounding).

    What is computed how, in the generic class (a subclass overrides any of it with a closed form):

    * ``log_alpha(t) = log(alpha(t))``, ``sigma(t)`` from the functions; ``lambda_t = log_alpha - log sigma``.
    * ``f(t)`` and ``d sigma^2 / dt`` by automatic differentiation of ``log alpha`` and ``sigma^2`` in float64 (exact
      to rounding; the functions must be written with differentiable torch operations): :meth:`dlog_alpha_dt`,
      :meth:`dsigma2_dt`.
    * ``t_from_lambda`` by bisection on ``[0, T]`` in float64 down to the time tolerance ``inverse_tol``.

    Args:
        alpha: ``alpha(t)``, positive on ``[0, T]`` (``None`` only in subclasses that override :meth:`log_alpha`).
        sigma: ``sigma(t)``, positive on ``(0, T]`` (``None`` only in subclasses that override :meth:`sigma`).
        T: end time; ``alpha(T) > 0`` is needed (``lambda(T)`` must be finite for the samplers' grids and steps).
        N: number of discretisation steps (the fixed-step samplers' default step count).
        prior_std: standard deviation of the Gaussian prior ``N(prior_mean, prior_std^2 I)`` that stands for
            ``p_T``; ``None``: ``sigma(T)`` (exact for ``alpha(T) = 1``; a VP-type schedule should pass ``1``).
        inverse_tol: absolute tolerance in ``t`` of the bisection in :meth:`t_from_lambda` (default ``1e-12 T``:
            below the float64 resolution that a time grid needs; its cost is ``log2(T / inverse_tol)`` evaluations
            of ``lambda``, 40 by default).
        check_points: number of equally spaced times on ``[0, T]`` at which the constructor checks that ``alpha`` and
            ``sigma`` are finite and positive (``sigma`` may be ``0`` at ``t = 0``) and that ``lambda`` strictly
            decreases (otherwise ``g^2 < 0``: no SDE has these marginals). ``1001`` by default.
        prior_mean: see :class:`~scoresde.sdes.scalar.ScalarSDE`.
    """

    def __init__(
        self,
        alpha: ScheduleFn | None = None,
        sigma: ScheduleFn | None = None,
        *,
        T: float = 1.0,
        N: int = 1000,
        prior_std: float | None = None,
        inverse_tol: float | None = None,
        check_points: int = 1001,
        prior_mean: float | Tensor = 0.0,
    ) -> None:
        T = _check_finite("T", T, low=0.0, allowed="a positive finite end time")
        super().__init__(N, T, prior_mean)
        for name, fn in (("alpha", alpha), ("sigma", sigma)):
            if fn is not None and not callable(fn):
                raise ValueError(f"{name} must be a function of t (a tensor -> a tensor), got {fn!r}")
        if alpha is None and type(self).log_alpha is ScheduleSDE.log_alpha:
            raise ValueError("ScheduleSDE needs alpha, a function of t (or a subclass that defines log_alpha)")
        if sigma is None and type(self).sigma is ScheduleSDE.sigma:
            raise ValueError("ScheduleSDE needs sigma, a function of t (or a subclass that defines sigma)")
        self.alpha_fn = alpha
        self.sigma_fn = sigma
        tol = 1e-12 * self.T if inverse_tol is None else inverse_tol
        self.inverse_tol = _check_finite("inverse_tol", tol, low=0.0, allowed="a positive time tolerance")
        if not isinstance(check_points, int) or isinstance(check_points, bool) or check_points < 2:
            raise ValueError(f"check_points must be an integer >= 2, got {check_points!r}")
        self._check_schedule(check_points)
        if prior_std is None:
            prior_std = float(self.sigma(torch.tensor(self.T, dtype=F64)))
        self._prior_std = _check_finite("prior_std", prior_std, low=0.0, allowed="a positive finite number")

    def _check_schedule(self, points: int) -> None:
        """The constructor's check (class docstring, ``check_points``): one ``ValueError`` naming the first bad time."""
        t = torch.linspace(0.0, self.T, points, dtype=F64)
        log_a, sig = self.log_alpha(t), self.sigma(t)
        bad_a = ~torch.isfinite(log_a)
        bad_s = ~(torch.isfinite(sig) & (sig > 0)) & ~((t == 0) & (sig == 0))
        for name, bad in (("alpha", bad_a), ("sigma", bad_s)):
            if bool(bad.any()):
                i = int(bad.nonzero()[0])
                value = float(torch.exp(log_a[i])) if name == "alpha" else float(sig[i])
                raise ValueError(f"{name}(t) must be finite and positive on [0, T={self.T:g}] ({type(self).__name__}); "
                                 f"{name}({float(t[i]):.6g}) = {value!r}")
        lam = log_a - torch.log(sig)
        rising = lam[1:] >= lam[:-1]
        if bool(rising.any()):
            i = int(rising.nonzero()[0])
            raise ValueError(f"lambda(t) = log(alpha / sigma) must strictly decrease on [0, T] (g^2 = -2 sigma^2 "
                             f"dlambda/dt >= 0); it does not between t = {float(t[i]):.6g} and {float(t[i + 1]):.6g}")

    # -- the schedule -----------------------------------------------------------------------------------------------
    @property
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior (the ``prior_std`` argument)."""
        return self._prior_std

    def log_alpha(self, t: Tensor) -> Tensor:
        """``log alpha(t)`` of the ``alpha`` function."""
        return torch.log(self.alpha_fn(t))

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t)`` of the ``sigma`` function."""
        return self.sigma_fn(t)

    def _derivative(self, fn: ScheduleFn, t: Tensor) -> Tensor:
        """``d fn / dt`` elementwise by automatic differentiation in float64, cast back to ``t``'s dtype (also inside
        ``torch.no_grad`` / ``torch.inference_mode``: the derivative is of the schedule, not of the caller's graph)."""
        with torch.inference_mode(False), torch.enable_grad():
            t64 = t.detach().clone().to(F64).requires_grad_(True)
            y = fn(t64)
            if not y.requires_grad:  # a constant (e.g. alpha = 1 written as ones_like(t))
                return torch.zeros_like(t)
            (grad,) = torch.autograd.grad(y.sum(), t64, allow_unused=True)
        return torch.zeros_like(t) if grad is None else grad.to(t.dtype)

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        """The drift coefficient ``f(t) = d log alpha / dt`` (generic: automatic differentiation of ``log_alpha``)."""
        return self._derivative(self.log_alpha, t)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        """``d sigma^2 / dt`` (generic: automatic differentiation of ``sigma^2``)."""
        return self._derivative(lambda s: self.sigma(s) ** 2, t)

    def g2(self, t: Tensor) -> Tensor:
        """The squared diffusion ``g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2`` (module docstring)."""
        return self.dsigma2_dt(t) - 2.0 * self.dlog_alpha_dt(t) * self.sigma(t) ** 2

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``f(t) x`` and diffusion ``g(t)`` of ``dx = f x dt + g dW``, whose marginals are the schedule's
        (Kingma et al. 2021, App. A). ``g^2`` is clamped at ``0`` from below: the constructor checked that ``lambda``
        decreases, so a negative value is rounding only."""
        f = self.dlog_alpha_dt(t)
        return batch_broadcast(f, x) * x, torch.sqrt(self.g2(t).clamp_min(0.0))

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """The time ``t`` in ``[0, T]`` with ``lambda(t) = lam`` (generic: bisection in float64 to ``inverse_tol``).

        ``lam`` must lie in ``[lambda(T), lambda(0)]`` up to a rounding slack of ``1e-9 (1 + |lam|)`` (values within
        the slack give the end time); a value further out is a ``ValueError`` naming it and the range."""
        lam64 = lam.detach().to(F64)
        ends = self.lambda_t(torch.tensor([0.0, self.T], dtype=F64, device=lam.device))
        slack = 1e-9 * (1.0 + lam64.abs())
        out_of_range = (lam64 < ends[1] - slack) | (lam64 > ends[0] + slack)
        if bool(out_of_range.any()):
            bad = float(lam64[out_of_range].reshape(-1)[0])
            raise ValueError(f"t_from_lambda: lambda = {bad!r} is outside [lambda(T), lambda(0)] = "
                             f"[{float(ends[1])!r}, {float(ends[0])!r}] of {type(self).__name__}")
        lo = torch.zeros_like(lam64)  # lambda(lo) >= lam
        hi = torch.full_like(lam64, self.T)  # lambda(hi) <= lam
        for _ in range(max(1, math.ceil(math.log2(self.T / self.inverse_tol)))):
            mid = 0.5 * (lo + hi)
            above = self.lambda_t(mid) >= lam64
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return (0.5 * (lo + hi)).to(lam.dtype)

    # -- identity and the run config --------------------------------------------------------------------------------
    def describe(self) -> dict:
        """:meth:`SDE.describe` plus the schedule functions (by ``repr``: the same function objects compare equal)."""
        out = super().describe()
        for key in ("alpha_fn", "sigma_fn"):
            if getattr(self, key, None) is not None:
                out[key] = repr(getattr(self, key))
        return out

    def model_config(self) -> dict[str, Any]:
        """:meth:`SDE.model_config`, where ``T`` need not be 1: the entries are refused (``ValueError``) only when
        :meth:`from_model_config` would build another SDE from them (a ``T`` or tolerance other than the class's
        default for these parameters; a nonzero or tensor ``prior_mean``)."""
        name = type(self).__name__
        if self.config_name is None:
            raise ValueError(f"{name} has no training.sde name: a run config cannot hold it")
        if isinstance(self.prior_mean, Tensor) or self.prior_mean != 0.0:
            mean = "a tensor" if isinstance(self.prior_mean, Tensor) else self.prior_mean
            raise ValueError(f"{name} has prior_mean={mean}: a run config has no place for a prior mean other than 0")
        out = {key: getattr(self, key) for key in (*self.config_keys, *self.config_options)}
        out["num_scales"] = self.N
        rebuilt = type(self).from_model_config(out)
        if rebuilt.describe() != self.describe():
            diff = sorted(k for k, v in self.describe().items() if rebuilt.describe().get(k) != v)
            raise ValueError(f"{name} differs from the SDE its run config entries {sorted(out)} rebuild in "
                             f"{', '.join(d.lstrip('_') for d in diff)}: a run config has no place for them")
        return out
