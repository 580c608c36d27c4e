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

**Phase space** (PSLD, CLD: :class:`~scoresde.sdes.RecipeSDE`, state ``z = [x, m]``). For
``dz = f(z, t) dt + G(t) dW`` with ``Sigma(t) = G G^T`` constant in ``z`` (here diagonal, ``2 beta(t) D`` per
coordinate block, read from the per-channel ``G`` of ``sde.sde``) the Fokker–Planck equation
``d_t p = -div(f p) + 1/2 div(Sigma grad p)`` divided by ``p`` gives, with ``div(Sigma grad p) / p =
tr(Sigma grad s) + s^T Sigma s``,

    d_t log p = 1/2 tr(Sigma grad_z s) + 1/2 s^T Sigma s - <f, s> - div(f) =: B(z, t),

and since ``s = grad_z log p``, ``d_t s = grad_z B``: the same equation with ``g^2 div(s)`` replaced by
``tr(Sigma grad_z s)`` and ``g^2 ||s||^2`` by ``s^T Sigma s`` (Prop. 3.1 of Lai et al. with a matrix diffusion; for
``Sigma = g^2 I`` it is the scalar case). The Hutchinson estimate of the trace is ``v^T Sigma (grad_z s) v``,
unbiased for ``E[v v^T] = I``. The weights ``g`` and ``g^2`` of the vector term become ``sqrt(tr(Sigma) / D)`` and
``tr(Sigma) / D`` (the mean diffusion coefficient per coordinate; equal to ``g``, ``g^2`` for ``Sigma = g^2 I``).
Scalar SDEs take exactly the original code path.

``d_t s`` is the original's second-order three-point rule with a forward step ``h_d`` and a backward step
``h_s``::

    d_t s ≈ [h_s^2 s(t + h_d) + (h_d^2 - h_s^2) s(t) - h_d^2 s(t - h_s)] / (h_s h_d (h_d + h_s)),

