"""Network preconditioning of Karras et al. 2022 (EDM, "Elucidating the Design Space of Diffusion-Based Generative
Models", NeurIPS 2022, Table 1 and eq. 7).

A preconditioned model computes the denoiser ``D(x~; s) = c_skip(s) x~ + c_out(s) F(c_in(s) x~; c_noise(s))`` of the
scaled state ``x~ = x / alpha(t)`` at the noise level ``s = sigma(t) / alpha(t)`` (Karras et al. eq. 4 writes any scalar
SDE as ``x = alpha (x_0 + s eps)``), where ``F`` is the plain network. Each row of Table 1 is one small object whose
call ``coefficients(s)`` returns ``(c_skip, c_out, c_in, c_noise)``, each the shape of ``s``:

* :class:`EDMPreconditioning` (``"edm"``, EDM's own row): ``c_skip = sigma_d^2 / (s^2 + sigma_d^2)``,
  ``c_out = s sigma_d / sqrt(s^2 + sigma_d^2)``, ``c_in = 1 / sqrt(s^2 + sigma_d^2)``, ``c_noise = ln(s) / 4``. The
  input and the training target of ``F`` have unit variance at every ``s`` when the data has std ``sigma_d``
  (Karras et al. App. B.6). Use it for new models on any schedule.
* :class:`VPPreconditioning` (``"vp"``, the VP column): ``c_skip = 1``, ``c_out = -s``, ``c_in = 1 / sqrt(s^2 + 1)``,
  ``c_noise = (M - 1) t(s)`` with ``t(s)`` the inverse of EDM's VP schedule ``s(t) = sqrt(exp(beta_d t^2 / 2 +
  beta_min t) - 1)``: a noise-predicting network fed ``999 t``, Score SDE's DDPM++ convention. Use it to reproduce
  EDM's VP baselines.
* :class:`VEPreconditioning` (``"ve"``, the VE column): ``c_skip = 1``, ``c_out = s``, ``c_in = 1``,
  ``c_noise = ln(s / 2)``. Use it to reproduce EDM's VE baselines.

:data:`PRECONDITIONINGS` maps the names (``model.preconditioning`` in a run config) to the classes;
:func:`make_preconditioning` builds one from a name.
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from ..numerics.checks import check_choice

__all__ = ["PRECONDITIONINGS", "Coefficients", "EDMPreconditioning", "Preconditioning", "VEPreconditioning",
           "VPPreconditioning", "make_preconditioning"]


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class Coefficients(NamedTuple):
    """The four scalings of Karras et al. Table 1 at the noise levels ``s`` (each a tensor shaped like ``s``)."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


class Preconditioning:
    """One row of Karras et al. Table 1: ``coefficients(s)`` for noise levels ``s = sigma / alpha`` (shape ``(B,)``).

    Subclasses set ``name`` (the ``model.preconditioning`` value) and implement :meth:`coefficients`;
    :meth:`options` gives the constructor arguments that differ from the defaults (for ``repr`` and configs)."""

    name: ClassVar[str] = ""

    def coefficients(self, s: Tensor) -> Coefficients:  # pragma: no cover - every row overrides it
        raise NotImplementedError

    def options(self) -> dict[str, float]:
        """The row's parameters, e.g. ``{"sigma_data": 0.5}``."""
        return dict(vars(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.options() == self.options()

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.options().items())))


class EDMPreconditioning(Preconditioning):
    """EDM's preconditioning (Karras et al. 2022, Table 1 "Ours", eq. 7; ``EDMPrecond`` of NVlabs/edm).

    Args:
        sigma_data: the data's standard deviation ``sigma_d`` (``0.5`` for images in ``[-1, 1]``, EDM's value).

    At ``s = sigma_d = 0.5``: ``c_skip = 0.5``, ``c_out = 0.353553``, ``c_in = 1.414214``, ``c_noise = -0.173287``.
    """

    name = "edm"

    def __init__(self, sigma_data: float = 0.5) -> None:
        self.sigma_data = _positive("sigma_data", sigma_data)

    def coefficients(self, s: Tensor) -> Coefficients:
        """``c_skip = sigma_d^2 / (s^2 + sigma_d^2)``, ``c_out = s sigma_d / sqrt(s^2 + sigma_d^2)``,
        ``c_in = 1 / sqrt(s^2 + sigma_d^2)``, ``c_noise = ln(s) / 4``."""
        var = s**2 + self.sigma_data**2
        return Coefficients(self.sigma_data**2 / var, s * self.sigma_data / var.sqrt(), 1 / var.sqrt(), s.log() / 4)


