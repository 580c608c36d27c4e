"""The score Fokker–Planck regulariser of FP-Diffusion (Lai et al., ICML 2023, arXiv 2210.04296).

For a forward SDE ``dx = f(x, t) dt + g(t) dW`` the true score ``s = grad_x log p_t`` satisfies the score
Fokker–Planck equation (Lai et al. 2023, Prop. 3.1)::

    d_t s = grad_x B(x, t),    B = 1/2 g^2 div(s) + 1/2 g^2 ||s||^2 - <f, s> - div(f).

A score learned by denoising score matching violates it; FP-Diffusion adds the violation to the
likelihood-weighted DSM loss. Two terms, as in the original ``sde_lib.VPSDE.PDE(...).fp``:

* the **vector** residual ``r = d_t s - grad_x B`` (``B`` with ``div(s)`` from a Hutchinson estimate);
  ``vec = mean_b( w(t_b) ||r_b||_2^m ) / D^m`` (the ``/ D^m`` only when ``normalize``), with the time weight
  ``w`` = ``1`` (``constant``), ``g`` (``convention``) or ``g^2`` (``ll``);
* the **scalar** term, the bracket without its ``x``-independent ``div(f)``:
  ``scalar = || 1/2 g^2 (div(s) + ||s||^2) - <f, s> ||_2`` (norm over the batch). For VP
  (``f = -1/2 beta x``, ``g^2 = beta``) this is ``beta/2 (div(s) + ||s||^2 + x·s)``.

``d_t s`` is the original's second-order three-point rule with a forward step ``h_d`` and a backward step
``h_s``::

    d_t s ≈ [h_s^2 s(t + h_d) + (h_d^2 - h_s^2) s(t) - h_d^2 s(t - h_s)] / (h_s h_d (h_d + h_s)),

except that we switch to the one-sided second-order rule on the nodes ``t, t + h_d, t + h_d + h_s`` where
``t - h_s < t_min`` (the original evaluates the score at negative times there, where VP's std is NaN) and on
``t, t - h_s, t - h_s - h_d`` where ``t + h_d > t_max``. ``time_derivative="autograd"`` differentiates exactly
(forward mode, :func:`torch.func.jvp`).

Differences from the original, all deliberate: the drift is read from ``sde.sde`` (the original hard-codes VP;
its VE branch omits it and crashes), ``div(f)`` is kept in ``B`` (estimated like ``div(s)``; its ``x``-gradient
vanishes for the linear drifts of VE / VP / sub-VP), and every option is honoured and validated.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..sdes.base import SDE, batch_broadcast
from .dsm import _check_noise, _score_fn_of, sde_loss

MODES = ("both", "scalar", "vector")
WEIGHTINGS = ("constant", "convention", "ll")
DIVERGENCES = ("hutchinson", "exact")
TIME_DERIVATIVES = ("finite_difference", "autograd")


class FPTerms(NamedTuple):
    """The two FP-Diffusion terms; the one a ``mode`` does not ask for is ``None``."""

    vector: Tensor | None
    scalar: Tensor | None


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values are: {', '.join(valid)}")


def _divergence(fn_out: Tensor, x: Tensor, method: str, probes: Tensor | None) -> Tensor:
    """``div_x fn`` per example, shape ``(B,)``, keeping the graph (``fn_out`` computed from ``x``).

    ``exact``: the trace of the Jacobian, one backward pass per dimension. ``hutchinson``: the mean over the
    probes ``v`` (shape ``(P, *x.shape)``) of ``v^T (d fn / dx) v`` (Hutchinson 1989), unbiased for
    ``E[v v^T] = I``.
    """
    B = x.shape[0]
    if not fn_out.requires_grad:  # e.g. VE's zero drift: no dependence on x
        return torch.zeros(B, dtype=x.dtype, device=x.device)
    if method == "exact":
        out = fn_out.reshape(B, -1)
        div = torch.zeros(B, dtype=x.dtype, device=x.device)
        for j in range(out.shape[1]):
            grad = torch.autograd.grad(out[:, j].sum(), x, create_graph=True, allow_unused=True)[0]
            if grad is not None:
                div = div + grad.reshape(B, -1)[:, j]
        return div
    div = torch.zeros(B, dtype=x.dtype, device=x.device)
    for v in probes:
        grad = torch.autograd.grad((fn_out * v).sum(), x, create_graph=True, allow_unused=True)[0]
        if grad is not None:
            div = div + (grad * v).reshape(B, -1).sum(-1)
    return div / probes.shape[0]


def _time_derivative_fd(score_fn, x: Tensor, t: Tensor, s_t: Tensor, h_s: float, h_d: float,
                        t_min: float, t_max: float) -> Tensor:
    """Three-point second-order ``d_t s``: the original's two-sided rule, one-sided near ``t_min`` / ``t_max``.

    With nodes ``t + d1`` and ``t + d2`` besides ``t`` (Lagrange interpolation differentiated at ``t``)::

        d_t s ≈ -(d1 + d2)/(d1 d2) s(t) + d2/(d1 (d2 - d1)) s(t + d1) - d1/(d2 (d2 - d1)) s(t + d2).

    Two-sided: ``(d1, d2) = (h_d, -h_s)``, which is exactly the original's formula. Forward one-sided where
    ``t - h_s < t_min``: ``(h_d, h_d + h_s)``; backward one-sided where ``t + h_d > t_max``: ``(-h_s, -h_s - h_d)``.
    """
    forward = t - h_s < t_min
    backward = (t + h_d > t_max) & ~forward
    d1 = torch.where(forward, torch.full_like(t, h_d), torch.where(backward, torch.full_like(t, -h_s),
                                                                   torch.full_like(t, h_d)))
    d2 = torch.where(forward, torch.full_like(t, h_d + h_s), torch.where(backward, torch.full_like(t, -h_s - h_d),
                                                                         torch.full_like(t, -h_s)))
    c0 = -(d1 + d2) / (d1 * d2)
    c1 = d2 / (d1 * (d2 - d1))
    c2 = -d1 / (d2 * (d2 - d1))
    s1 = score_fn(x, t + d1)
    s2 = score_fn(x, t + d2)
    return batch_broadcast(c0, s_t) * s_t + batch_broadcast(c1, s_t) * s1 + batch_broadcast(c2, s_t) * s2


def fp_regularizer(
    score_fn: Any,
    sde: SDE,
    x_t: Tensor,
    t: Tensor,
    *,
    mode: str = "both",
    weighting: str = "constant",
    m: float = 2,
    normalize: bool = True,
    divergence: str = "hutchinson",
    n_probes: int = 1,
    time_derivative: str = "finite_difference",
    h_s: float = 1e-3,
    h_d: float = 5e-4,
    probes: Tensor | None = None,
    generator: torch.Generator | None = None,
    t_min: float | None = None,
    t_max: float | None = None,
) -> FPTerms:
    """The FP-Diffusion vector residual and scalar term at the points ``x_t`` and times ``t`` (module docstring).

    Args:
        score_fn: ``score_fn(x, t)``, or an object with ``.score_fn``; differentiated twice, so it must be
            built from differentiable torch operations.
        sde: a forward SDE with a per-example scalar diffusion ``g(t)`` of shape ``(B,)`` (VE, VP, sub-VP).
        x_t: points, shape ``(B, ...)`` with ``D = prod(...)`` (the original uses the perturbed data).
        t: times, shape ``(B,)``.
        mode: ``"both"`` (the original's ``scalar_fp='both'``), ``"vector"`` (``'False'``) or ``"scalar"``
            (``'True'``); the term not asked for is ``None`` and not computed.
        weighting: time weight of the vector term: ``"constant"`` (1), ``"convention"`` (``g``), ``"ll"`` (``g^2``).
        m: power of the per-example residual norm (2 in the FP-Diffusion configs).
        normalize: divide the vector term by ``D^m``.
        divergence: ``"hutchinson"`` (the original's single-probe estimate for ``n_probes=1``) or ``"exact"``
            (``D`` backward passes; for small ``D`` and tests).
        n_probes: Hutchinson probes averaged per example.
        time_derivative: ``"finite_difference"`` (the original's rule, see :func:`_time_derivative_fd`) or
            ``"autograd"`` (exact, forward mode).
        h_s: backward step of the finite difference (``1e-3`` in the original).
        h_d: forward step (``5e-4`` in the original).
        probes: Hutchinson probes to replay, shape ``(n_probes, *x_t.shape)`` or ``x_t.shape``; standard normal
            from ``generator`` when ``None`` (the original's ``randn_like``).
        generator: random generator for the probes.
        t_min, t_max: interval the finite difference must stay in; default ``[min(1e-5, min t), T]``.

    Returns:
        ``FPTerms(vector, scalar)``, 0-d tensors (or ``None``), differentiable with respect to the parameters.
    """
    _check_choice("mode", mode, MODES)
    _check_choice("weighting", weighting, WEIGHTINGS)
    _check_choice("divergence", divergence, DIVERGENCES)
    _check_choice("time_derivative", time_derivative, TIME_DERIVATIVES)
    if not (isinstance(n_probes, int) and n_probes >= 1):
        raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")
    if not (h_s > 0 and h_d > 0):
        raise ValueError(f"finite-difference steps must be positive, got h_s={h_s!r}, h_d={h_d!r}")
    if not m > 0:
        raise ValueError(f"m must be positive, got {m!r}")
    B = x_t.shape[0]
    if t.shape != (B,):
        raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
    t_max = sde.T if t_max is None else float(t_max)
    t_min = min(1e-5, float(t.min())) if t_min is None else float(t_min)
    if time_derivative == "finite_difference" and mode != "scalar" and t_max - t_min < h_s + h_d:
        raise ValueError(f"[t_min, t_max] = [{t_min}, {t_max}] is shorter than h_s + h_d = {h_s + h_d}")
    if divergence == "hutchinson":
        if probes is None:
            probes = torch.randn((n_probes, *x_t.shape), generator=generator, dtype=x_t.dtype, device=x_t.device)
        elif probes.shape == x_t.shape:
            probes = probes.unsqueeze(0)
        elif probes.shape[1:] != x_t.shape:
            raise ValueError(f"probes must have shape (P, {', '.join(map(str, x_t.shape))}) or that of x_t, "
                             f"got {tuple(probes.shape)}")
    score_fn = _score_fn_of(score_fn)

    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        s = score_fn(x, t)
        drift, g = sde.sde(x, t)
        if g.dim() != 1:
            raise NotImplementedError("fp_regularizer needs a scalar diffusion g(t) of shape (B,), "
                                      f"got {tuple(g.shape)} from {type(sde).__name__}")
        g2 = g**2
        div_s = _divergence(s, x, divergence, probes)
        s_sq = s.reshape(B, -1).square().sum(-1)
        f_dot_s = (drift * s).reshape(B, -1).sum(-1)
        scalar_bracket = 0.5 * g2 * (div_s + s_sq) - f_dot_s  # B without div(f), shape (B,)
        scalar = torch.linalg.vector_norm(scalar_bracket, 2) if mode != "vector" else None
        if mode == "scalar":
            return FPTerms(None, scalar)

        bracket = scalar_bracket - _divergence(drift, x, divergence, probes)
        grad_bracket = torch.autograd.grad(bracket.sum(), x, create_graph=True)[0]
        if time_derivative == "finite_difference":
            ds_dt = _time_derivative_fd(score_fn, x, t, s, h_s, h_d, t_min, t_max)
        else:
            ds_dt = torch.func.jvp(lambda tt: score_fn(x, tt), (t,), (torch.ones_like(t),))[1]
        residual = (ds_dt - grad_bracket).reshape(B, -1)
        per_example = torch.linalg.vector_norm(residual, 2, dim=1) ** m
        weight = {"constant": torch.ones_like(g), "convention": g, "ll": g2}[weighting]
        vector = (weight * per_example).mean()
        if normalize:
            vector = vector / residual.shape[1] ** m
    return FPTerms(vector, scalar)


def fp_loss(
    model: Any,
    sde: SDE,
    batch: Tensor,
    *,
    alpha: float = 0.15,
    beta: float = 0.01,
    mode: str = "both",
    weighting: str = "ll",
    m: float = 2,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    probes: Tensor | None = None,
    reduce_mean: bool = False,
    likelihood_weighting: bool = True,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    **regularizer_options: Any,
) -> Tensor:
    """FP-Diffusion training loss (Lai et al. 2023, eq. 11; the original ``get_sde_loss_fn``).

    ``loss = DSM + alpha · vec + beta · scalar`` for ``mode="both"``, ``DSM + alpha · vec`` for ``"vector"``
    (the original's ``scalar_fp='False'``) and ``DSM + beta · scalar`` for ``"scalar"`` (``'True'``), where DSM is
    :func:`~scoresde.objectives.dsm.sde_loss` (likelihood-weighted by default) and ``vec``, ``scalar`` are
    :func:`fp_regularizer` at the perturbed data ``x_t`` and the same times ``t`` (the original's
    ``fp_dist='pert'``). Draws come in the original's order, times, noise, then Hutchinson probes, from
    ``generator``, or are replayed from ``t``, ``noise``, ``probes``. A zero weight on every term that ``mode``
    uses skips the regulariser (the original instead keys this on ``alpha`` alone and asserts the rest).

    ``regularizer_options`` go to :func:`fp_regularizer` (``normalize``, ``divergence``, ``n_probes``,
    ``time_derivative``, ``h_s``, ``h_d``, ``t_min``, ``t_max``); ``t_min`` defaults to ``eps``.
    """
    _check_choice("mode", mode, MODES)
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    B = batch.shape[0]
    if t is None:
        t = torch.rand(B, generator=generator, device=batch.device, dtype=batch.dtype) * (sde.T - eps) + eps
    z = _check_noise(noise, batch, generator)
    loss = sde_loss(model, sde, batch, t=t, noise=z, reduce_mean=reduce_mean,
                    likelihood_weighting=likelihood_weighting, eps=eps)
    uses_vector, uses_scalar = mode in ("both", "vector"), mode in ("both", "scalar")
    if not ((uses_vector and alpha != 0) or (uses_scalar and beta != 0)):
        return loss
    mean, std = sde.marginal_prob(batch, t)
    x_t = mean + batch_broadcast(std, batch) * z
    regularizer_options.setdefault("t_min", eps)
    terms = fp_regularizer(model, sde, x_t, t, mode=mode, weighting=weighting, m=m, probes=probes,
                           generator=generator, **regularizer_options)
    if uses_vector:
        loss = loss + alpha * terms.vector
    if uses_scalar:
        loss = loss + beta * terms.scalar
    return loss