except that we switch to the one-sided second-order rule on the nodes ``t, t + h_d, t + h_d + h_s`` where
``t - h_s < t_min`` (the original evaluates the score at negative times there, where VP's std is NaN) and on
``t, t - h_s, t - h_s - h_d`` where ``t + h_d > t_max``. ``time_derivative="autograd"`` differentiates exactly
(forward mode, :func:`torch.func.jvp`; the score must be differentiable in ``t``).

**Jacobian–vector products.** The Hutchinson products ``v^T J v`` (``J = grad_x s``) are computed in reverse mode
(``divergence_ad="reverse"``: ``(J^T v) · v`` from one ``autograd.grad`` with ``create_graph=True``, the original)
or in forward mode (``"forward"``: ``J v`` from :func:`torch.func.jvp`, whose primal output is also the score, so
no separate forward pass is needed). Both results stay on the autograd graph: ``grad_x B`` and the parameter
gradient of the loss back-propagate through ``torch.func.jvp`` (checked against reverse mode in the tests).

Differences from the original, all deliberate: the drift is read from ``sde.sde`` (the original hard-codes VP;
its VE branch omits it and crashes), ``div(f)`` is kept in ``B`` (estimated like ``div(s)``; its ``x``-gradient
vanishes for the linear drifts of VE / VP / sub-VP / PSLD / CLD), and every option is honoured and validated.

:func:`fpe_residual` is the evaluation metric: the mean squared vector residual per dimension on perturbed data.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..sdes.base import SDE, batch_broadcast
from ..sdes.phase_space import RecipeSDE, apply_blocks
from .dsm import _check_noise, _score_fn_of, sde_loss

MODES = ("both", "scalar", "vector")
WEIGHTINGS = ("constant", "convention", "ll")
DIVERGENCES = ("hutchinson", "exact")
DIVERGENCE_ADS = ("reverse", "forward")
TIME_DERIVATIVES = ("finite_difference", "autograd")


class FPTerms(NamedTuple):
    """The two FP-Diffusion terms; the one a ``mode`` does not ask for is ``None``."""

    vector: Tensor | None
    scalar: Tensor | None


class FPEResidual(NamedTuple):
    """Result of :func:`fpe_residual`.

    ``times`` ``(n,)``; ``per_time`` ``(n,)``: mean over the data of ``||r||^2 / D`` at each time;
    ``per_time_stderr`` ``(n,)``: its standard error over the data; ``mean``: the mean over data and times;
    ``stderr``: its standard error (over the data of the per-example time averages, so correlations between times
    of the same example are accounted for); ``per_example`` ``(N,)``: the per-example time averages.
    """

    times: Tensor
    per_time: Tensor
    per_time_stderr: Tensor
    mean: float
    stderr: float
    per_example: Tensor


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values are: {', '.join(valid)}")


def _divergence(fn: Any, x: Tensor, out: Tensor | None, method: str, probes: Tensor | None,
                ad: str = "reverse", weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``tr(W d fn / dx)`` per example, shape ``(B,)``, keeping the graph, and ``fn(x)``.

    ``W = diag(weight)`` (``weight`` broadcastable to ``x`` and constant in ``x``; ``None`` is ``I``: the plain
    divergence). ``out`` is ``fn(x)`` already computed from ``x`` (``None``: computed here; in forward mode it is
    the primal output of the first product). ``exact``: ``sum_j W_jj d fn_j / d x_j``, one backward pass
    (``ad="reverse"``) or one :func:`torch.func.jvp` (``"forward"``) per dimension. ``hutchinson``: the mean over
    the probes ``v`` (shape ``(P, *x.shape)``) of ``v^T W (d fn / dx) v`` (Hutchinson 1989), unbiased for
    ``E[v v^T] = I``; reverse mode forms ``(d fn / dx)^T (W v)`` with ``autograd.grad``, forward mode ``(d fn / dx) v``
    with ``torch.func.jvp``.
    """
    B = x.shape[0]
    zeros = torch.zeros(B, dtype=x.dtype, device=x.device)
    if out is not None and not out.requires_grad:  # e.g. VE's zero drift: no dependence on x
        return zeros, out
    if ad == "forward":
        if method == "exact":
            D = x[0].numel()
            basis = torch.eye(D, dtype=x.dtype, device=x.device)
            w = None if weight is None else torch.broadcast_to(weight, x.shape).reshape(B, D)
            div = zeros
            for j in range(D):
                tangent = basis[j].expand(B, D).reshape(x.shape)
                o, jv = torch.func.jvp(fn, (x,), (tangent,))
                out = o if out is None else out
                col = jv.reshape(B, D)[:, j]
                div = div + (col if w is None else w[:, j] * col)
            return div, out
        div = zeros
        for v in probes:
            o, jv = torch.func.jvp(fn, (x,), (v,))
            out = o if out is None else out
            wv = v if weight is None else weight * v
            div = div + (jv * wv).reshape(B, -1).sum(-1)
        return div / probes.shape[0], out
    if out is None:
        out = fn(x)
    if not out.requires_grad:  # e.g. VE's zero drift: no dependence on x
        return zeros, out
    if method == "exact":
        flat = out.reshape(B, -1)
        w = None if weight is None else torch.broadcast_to(weight, x.shape).reshape(B, -1)
        div = zeros
        for j in range(flat.shape[1]):
            if w is not None and not bool((w[:, j] != 0).any()):
                continue  # no diffusion on this coordinate (CLD's position block)
            grad = torch.autograd.grad(flat[:, j].sum(), x, create_graph=True, allow_unused=True)[0]
            if grad is not None:
                col = grad.reshape(B, -1)[:, j]
                div = div + (col if w is None else w[:, j] * col)
        return div, out
    div = zeros
    for v in probes:
        wv = v if weight is None else weight * v
        grad = torch.autograd.grad((out * wv).sum(), x, create_graph=True, allow_unused=True)[0]
        if grad is not None:
            div = div + (grad * v).reshape(B, -1).sum(-1)
    return div / probes.shape[0], out


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


_MOMENTUM_ONLY = ("the score Fokker-Planck residual needs the score of every block of z = [x, m]; blocks='momentum' "
                  "models predict only the momentum block (valid for the regulariser: blocks='all')")


def _check_full_score(model: Any) -> None:
    """The score FPE couples every block of a phase-space score; a momentum-only model has none of the others."""
    if getattr(model, "blocks", "all") == "momentum":
        raise ValueError(_MOMENTUM_ONLY)


def _probe_draws(probes: Tensor | None, x_t: Tensor, n_probes: int, generator: torch.Generator | None) -> Tensor:
    if probes is None:
        return torch.randn((n_probes, *x_t.shape), generator=generator, dtype=x_t.dtype, device=x_t.device)
    if probes.shape == x_t.shape:
        return probes.unsqueeze(0)
    if probes.shape[1:] != x_t.shape:
        raise ValueError(f"probes must have shape (P, {', '.join(map(str, x_t.shape))}) or that of x_t, "
                         f"got {tuple(probes.shape)}")
    return probes


class _Core(NamedTuple):
    scalar_bracket: Tensor         # (B,): B without div(f), from the first probe set
    residuals: list[Tensor]        # (B, D) per probe set: d_t s - grad B
    g: Tensor                      # (B,): per-example diffusion scale (the ``convention`` weight)
    g2: Tensor                     # (B,): per-example squared diffusion scale (the ``ll`` weight)


def _fp_core(score_fn, sde: SDE, x_t: Tensor, t: Tensor, *, vector: bool, divergence: str, divergence_ad: str,
             probe_sets: list[Tensor | None], time_derivative: str, h_s: float, h_d: float, t_min: float,
             t_max: float) -> _Core:
    """Scalar bracket and vector residuals (one per probe set, sharing ``s`` and ``d_t s``) at ``(x_t, t)``."""
    B = x_t.shape[0]
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)

        def score_x(xx: Tensor) -> Tensor:
            return score_fn(xx, t)

        def drift_x(xx: Tensor) -> Tensor:
            return sde.sde(xx, t)[0]

        drift, g = sde.sde(x, t)
        if g.dim() == 1:  # scalar SDE: Sigma = g^2 I, the original's formulas
            weight, g_w, g2 = None, g, g**2
        elif g.dim() == x.dim():  # per-channel diffusion (phase space): Sigma = diag(G^2), constant in x
            weight = g**2
            g2 = torch.broadcast_to(weight, x.shape).reshape(B, -1).mean(-1)
            g_w = g2.sqrt()
        else:
            raise NotImplementedError(f"fp_regularizer needs a diffusion of shape ({B},) or broadcastable to the state "
                                      f"{tuple(x.shape)}, got {tuple(g.shape)} from {type(sde).__name__}")
        s = None if divergence_ad == "forward" else score_x(x)
        f_dot_s = None
        scalar_bracket, residuals, ds_dt = None, [], None
        for probes in probe_sets:
            div_s, s = _divergence(score_x, x, s, divergence, probes, divergence_ad, weight)
            if f_dot_s is None:
                f_dot_s = (drift * s).reshape(B, -1).sum(-1)
            if weight is None:
                s_sq = s.reshape(B, -1).square().sum(-1)
                bracket = 0.5 * g2 * (div_s + s_sq) - f_dot_s  # B without div(f), shape (B,)
            else:
                bracket = 0.5 * (div_s + (weight * s * s).reshape(B, -1).sum(-1)) - f_dot_s
            if scalar_bracket is None:
                scalar_bracket = bracket
            if not vector:
                break
            div_f = _divergence(drift_x, x, drift, divergence, probes, divergence_ad)[0]
            grad_bracket = torch.autograd.grad((bracket - div_f).sum(), x, create_graph=True)[0]
            if ds_dt is None:
                if time_derivative == "finite_difference":
                    ds_dt = _time_derivative_fd(score_fn, x, t, s, h_s, h_d, t_min, t_max)
                else:
                    try:
                        ds_dt = torch.func.jvp(lambda tt: score_fn(x, tt), (t,), (torch.ones_like(t),))[1]
                    except NotImplementedError as e:  # e.g. torch.unique in the phase-space kernel
                        raise NotImplementedError(
                            "time_derivative='autograd' needs a score that is differentiable in t in forward mode "
                            f"({str(e).splitlines()[0]}); use time_derivative='finite_difference'") from e
            residuals.append((ds_dt - grad_bracket).reshape(B, -1))
    return _Core(scalar_bracket, residuals, g_w, g2)


def _validate(mode: str, weighting: str, divergence: str, divergence_ad: str, time_derivative: str, n_probes: int,
              h_s: float, h_d: float, m: float) -> None:
    _check_choice("mode", mode, MODES)
    _check_choice("weighting", weighting, WEIGHTINGS)
    _check_choice("divergence", divergence, DIVERGENCES)
    _check_choice("divergence_ad", divergence_ad, DIVERGENCE_ADS)
    _check_choice("time_derivative", time_derivative, TIME_DERIVATIVES)
    if not (isinstance(n_probes, int) and not isinstance(n_probes, bool) and n_probes >= 1):
        raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")
    if not (h_s > 0 and h_d > 0):
        raise ValueError(f"finite-difference steps must be positive, got h_s={h_s!r}, h_d={h_d!r}")
    if not m > 0:
        raise ValueError(f"m must be positive, got {m!r}")


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
    divergence_ad: str = "reverse",
    time_derivative: str = "finite_difference",
    h_s: float = 1e-3,
    h_d: float = 5e-4,
    probes: Tensor | None = None,
    generator: torch.Generator | None = None,
    t_min: float | None = None,
    t_max: float | None = None,
) -> FPTerms:
    """The FP-Diffusion vector residual and scalar term at the points ``x_t`` and times ``t`` (module docstring;
    Lai et al. 2023, Prop. 3.1 and the regulariser of eq. 11).

    Args:
        score_fn: ``score_fn(x, t)``, or an object with ``.score_fn``; differentiated twice, so it must be
            built from differentiable torch operations.
        sde: a forward SDE with a per-example scalar diffusion ``g(t)`` of shape ``(B,)`` (VE, VP, sub-VP), or a
            diffusion constant in ``x`` broadcastable to the state (:class:`~scoresde.sdes.RecipeSDE`: PSLD, CLD;
            ``x_t`` is then the state ``z = [x, m]`` and ``score_fn`` the score of every block).
        x_t: points, shape ``(B, ...)`` with ``D = prod(...)`` (the original uses the perturbed data).
        t: times, shape ``(B,)``.
        mode: ``"both"`` (the original's ``scalar_fp='both'``), ``"vector"`` (``'False'``) or ``"scalar"``
            (``'True'``); the term not asked for is ``None`` and not computed.
        weighting: time weight of the vector term: ``"constant"`` (1), ``"convention"`` (``g``), ``"ll"`` (``g^2``);
            phase space: ``sqrt(tr(Sigma) / D)`` and ``tr(Sigma) / D``.
        m: power of the per-example residual norm (2 in the FP-Diffusion configs).
        normalize: divide the vector term by ``D^m``.
        divergence: ``"hutchinson"`` (the original's single-probe estimate for ``n_probes=1``) or ``"exact"``
            (``D`` Jacobian products; for small ``D`` and tests).
        n_probes: Hutchinson probes averaged per example.
        divergence_ad: how the Jacobian products of the divergence are formed: ``"reverse"`` (vector–Jacobian
            products by ``autograd.grad``, the original) or ``"forward"`` (Jacobian–vector products by
            :func:`torch.func.jvp`; same value, differentiable for training too).
        time_derivative: ``"finite_difference"`` (the original's rule, see :func:`_time_derivative_fd`) or
            ``"autograd"`` (exact, forward mode through :func:`torch.func.jvp`, also through the phase-space
            matrix-exponential kernels; a score without a forward-mode derivative raises ``NotImplementedError``).
        h_s: backward step of the finite difference (``1e-3`` in the original).
        h_d: forward step (``5e-4`` in the original).
        probes: Hutchinson probes to replay, shape ``(n_probes, *x_t.shape)`` or ``x_t.shape``; standard normal
            from ``generator`` when ``None`` (the original's ``randn_like``).
        generator: random generator for the probes.
        t_min, t_max: interval the finite difference must stay in; default ``[min(1e-5, min t), T]``.

    Returns:
        ``FPTerms(vector, scalar)``, 0-d tensors (or ``None``), differentiable with respect to the parameters.
    """
    _validate(mode, weighting, divergence, divergence_ad, time_derivative, n_probes, h_s, h_d, m)
    B = x_t.shape[0]
    if t.shape != (B,):
        raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
    t_max = sde.T if t_max is None else float(t_max)
    t_min = min(1e-5, float(t.min())) if t_min is None else float(t_min)
    if time_derivative == "finite_difference" and mode != "scalar" and t_max - t_min < h_s + h_d:
        raise ValueError(f"[t_min, t_max] = [{t_min}, {t_max}] is shorter than h_s + h_d = {h_s + h_d}")
    if isinstance(sde, RecipeSDE):
        _check_full_score(score_fn)
    if divergence == "hutchinson":
        probes = _probe_draws(probes, x_t, n_probes, generator)
    else:
        probes = None
    core = _fp_core(_score_fn_of(score_fn), sde, x_t, t, vector=mode != "scalar", divergence=divergence,
                    divergence_ad=divergence_ad, probe_sets=[probes], time_derivative=time_derivative, h_s=h_s,
                    h_d=h_d, t_min=t_min, t_max=t_max)
    scalar = torch.linalg.vector_norm(core.scalar_bracket, 2) if mode != "vector" else None
    if mode == "scalar":
        return FPTerms(None, scalar)
    residual = core.residuals[0]
    per_example = torch.linalg.vector_norm(residual, 2, dim=1) ** m
    weight = {"constant": torch.ones_like(core.g), "convention": core.g, "ll": core.g2}[weighting]
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
    ``divergence_ad``, ``time_derivative``, ``h_s``, ``h_d``, ``t_min``, ``t_max``); ``t_min`` defaults to ``eps``.
    Phase-space SDEs: :func:`phase_space_fp_loss`.
    """
    _check_choice("mode", mode, MODES)
    if isinstance(sde, RecipeSDE):
        raise ValueError(f"fp_loss adds the regulariser to scalar-SDE DSM; for {type(sde).__name__} use "
                         "phase_space_fp_loss")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    B = batch.shape[0]
    if t is None:
        t = torch.rand(B, generator=generator, device=batch.device, dtype=batch.dtype) * (sde.T - eps) + eps
    z = _check_noise(noise, batch, generator)
    loss = sde_loss(model, sde, batch, t=t, noise=z, reduce_mean=reduce_mean,
                    likelihood_weighting=likelihood_weighting, eps=eps)
    if not _regularizes(mode, alpha, beta):
        return loss
    mean, std = sde.marginal_prob(batch, t)
    x_t = mean + batch_broadcast(std, batch) * z
    return _add_regularizer(loss, model, sde, x_t, t, alpha=alpha, beta=beta, mode=mode, weighting=weighting, m=m,
                            probes=probes, generator=generator, eps=eps, options=regularizer_options)


def _regularizes(mode: str, alpha: float, beta: float) -> bool:
    """Whether ``mode`` uses a term with a non-zero weight (else the loss is the base loss alone)."""
    return (mode in ("both", "vector") and alpha != 0) or (mode in ("both", "scalar") and beta != 0)


def _add_regularizer(loss: Tensor, model: Any, sde: SDE, x_t: Tensor, t: Tensor, *, alpha: float, beta: float,
                     mode: str, weighting: str, m: float, probes: Tensor | None, generator: torch.Generator | None,
                     eps: float, options: dict[str, Any]) -> Tensor:
    """``loss + alpha · vec + beta · scalar`` (the terms ``mode`` uses) of :func:`fp_regularizer` at ``(x_t, t)``;
    the finite difference stays above ``t_min = eps`` unless ``options`` say otherwise."""
    options.setdefault("t_min", eps)
    terms = fp_regularizer(model, sde, x_t, t, mode=mode, weighting=weighting, m=m, probes=probes,
                           generator=generator, **options)
    if terms.vector is not None:
        loss = loss + alpha * terms.vector
    if terms.scalar is not None:
        loss = loss + beta * terms.scalar
    return loss


def phase_space_fp_loss(
    model: Any,
    sde: RecipeSDE,
    batch: Tensor,
    *,
    alpha: float = 0.15,
    beta: float = 0.01,
    mode: str = "both",
    weighting: str = "ll",
    m: float = 2,
    blocks: str = "all",
    reduce_mean: bool = False,
    eps: float = 1e-5,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    momentum: Tensor | None = None,
    probes: Tensor | None = None,
    generator: torch.Generator | None = None,
    min_time: float = 0.0,
    **regularizer_options: Any,
) -> Tensor:
    """HSM/DSM phase-space loss plus the FP-Diffusion regulariser of the phase-space score FPE (module docstring).

    ``loss = phase_space_loss + alpha · vec + beta · scalar`` (terms as in :func:`fp_loss` for ``mode``), with
    :func:`~scoresde.objectives.phase_space.phase_space_loss` (mode ``sde.score_matching``, ``blocks``,
    ``reduce_mean``, ``eps``) and :func:`fp_regularizer` evaluated at the same perturbed state
    ``z_t = Phi(t) z_0 + L_t noise`` and times ``t``. Draws come in :func:`phase_space_loss`'s order, times, the
    DSM initial momentum, noise, then the Hutchinson probes, from ``generator``, or are replayed from ``t``,
    ``momentum``, ``noise``, ``probes``. Zero weights on the terms ``mode`` uses give exactly
    :func:`phase_space_loss`. The regulariser needs the score of every block (``blocks="all"``): a momentum-only
    network's score is zero on the data block, which no Fokker–Planck equation satisfies.

    ``min_time``: only examples with ``t >= min_time`` enter the regulariser (its means are over them; with none,
    the regulariser is skipped). The default ``0`` regularises every example, as :func:`fp_loss`. Near ``t = 0`` the
    phase-space kernel is stiff (CLD's position variance grows like ``t^3``), so the finite-difference residual of
    an untrained toy network at ``t < 0.01`` is ``1e4``-``1e7`` times its value on ``[0.01, 1]`` (measured on
    ``toy/gaussian_mixture_psld`` / ``_cld``, float32) and dominates the loss; ``min_time=0.01`` removes that.

    ``regularizer_options`` go to :func:`fp_regularizer`; ``t_min`` defaults to ``eps``.
    """
    from .phase_space import BLOCKS, initial_state, phase_space_loss

    _check_choice("mode", mode, MODES)
    _check_choice("blocks", blocks, BLOCKS)
    if not isinstance(sde, RecipeSDE):
        raise ValueError(f"phase_space_fp_loss needs a RecipeSDE (PSLD, CLD), got {type(sde).__name__}; "
                         "use fp_loss for scalar SDEs")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    B = batch.shape[0]
    if t is None:
        t = torch.rand(B, generator=generator, device=batch.device, dtype=batch.dtype) * (sde.T - eps) + eps
    z0 = initial_state(sde, batch, momentum, generator)
    if noise is None:
        noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype, device=z0.device)
    replay = None if sde.score_matching == "hsm" else z0[:, batch.shape[1]:]
    loss = phase_space_loss(model, sde, batch, t=t, noise=noise, momentum=replay, blocks=blocks,
                            reduce_mean=reduce_mean, eps=eps)
    if not _regularizes(mode, alpha, beta):
        return loss
    if blocks == "momentum":
        raise ValueError(_MOMENTUM_ONLY)
    if not 0 <= min_time < sde.T:
        raise ValueError(f"min_time must lie in [0, T={sde.T}), got {min_time!r}")
    if probes is None and regularizer_options.get("divergence", "hutchinson") == "hutchinson":
        n_probes = regularizer_options.pop("n_probes", 1)
        probes = torch.randn((n_probes, *z0.shape), generator=generator, dtype=z0.dtype, device=z0.device)
    mean, L = sde.marginal_prob(z0, t)
    z_t = mean + apply_blocks(L, noise)
    if min_time > 0:
        keep = t >= min_time
        if not bool(keep.any()):
            return loss
        z_t, t = z_t[keep], t[keep]
        if probes is not None:
            probes = (probes.unsqueeze(0) if probes.shape == z0.shape else probes)[:, keep]
    return _add_regularizer(loss, model, sde, z_t, t, alpha=alpha, beta=beta, mode=mode, weighting=weighting, m=m,
                            probes=probes, generator=generator, eps=eps, options=regularizer_options)


def fpe_residual(
    score_fn: Any,
    sde: SDE,
    x0: Tensor,
    *,
    n_times: int = 10,
    t_grid: Tensor | None = None,
    eps: float = 1e-3,
    divergence: str = "hutchinson",
    n_probes: int = 1,
    divergence_ad: str = "reverse",
    unbiased: bool = True,
    time_derivative: str = "finite_difference",
    h_s: float = 1e-3,
    h_d: float = 5e-4,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> FPEResidual:
    """How far a score model is from solving the score Fokker–Planck equation on perturbed data (a metric).

    For each time ``t_i`` of the grid and each example ``x_0`` a point ``x_t ~ p(x_t | x_0)`` is drawn (phase
    space: ``z_0`` of the SDE's score-matching mode, then ``z_t ~ p(z_t | z_0)``) and the vector residual
    ``r = d_t s - grad_x B`` of :func:`fp_regularizer` (Lai et al. 2023, Prop. 3.1) is evaluated; the value is
    ``||r||^2 / D`` (mean squared residual per dimension), averaged over the data at each time and over the grid.
    Measured on the 2-D mixture (VP, 128 points, 6 times in ``[1e-3, 1]``, exact divergence): the exact score gives
    ``1.4e-8`` (finite-difference error only), a small MLP after 200 DSM steps ``4.5 ± 0.25``. Phase space: the
    finite difference is accurate only where the kernel is not stiff; the exact PSLD/CLD mixture score gives ``1e4``
    at ``t = 1e-3``, ``0.6`` at ``1e-2``, ``3e-4`` at ``3e-2`` and ``< 1e-6`` from ``0.1`` (default steps; the error
    falls like ``h^2``), so choose ``eps`` or ``t_grid`` accordingly (``t_grid = linspace(0.05, 0.95, 5)``, 64
    points, one probe per set: PSLD's exact score ``-0.002 ± 0.36``, the score rescaled by 1.2 ``142 ± 9``).

    Args:
        score_fn: ``score_fn(x, t)`` or an object with ``.score_fn``.
        sde: the model's forward SDE (scalar or :class:`~scoresde.sdes.RecipeSDE`).
        x0: clean data in the model's range, ``(N, ...)`` (for phase space the data ``x``, not the state).
        n_times: grid size when ``t_grid`` is ``None``: ``t_grid = linspace(eps, T, n_times)`` (both ends in).
        t_grid: explicit times in ``(0, T]`` (1-D); overrides ``n_times`` and ``eps``.
        eps: first time of the default grid (``1e-3``, the samplers' end time: below it the VP score is
            dominated by the data's discreteness and the residual by finite-difference error).
        divergence, n_probes, divergence_ad, time_derivative, h_s, h_d: as for :func:`fp_regularizer`; the finite
            difference stays in ``[min(t_grid), T]`` (one-sided at the ends).
        unbiased: with ``divergence="hutchinson"``, use two independent probe sets and report ``r_1 · r_2 / D``,
            an unbiased estimate of ``||r||^2 / D`` (it can be slightly negative); ``False`` reports
            ``||r_1||^2 / D``, which the probes' variance biases upwards (even for the exact score). Ignored for
            ``divergence="exact"``.
        batch_size: examples per evaluation (the draws do not depend on it).
        generator: random generator; per grid time, in order: the DSM initial momentum (phase space, DSM mode),
            the noise of ``x_t`` (``N`` states), then the probes (``(2 or 1, n_probes, N, ...)``).

    Returns:
        :class:`FPEResidual` (detached, float64 statistics).
    """
    _validate("vector", "constant", divergence, divergence_ad, time_derivative, n_probes, h_s, h_d, 2)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if t_grid is None:
        if not (isinstance(n_times, int) and not isinstance(n_times, bool) and n_times >= 1):
            raise ValueError(f"n_times must be a positive integer, got {n_times!r}")
        if not 0 < eps < sde.T:
            raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
        t_grid = torch.linspace(eps, sde.T, n_times, dtype=torch.float64)
    t_grid = torch.as_tensor(t_grid, dtype=torch.float64).flatten().cpu()
    if len(t_grid) == 0 or not bool(((t_grid > 0) & (t_grid <= sde.T)).all()):
        raise ValueError(f"t_grid must be non-empty with times in (0, T={sde.T}], got {t_grid.tolist()}")
    t_min, t_max = float(t_grid.min()), sde.T
    if time_derivative == "finite_difference" and t_max - t_min < h_s + h_d:
        raise ValueError(f"[min(t_grid), T] = [{t_min}, {t_max}] is shorter than h_s + h_d = {h_s + h_d}")
    phase_space = isinstance(sde, RecipeSDE)
    if phase_space:
        _check_full_score(score_fn)
    fn = _score_fn_of(score_fn)
    N = x0.shape[0]
    n_sets = 2 if (unbiased and divergence == "hutchinson") else 1
    values = torch.empty(N, len(t_grid), dtype=torch.float64)
    for i, ti in enumerate(t_grid.tolist()):
        t = torch.full((N,), ti, dtype=x0.dtype, device=x0.device)
        if phase_space:
            from .phase_space import initial_state

            z0 = initial_state(sde, x0, None, generator)
            noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype, device=z0.device)
            mean, L = sde.marginal_prob(z0, t)
            x_t = mean + apply_blocks(L, noise)
        else:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
            mean, std = sde.marginal_prob(x0, t)
            x_t = mean + batch_broadcast(std, x0) * noise
        probes = (torch.randn((n_sets, n_probes, *x_t.shape), generator=generator, dtype=x_t.dtype,
                              device=x_t.device) if divergence == "hutchinson" else None)
        for start in range(0, N, batch_size):
            sl = slice(start, min(N, start + batch_size))
            sets = [None] if probes is None else [probes[k][:, sl] for k in range(n_sets)]
            core = _fp_core(fn, sde, x_t[sl], t[sl], vector=True, divergence=divergence, divergence_ad=divergence_ad,
                            probe_sets=sets, time_derivative=time_derivative, h_s=h_s, h_d=h_d, t_min=t_min,
                            t_max=t_max)
            r = [res.detach().double() for res in core.residuals]
            sq = (r[0] * r[-1]).sum(-1) / r[0].shape[1]
            values[sl, i] = sq.cpu()
    per_time = values.mean(0)
    per_example = values.mean(1)
    if N > 1:
        per_time_se = values.std(0) / math.sqrt(N)
        se = float(per_example.std() / math.sqrt(N))
    else:
        per_time_se, se = torch.full_like(per_time, float("nan")), float("nan")
    return FPEResidual(t_grid, per_time, per_time_se, float(per_example.mean()), se, per_example)
