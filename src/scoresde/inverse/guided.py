"""The chassis shared by the Tweedie-guided inverse-problem methods (``"dps"``, ``"pigdm"``, ``"mmps"`` of
:func:`scoresde.solve_inverse`): the data prediction ``x0(x_t)`` kept with its autograd graph, vector-Jacobian
products ``J^T v`` of it (``J = d x0 / d x_t``) counted one by one, batched conjugate gradients, and the DDIM /
ancestral loop that moves the state with a guided data prediction.

All three read the SDE through its scalar schedule only (``alpha_t``, ``sigma_t``: VE, VP, sub-VP and any other
:class:`~scoresde.sdes.scalar.ScalarSDE`); the methods refuse a phase-space SDE in one line
(:func:`~scoresde.inverse.solve.require_scalar_sde`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import CountingModel
from ..sdes.base import batch_broadcast

__all__ = ["TweedieGraph", "check_eta", "conjugate_gradient", "guided_loop", "row_dot"]


def row_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-row inner product ``sum over all but the batch dimension of a * b``, shape ``(B,)``."""
    return (a * b).reshape(a.shape[0], -1).sum(1)


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, iterations: int) -> Tensor:
    """``iterations`` steps of conjugate gradients (Hestenes & Stiefel 1952) from ``0`` on the batch of symmetric
    positive definite systems ``M u = b`` (one per row; ``matvec(v)`` applies every row's ``M``). Exact after as many
    iterations as the system has unknowns (in exact arithmetic); a row whose residual is exactly zero stops there."""
    u = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = row_dot(r, r)
    for _ in range(iterations):
        mp = matvec(p)
        curv = row_dot(p, mp)
        step = torch.where(curv > 0, rs / torch.where(curv > 0, curv, torch.ones_like(curv)), torch.zeros_like(rs))
        u = u + batch_broadcast(step, u) * p
        r = r - batch_broadcast(step, r) * mp
        rs_new = row_dot(r, r)
        beta = torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = r + batch_broadcast(beta, p) * p
        rs = rs_new
    return u


class TweedieGraph:
    """The data prediction ``x0 = E[x_0 | x_t]`` of ``model`` at ``(x, t)`` (one counted network evaluation) with its
    autograd graph, and vector-Jacobian products with ``J = d x0 / d x_t`` (each counted in :attr:`vjps` of the
    shared ``tally``). For an exact score ``J = (I + sigma_t^2 Hess log p_t) / alpha_t`` is symmetric, and
    ``(sigma_t^2 / alpha_t) J`` is the Tweedie covariance ``Cov[x_0 | x_t]`` (Efron 2011; Rozet et al. 2024, eq. 11).
    """

    def __init__(self, model: CountingModel, x: Tensor, t: Tensor, tally: dict[str, int]) -> None:
        self.x = x.detach().requires_grad_(True)
        self.t, self.tally = t, tally
        with torch.enable_grad():
            self.x0 = model.x0(self.x, t)
        alpha, sigma = model.alpha_sigma(t)
        self.alpha = batch_broadcast(alpha.to(x), x)
        self.sigma = batch_broadcast(sigma.to(x), x)

    def vjp(self, v: Tensor) -> Tensor:
        """``J^T v`` (one backward pass through the model, counted)."""
        self.tally["vjps"] += 1
        (out,) = torch.autograd.grad(self.x0, self.x, grad_outputs=v, retain_graph=True)
        return out

    def covariance_vjp(self, v: Tensor) -> Tensor:
        """``Cov[x_0 | x_t] v = (sigma_t^2 / alpha_t) J^T v`` (Tweedie's second moment; one counted VJP)."""
        return self.sigma**2 / self.alpha * self.vjp(v)


#: ``step(x, t) -> (x0_step, after)``: the data prediction the DDIM step uses, and a correction added to the state after
#: the step (DPS) or ``None``; ``t`` has shape ``(B,)``
GuidedStep = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor | None]"]


def guided_loop(model: CountingModel, z: Tensor, ts: Tensor, step: GuidedStep, *, eta: float, denoise: bool,
                generator: torch.Generator | None, progress: bool, desc: str) -> Tensor:
    """The DDIM loop (Song, Meng & Ermon 2021, eq. 12; ``eta = 1``: DDPM's ancestral variance) from the prior draw
    ``z`` through the decreasing times ``ts``, each step using the guided data prediction of ``step``; with
    ``denoise`` a last step to ``sigma = 0`` returns the guided data prediction at ``ts[-1]`` (plus the correction)."""
    sde = model.sde
    x = z
    B = z.shape[0]
    for i in tqdm(range(len(ts) - 1), disable=not progress, desc=desc):
        t, s = ts[i], ts[i + 1]
        x0, after = step(x, t.to(z).expand(B))
        with torch.no_grad():
            alpha, sigma = model.alpha_sigma(t.to(z).reshape(1))
            eps = (x.detach() - alpha.to(z) * x0) / sigma.to(z)
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) if eta > 0 else None
            x = sde.ddim_step(x.detach(), t, s, eps, eta=eta, noise=noise)
            if after is not None:
                x = x + after
    if denoise:
        x0, after = step(x, ts[-1].to(z).expand(B))
        x = x0 if after is None else x0 + after
    return x.detach()


def check_eta(name: str, value: Any) -> float:
    """A DDIM noise scale in ``[0, 1]`` (0: deterministic, 1: DDPM's ancestral variance), else one line."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM's variance), "
                         f"got {value!r}")
    return float(value)