class VPPreconditioning(Preconditioning):
    """The VP column of Karras et al. 2022, Table 1 (``VPPrecond`` of NVlabs/edm): Score SDE's VP network as a
    denoiser, ``D = x~ - s F(x~ / sqrt(s^2 + 1); (M - 1) t(s))``.

    Args:
        beta_d: ``beta_max - beta_min`` of EDM's VP schedule (19.9, EDM's and Score SDE's value).
        beta_min: ``beta_min`` of that schedule (0.1).
        M: the number of DDPM timesteps whose index range the network is fed (1000: labels ``999 t``).

    ``t(s) = (sqrt(beta_min^2 + 2 beta_d ln(1 + s^2)) - beta_min) / beta_d`` inverts ``s(t) = sqrt(exp(beta_d t^2 / 2 +
    beta_min t) - 1)``, which is ``sigma(t) / alpha(t)`` of :class:`~scoresde.sdes.VPSDE` with the same betas.
    """

    name = "vp"

    def __init__(self, beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000) -> None:
        self.beta_d = _positive("beta_d", beta_d)
        self.beta_min = _positive("beta_min", beta_min)
        if isinstance(M, bool) or not isinstance(M, int) or M < 2:
            raise ValueError(f"M must be an integer >= 2, got {M!r}")
        self.M = M

    def t_of_s(self, s: Tensor) -> Tensor:
        """The VP time whose noise level is ``s`` (EDM's ``sigma_inv``)."""
        return ((self.beta_min**2 + 2 * self.beta_d * torch.log1p(s**2)).sqrt() - self.beta_min) / self.beta_d

    def coefficients(self, s: Tensor) -> Coefficients:
        """``c_skip = 1``, ``c_out = -s``, ``c_in = 1 / sqrt(s^2 + 1)``, ``c_noise = (M - 1) t(s)``."""
        return Coefficients(torch.ones_like(s), -s, 1 / (s**2 + 1).sqrt(), (self.M - 1) * self.t_of_s(s))


class VEPreconditioning(Preconditioning):
    """The VE column of Karras et al. 2022, Table 1 (``VEPrecond`` of NVlabs/edm): Score SDE's VE network as a
    denoiser, ``D = x~ + s F(x~; ln(s / 2))``. No parameters."""

    name = "ve"

    def coefficients(self, s: Tensor) -> Coefficients:
        """``c_skip = 1``, ``c_out = s``, ``c_in = 1``, ``c_noise = ln(s / 2)``."""
        return Coefficients(torch.ones_like(s), s, torch.ones_like(s), (0.5 * s).log())


#: ``model.preconditioning`` value -> row of Karras et al. Table 1
PRECONDITIONINGS: dict[str, type[Preconditioning]] = {
    cls.name: cls for cls in (EDMPreconditioning, VPPreconditioning, VEPreconditioning)}


def make_preconditioning(name: str, *, sigma_data: float | None = None) -> Preconditioning:
    """The row ``name`` of :data:`PRECONDITIONINGS` with its defaults; ``sigma_data`` (``None``: 0.5) is an option of
    ``"edm"`` only and refused for the others (it would be ignored). ``ValueError`` for an unknown name."""
    cls = PRECONDITIONINGS[check_choice("preconditioning", name, tuple(PRECONDITIONINGS))]
    if cls is EDMPreconditioning:
        return EDMPreconditioning(0.5 if sigma_data is None else sigma_data)
    if sigma_data is not None:
        raise ValueError(f"sigma_data={sigma_data!r} is an option of preconditioning 'edm' only, not {name!r}")
    return cls()
