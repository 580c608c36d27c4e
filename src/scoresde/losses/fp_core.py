"""The maths of the score Fokker–Planck regulariser of FP-Diffusion (Lai et al., ICML 2023, arXiv 2210.04296):
the residual and the two terms at given points. The losses that add it are in :mod:`scoresde.losses.fp`, the
metric in :mod:`scoresde.losses.fpe`.

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

**Jacobian–vector products** (the shared engine :func:`scoresde.numerics.divergence`). The Hutchinson products
``v^T J v`` (``J = grad_x s``) are computed in reverse mode
(``divergence_ad="reverse"``: ``(J^T v) · v`` from one ``autograd.grad`` with ``create_graph=True``, the original)
or in forward mode (``"forward"``: ``J v`` from :func:`torch.func.jvp`, whose primal output is also the score, so
no separate forward pass is needed). Both results stay on the autograd graph: ``grad_x B`` and the parameter
gradient of the loss back-propagate through ``torch.func.jvp`` (checked against reverse mode in the tests).

Differences from the original, all deliberate: the drift is read from ``sde.sde`` (the original hard-codes VP;
its VE branch omits it and crashes), ``div(f)`` is kept in ``B`` (estimated like ``div(s)``; its ``x``-gradient
vanishes for the linear drifts of VE / VP / sub-VP / PSLD / CLD), and every option is honoured and validated.

"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..models.adapter import check_cond
from ..numerics.checks import check_choice, check_count
from ..numerics.divergence import (
    AD_MODES,
    ESTIMATORS,
    check_ad,
    divergence,
    draw_probes,
    estimator_name,
    is_hutchinson,
)
from ..numerics.times import check_times
from ..sdes.base import SDE, batch_broadcast
from .dsm import check_reduction, model_of

MODES = ("both", "scalar", "vector")
WEIGHTINGS = ("constant", "convention", "ll")
DIVERGENCES = ("hutchinson", "exact", *(e for e in ESTIMATORS if e != "exact"))
"""Accepted ``divergence`` names: the historical ``hutchinson`` (Gaussian probes) and the shared vocabulary of
:mod:`scoresde.numerics.divergence`."""
DIVERGENCE_ADS = AD_MODES
TIME_DERIVATIVES = ("finite_difference", "autograd")

_divergence = divergence  # the engine under the name the tests and older code import from here


class FPTerms(NamedTuple):
    """The two FP-Diffusion terms; the one a ``mode`` does not ask for is ``None``."""

    vector: Tensor | None
    scalar: Tensor | None


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


def check_full_score(model: Any) -> None:
    """The score FPE couples every block of a phase-space score; a momentum-only model has none of the others."""
    if getattr(model, "blocks", "all") == "momentum":
        raise ValueError(_MOMENTUM_ONLY)


def check_divergence(name: str) -> str:
    """The canonical estimator of a ``divergence`` name (:data:`DIVERGENCES`), or a ``ValueError`` listing them."""
    try:
        return estimator_name(name)
    except ValueError:
        raise ValueError(f"unknown divergence {name!r}; valid values are: {', '.join(DIVERGENCES)}") from None


def probe_sets(probes: Tensor | None, x_t: Tensor, estimator: str, n_probes: int,
               generator: torch.Generator | None) -> Tensor | None:
    """Hutchinson probes ``(P, *x_t.shape)``: ``probes`` (a single ``x_t``-shaped probe is ``P = 1``) or
    :func:`~scoresde.numerics.draw_probes` from ``generator``; ``None`` for the exact divergence."""
    if not is_hutchinson(estimator):
        return None
    if probes is None:
        return draw_probes(x_t, estimator, n_probes, generator)
    if probes.shape == x_t.shape:
        return probes.unsqueeze(0)
    if probes.shape[1:] != x_t.shape:
        raise ValueError(f"probes must have shape (P, {', '.join(map(str, x_t.shape))}) or that of x_t, "
                         f"got {tuple(probes.shape)}")
    return probes


class Core(NamedTuple):
    """What :func:`fp_core` computes at ``(x_t, t)``."""

    scalar_bracket: Tensor         # (B,): B without div(f), from the first probe set
    residuals: list[Tensor]        # (B, D) per probe set: d_t s - grad B
    g: Tensor                      # (B,): per-example diffusion scale (the ``convention`` weight)
    g2: Tensor                     # (B,): per-example squared diffusion scale (the ``ll`` weight)


def fp_core(score_fn, sde: SDE, x_t: Tensor, t: Tensor, *, vector: bool, estimator: str, divergence_ad: str,
            probe_sets: list[Tensor | None], time_derivative: str, h_s: float, h_d: float, t_min: float,
            t_max: float) -> Core:
    """Scalar bracket ``B - div f`` and vector residuals ``d_t s - grad_x B`` (Lai et al. 2023, Prop. 3.1; one per
    probe set, sharing ``s`` and ``d_t s``) at ``(x_t, t)``; ``score_fn(x, t)`` already carries any conditioning."""
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
            div_s, s = divergence(score_x, x, s, estimator, probes, divergence_ad, weight)
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
            div_f = divergence(drift_x, x, drift, estimator, probes, divergence_ad)[0]
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
    return Core(scalar_bracket, residuals, g_w, g2)


def validate(mode: str, weighting: str, divergence: str, divergence_ad: str, time_derivative: str, n_probes: int,
             h_s: float, h_d: float, m: float) -> str:
    """Check the regulariser's options; returns the canonical divergence estimator."""
    check_choice("mode", mode, MODES)
    check_choice("weighting", weighting, WEIGHTINGS)
    estimator = check_divergence(divergence)
    check_ad(divergence_ad)
    check_choice("time_derivative", time_derivative, TIME_DERIVATIVES)
    check_count("n_probes", n_probes)
    if not (h_s > 0 and h_d > 0):
        raise ValueError(f"finite-difference steps must be positive, got h_s={h_s!r}, h_d={h_d!r}")
    if not m > 0:
        raise ValueError(f"m must be positive, got {m!r}")
    return estimator


