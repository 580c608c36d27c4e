"""The problem every inverse-problem method receives: :class:`InverseProblem` (operator, measurement, noise level)
and the method contract of :data:`scoresde.inverse.INVERSE_METHODS`.

A method is one function in its own module (its paper and equation numbers in the module header)::

    def run_mine(model: DiffusionModel, problem: InverseProblem, z: Tensor, *,
                 <options with defaults>,
                 cond: dict[str, Any], generator: torch.Generator | None, progress: bool,
                 ) -> tuple[Tensor, int, dict[str, Any]]

* ``model``: the :class:`~scoresde.models.adapter.DiffusionModel` (``model.sde``, ``model.score``, ``model.x0``);
* ``problem``: the measurement ``y = A x + sigma_y n`` (:class:`InverseProblem`: ``problem.operator`` bound to the
  data rows, ``problem.y`` of shape ``(B, *operator.out_shape)`` in the sampling dtype and device,
  ``problem.sigma_y`` a float ``>= 0``);
* ``z``: a prior draw of the state, ``(B, k C, ...)`` (``k = 2`` on CLD/PSLD: position and momentum blocks; the
  operator acts on the data part ``model.sde.data_part``);
* keyword-only options with defaults (read by the registry: unknown options are refused by name), then the reserved
  ``cond`` (batch-first conditioning of the model; slice it with ``slice_cond`` when rows are repeated), ``generator``
  (every draw) and ``progress`` (a progress bar);
* returns ``(x, nfe, diagnostics)``: the data ``(B, C, ...)`` (one posterior sample per row of ``y``), the number of
  batched model calls (``scoresde.sampling.common.counting``) and a dict of method-specific numbers.

A method that cannot serve a problem says so in one line with :meth:`InverseProblem.require_noiseless`,
:meth:`InverseProblem.require_svd`, :meth:`InverseProblem.observation` (masks in an orthonormal basis only) or
:func:`require_scalar_sde`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..sdes.base import SDE
from .observation import Observation, decoupling_matrix
from .operators import Grey, LinearOperator, Mask

__all__ = ["InverseProblem", "SpectralObservation", "require_scalar_sde"]


@dataclass(frozen=True)
class InverseProblem:
    """The measurement ``y = A x + sigma_y n`` of one batch: ``operator`` (``A``, bound to rows of shape
    ``data_shape[1:]``), ``y`` (``(B, *operator.out_shape)``), ``sigma_y`` (the noise standard deviation, ``0`` for a
    noiseless measurement) and ``data_shape`` (``(B, C, ...)``, the shape of the returned data)."""

    operator: LinearOperator
    y: Tensor
    sigma_y: float
    data_shape: tuple[int, ...]

    @property
    def batch(self) -> int:
        """``B``: rows of ``y``, one posterior sample each."""
        return self.y.shape[0]

    def select(self, rows: Tensor) -> InverseProblem:
        """The problem of the rows ``rows`` (e.g. repeated once per particle): ``y[rows]`` and the operator's rows."""
        return replace(self, operator=self.operator.select(rows), y=self.y[rows],
                       data_shape=(int(rows.numel()), *self.data_shape[1:]))

    def require_noiseless(self, method: str) -> None:
        """One ``ValueError`` if ``sigma_y > 0`` for a method that assumes ``y = A x`` exactly."""
        if self.sigma_y > 0:
            raise ValueError(f"method {method!r} assumes a noiseless measurement y = A x; got sigma_y={self.sigma_y} "
                             "(use method='smc', or a method for noisy measurements)")

    def require_svd(self, method: str) -> None:
        """One ``ValueError`` if the operator has no closed-form SVD and ``method`` needs one."""
        if not self.operator.has_svd:
            raise ValueError(f"method {method!r} needs an operator with an SVD (Dense, Mask, Grey, Downsample, Blur); "
                             f"{self.operator!r} has none")

    def observation(self, method: str, k: int) -> Observation:
        """The noiseless measurement as observed coordinates in an orthonormal basis (:class:`~scoresde.inverse.
        observation.Observation`, ``k`` channel blocks per state): the pixels of a :class:`~scoresde.inverse.
        operators.Mask`, the grey coordinate of :class:`~scoresde.inverse.operators.Grey` (``sqrt(C)`` times ``y``
        in the rotation :func:`~scoresde.inverse.observation.decoupling_matrix`: today's inpainting and colorization,
        bit for bit), and for any other operator with an SVD the coordinates ``V^T x`` with ``S > 0``, observed as
        ``(U^T y) / S`` (:class:`SpectralObservation`). Refuses ``sigma_y > 0`` and operators without an SVD in one
        line naming ``method``."""
        self.require_noiseless(method)
        A, shape = self.operator, self.data_shape
        if isinstance(A, Mask):
            mask = A.mask.to(self.y).expand(shape)
            return Observation(self.y * mask, mask, None, k)
        if isinstance(A, Grey):
            channels = shape[1]
            mask = torch.zeros((1, channels) + (1,) * (len(shape) - 2), dtype=self.y.dtype, device=self.y.device)
            mask[:, 0] = 1.0
            return Observation(self.y.expand(shape), mask.expand(shape), decoupling_matrix(channels), k)
        self.require_svd(method)
        return SpectralObservation(A, self.y, k, shape)

    def spectral(self) -> tuple[Tensor, Tensor]:
        """``(ybar, s)``: the measurement in the SVD basis, ``ybar = (U^T y)_i / S_i`` on the first ``r`` coordinates
        (0 where ``S_i = 0``), and ``s`` the singular values padded with zeros to ``n``; both ``(B, n)`` in ``y``'s
        dtype. The measurement of ``V^T x`` is ``ybar_i = (V^T x)_i + (sigma_y / s_i) n_i`` where ``s_i > 0``."""
        A = self.operator
        r = min(A.m, A.n)
        s = torch.zeros(self.batch, A.n, dtype=self.y.dtype, device=self.y.device)
        s[:, :r] = A.S.to(self.y).expand(self.batch, r)
        uy = A.Ut(self.y)[:, :r]
        ybar = torch.zeros_like(s)
        ybar[:, :r] = torch.where(s[:, :r] > 0, uy / torch.where(s[:, :r] > 0, s[:, :r], 1.0), 0.0)
        return ybar, s


