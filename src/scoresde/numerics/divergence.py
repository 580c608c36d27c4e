"""One divergence engine for the likelihood (the probability-flow ODE's ``div f``) and the FP-Diffusion regulariser
(``div s`` and ``tr(Sigma grad s)``).

``tr(W d fn / dx)`` per example, ``W = diag(weight)`` (``None``: ``I``, the plain divergence), by

* ``"exact"``: ``sum_j W_jj d fn_j / d x_j``, one Jacobian product per dimension (``D`` times the cost);
* ``"hutchinson-rademacher"`` / ``"hutchinson-gaussian"``: the mean over probes ``v`` of ``v^T W (d fn / dx) v``
  (Hutchinson 1989; Skilling 1989), unbiased for ``E[v v^T] = I``. Rademacher probes (``v_j = +-1``) have the
  smaller variance (``2 sum_{i != j} A_ij^2`` against ``2 ||A||_F^2``).

The vocabulary is shared: the likelihood's ``trace=`` and the regulariser's ``divergence=`` take these names; the
regulariser also keeps its historical ``"hutchinson"``, which is ``"hutchinson-gaussian"`` (the original FP-Diffusion
code's ``randn_like`` probe). The Jacobian products are formed in reverse mode (``ad="reverse"``: ``(d fn/dx)^T (W v)``
by ``autograd.grad``) or forward mode (``ad="forward"``: ``(d fn/dx) v`` by :func:`torch.func.jvp`, whose primal
output is ``fn(x)`` itself, so no separate forward pass is needed); both agree to round-off and, with
``create_graph=True``, stay differentiable (the regulariser back-propagates through them).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ESTIMATORS = ("hutchinson-rademacher", "hutchinson-gaussian", "exact")
"""Canonical estimator names (the likelihood's ``trace`` values)."""

ALIASES = {"hutchinson": "hutchinson-gaussian"}
"""Historical names: the FP regulariser's ``divergence="hutchinson"`` is a Gaussian probe."""

AD_MODES = ("reverse", "forward")
"""How the Jacobian products are formed (the regulariser's ``divergence_ad`` values)."""


def estimator_name(name: str, *, aliases: bool = True, what: str = "divergence estimator") -> str:
    """The canonical estimator for ``name`` (one of :data:`ESTIMATORS`, or with ``aliases`` one of :data:`ALIASES`);
    an unknown name is a ``ValueError`` that lists the valid ones. ``what`` names the argument in the message."""
    if name in ESTIMATORS:
        return name
    if aliases and name in ALIASES:
        return ALIASES[name]
    valid = (*ALIASES, *ESTIMATORS) if aliases else ESTIMATORS
    label = "estimators" if what.endswith("estimator") else "values"
    raise ValueError(f"unknown {what} {name!r}; valid {label} are: {', '.join(valid)}")


def check_ad(ad: str, what: str = "divergence_ad") -> str:
    """``ad`` if it is ``"reverse"`` or ``"forward"``, else a ``ValueError`` listing both."""
    if ad not in AD_MODES:
        raise ValueError(f"unknown {what} {ad!r}; valid values are: {', '.join(AD_MODES)}")
    return ad


def is_hutchinson(estimator: str) -> bool:
    """Whether ``estimator`` (any accepted name) uses random probes."""
    return estimator_name(estimator) != "exact"


def draw_probes(x: Tensor, estimator: str, n_probes: int = 1,
                generator: torch.Generator | None = None) -> Tensor | None:
    """``n_probes`` Hutchinson probes for points ``x``, shape ``(n_probes, *x.shape)`` (``None`` for ``"exact"``).

    Gaussian probes are ``torch.randn`` from ``generator``; Rademacher probes are the signs of the same draw, so both
    consume the generator identically (the likelihood's historical draws)."""
    estimator = estimator_name(estimator)
    if estimator == "exact":
        return None
    v = torch.randn((n_probes, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
    return v.sign() if estimator == "hutchinson-rademacher" else v


def divergence(
    fn: Callable[[Tensor], Tensor] | None,
    x: Tensor,
    out: Tensor | None = None,
    estimator: str = "exact",
    probes: Tensor | None = None,
    ad: str = "reverse",
    weight: Tensor | None = None,
    *,
    create_graph: bool = True,
    n_probes: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``tr(W d fn / dx)`` per example (shape ``(B,)``) and ``fn(x)`` (module docstring for the estimators).

    Use it wherever a divergence of a batch-wise map is needed: the probability-flow likelihood
    (``div f_pf``, Song et al. 2021, eq. 40), the score Fokker–Planck bracket (``div s``, ``tr(Sigma grad s)``).

    Args:
        fn: the map, ``fn(x) -> out`` of ``x``'s shape (needed in forward mode and when ``out`` is ``None``).
        x: the points, ``(B, ...)``; in reverse mode ``out`` must have been computed from it with ``requires_grad``.
        out: ``fn(x)`` if already computed (reverse mode reuses its graph); an ``out`` that does not require grad
            does not depend on ``x`` (e.g. VE's zero drift): the divergence is 0.
        estimator: a name of :data:`ESTIMATORS` or :data:`ALIASES`.
        probes: Hutchinson probes ``(P, *x.shape)``; drawn by :func:`draw_probes` (``n_probes``, ``generator``) when
            ``None``. Ignored by ``"exact"``.
        ad: ``"reverse"`` or ``"forward"``.
        weight: ``diag(W)`` broadcastable to ``x``, constant in ``x``; ``None`` for ``I``. Exact reverse mode skips
            coordinates whose weight is zero in every example (e.g. CLD's undiffused position block).
        create_graph: keep the products on the autograd graph (needed to differentiate the result; the likelihood,
            which only integrates it, passes ``False``).
    """
    estimator = estimator_name(estimator)
    check_ad(ad)
    B = x.shape[0]
    zeros = torch.zeros(B, dtype=x.dtype, device=x.device)
    if out is not None and not out.requires_grad:
        return zeros, out
    if estimator != "exact" and probes is None:
        probes = draw_probes(x, estimator, n_probes, generator)
    if ad == "forward":
        return _forward(fn, x, out, estimator, probes, weight)
    if out is None:
        out = fn(x)
    if not out.requires_grad:
        return zeros, out
    w = None if weight is None else torch.broadcast_to(weight, x.shape).reshape(B, -1)
    div = zeros
    if estimator == "exact":
        flat = out.reshape(B, -1)
        columns = [j for j in range(flat.shape[1]) if w is None or bool((w[:, j] != 0).any())]
        for n, j in enumerate(columns):
            keep = create_graph or n + 1 < len(columns)
            grad = torch.autograd.grad(flat[:, j].sum(), x, create_graph=create_graph, retain_graph=keep,
                                       allow_unused=True)[0]
            if grad is not None:
                col = grad.reshape(B, -1)[:, j]
                div = div + (col if w is None else w[:, j] * col)
        return div, out
    for n, v in enumerate(probes):
        wv = v if weight is None else weight * v
        keep = create_graph or n + 1 < probes.shape[0]
        grad = torch.autograd.grad((out * wv).sum(), x, create_graph=create_graph, retain_graph=keep,
                                   allow_unused=True)[0]
        if grad is not None:
            div = div + (grad * v).reshape(B, -1).sum(-1)
    return div / probes.shape[0], out


def _forward(fn: Callable[[Tensor], Tensor] | None, x: Tensor, out: Tensor | None, estimator: str,
             probes: Tensor | None, weight: Tensor | None) -> tuple[Tensor, Tensor]:
    """Forward-mode products ``(d fn / dx) v`` (:func:`torch.func.jvp`): the basis vectors for ``"exact"``, the probes
    otherwise; the primal output of the first product is ``fn(x)`` when ``out`` is not given."""
    if fn is None:
        raise ValueError("forward-mode divergence needs the map fn (it differentiates fn, not a stored output)")
    B = x.shape[0]
    div = torch.zeros(B, dtype=x.dtype, device=x.device)
    if estimator == "exact":
        D = x[0].numel()
        basis = torch.eye(D, dtype=x.dtype, device=x.device)
        w = None if weight is None else torch.broadcast_to(weight, x.shape).reshape(B, D)
        for j in range(D):
            o, jv = torch.func.jvp(fn, (x,), (basis[j].expand(B, D).reshape(x.shape),))
            out = o if out is None else out
            col = jv.reshape(B, D)[:, j]
            div = div + (col if w is None else w[:, j] * col)
        return div, out
    for v in probes:
        o, jv = torch.func.jvp(fn, (x,), (v,))
        out = o if out is None else out
        wv = v if weight is None else weight * v
        div = div + (jv * wv).reshape(B, -1).sum(-1)
    return div / probes.shape[0], out