def conditioned(model: Any, cond: dict[str, Any]):
    """``score_fn(x, t)`` of an adapter with the conditioning ``cond`` bound (the adapter itself without any)."""
    if not cond:
        return model.score
    return lambda x, t: model.score(x, t, **cond)


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
    cond: Mapping[str, Any] | None = None,
    reduction: str = "mean",
) -> FPTerms:
    """The FP-Diffusion vector residual and scalar term at the points ``x_t`` and times ``t`` (module docstring;
    Lai et al. 2023, Prop. 3.1 and the regulariser of eq. 11). Use it to add the regulariser to a loss of your own
    (:func:`~scoresde.losses.fp.fp_loss` adds it to DSM) or to inspect the residual at chosen points.

    Args:
        score_fn: a model adapter, ``score_fn(x, t)``, or an object with ``.score_fn``; differentiated twice, so it
            must be built from differentiable torch operations. An adapter's SDE must be ``sde``.
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
        divergence: ``"hutchinson"`` (the original's single-probe estimate for ``n_probes=1``: Gaussian probes, also
            called ``"hutchinson-gaussian"``), ``"hutchinson-rademacher"`` (sign probes) or ``"exact"`` (``D``
            Jacobian products; for small ``D`` and tests): the vocabulary of :mod:`scoresde.numerics.divergence`.
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
        cond: conditioning inputs, batch-first tensors passed to the model as keyword arguments.
        reduction: ``"mean"`` (the terms above, 0-d) or ``"none"``: per-example shares ``(B,)`` whose batch mean is
            the ``"mean"`` value: ``w_b ||r_b||^m (/ D^m)`` for the vector term and ``B c_b^2 / ||c||_2`` for the
            scalar term ``||c||_2`` (a norm over the batch, so the shares of one example depend on the others).

    Returns:
        ``FPTerms(vector, scalar)``, 0-d tensors (``(B,)`` with ``reduction="none"``) or ``None``, differentiable
        with respect to the parameters.
    """
    estimator = validate(mode, weighting, divergence, divergence_ad, time_derivative, n_probes, h_s, h_d, m)
    check_reduction(reduction)
    B = x_t.shape[0]
    check_times(t, B)
    model = model_of(sde, score_fn)
    cond = check_cond(cond, B)
    t_max = sde.T if t_max is None else float(t_max)
    t_min = min(1e-5, float(t.min())) if t_min is None else float(t_min)
    if time_derivative == "finite_difference" and mode != "scalar" and t_max - t_min < h_s + h_d:
        raise ValueError(f"[t_min, t_max] = [{t_min}, {t_max}] is shorter than h_s + h_d = {h_s + h_d}")
    check_full_score(model)
    probes = probe_sets(probes, x_t, estimator, n_probes, generator)
    core = fp_core(conditioned(model, cond), sde, x_t, t, vector=mode != "scalar", estimator=estimator,
                   divergence_ad=divergence_ad, probe_sets=[probes], time_derivative=time_derivative, h_s=h_s,
                   h_d=h_d, t_min=t_min, t_max=t_max)
    scalar = None
    if mode != "vector":
        scalar = torch.linalg.vector_norm(core.scalar_bracket, 2)
        if reduction == "none":  # each example's share of the batch norm: sum_b c_b^2 / ||c|| = ||c||
            scalar = B * core.scalar_bracket.square() / scalar.clamp_min(torch.finfo(scalar.dtype).tiny)
    if mode == "scalar":
        return FPTerms(None, scalar)
    residual = core.residuals[0]
    per_example = torch.linalg.vector_norm(residual, 2, dim=1) ** m
    weight = {"constant": torch.ones_like(core.g), "convention": core.g, "ll": core.g2}[weighting]
    if reduction == "none":
        vector = weight * per_example
        return FPTerms(vector / residual.shape[1] ** m if normalize else vector, scalar)
    vector = (weight * per_example).mean()
    if normalize:
        vector = vector / residual.shape[1] ** m
    return FPTerms(vector, scalar)