class SpectralObservation(Observation):
    """A noiseless measurement ``y = A x`` seen as observed coordinates of ``V^T x`` (``A = U S V^T``): the
    coordinates with ``S_i > 0`` hold ``(U^T y)_i / S_i``. Coordinates in the basis are laid out in the data shape
    (``V^T x`` reshaped), so every :class:`~scoresde.inverse.observation.Observation` method (the replacement, RePaint
    and SMC samplers) runs unchanged; the scalar and phase-space kernels act alike on every coordinate, so they commute
    with the rotation ``V``."""

    def __init__(self, operator: LinearOperator, y: Tensor, k: int, data_shape: tuple[int, ...]) -> None:
        self.op, self.k, self.rotate, self.data_shape = operator, k, None, data_shape
        ybar, s = InverseProblem(operator, y, 0.0, data_shape).spectral()
        self.mask = (s > 0).to(y.dtype).reshape(data_shape)
        self.y = ybar.reshape(data_shape)
        self.state_mask = torch.cat([self.mask] * k, dim=1)

    def select(self, rows: Tensor) -> Observation:
        out = super().select(rows)
        out.op = self.op.select(rows)
        return out

    def to_basis(self, x: Tensor) -> Tensor:
        return self.op.Vt(x).reshape(x.shape)

    def from_basis(self, x: Tensor) -> Tensor:
        return self.op.V(x.reshape(x.shape[0], -1)).reshape(x.shape)

    def _blockwise(self, fn, z: Tensor) -> Tensor:
        return torch.cat([fn(b) for b in z.chunk(self.k, dim=1)], dim=1)

    def finish(self, x: Tensor) -> Tensor:
        return self.from_basis(self.to_basis(x) * (1.0 - self.mask) + self.y * self.mask)


def require_scalar_sde(sde: SDE, method: str, why: str) -> None:
    """One ``ValueError`` if ``sde`` has no scalar kernel ``x_t = alpha_t x_0 + sigma_t eps`` (CLD, PSLD) and
    ``method`` needs one for ``why``."""
    if not getattr(sde, "scalar_schedule", False):
        raise ValueError(f"method {method!r} needs a scalar SDE (VE, VP, sub-VP) for {why}; {type(sde).__name__} "
                         "is a phase-space SDE")
