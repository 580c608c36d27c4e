"""The training/evaluation time draw and its check, shared by every loss, likelihood and sampler."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def check_eps(eps: float, sde: Any) -> float:
    """``eps`` if it lies in ``(0, T)`` (``T = sde.T``), else a ``ValueError``.

    ``eps`` is the smallest time a loss draws, a likelihood starts its ODE at or a sampler stops at: the score is
    singular at ``t = 0`` and there is nothing left to integrate at ``T``."""
    T = sde.T
    if not 0 < eps < T:
        raise ValueError(f"eps must lie in (0, T={T}), got {eps!r}")
    return eps


def resolve_eps(sde: Any, eps: float | None, *, likelihood: bool = False) -> float:
    """The end time ``eps`` of a sampler or inverse method (the start time of the likelihood ODE with
    ``likelihood``): ``eps`` itself if given, else the SDE's default, :attr:`~scoresde.sdes.base.SDE.sampling_eps`
    (``1e-3``; EDM: ``sigma_min``) or :attr:`~scoresde.sdes.base.SDE.likelihood_eps` (``1e-5``; EDM:
    ``sigma_min``); a ``ValueError`` unless it lies in ``(0, T)``. Every sampler, inverse method and likelihood
    resolves its ``eps=None`` here, so the floor of a schedule whose times are noise levels comes from the SDE."""
    if eps is None:
        eps = sde.likelihood_eps if likelihood else sde.sampling_eps
    return check_eps(eps, sde)


def draw_times(B: int, sde: Any, eps: float, generator: torch.Generator | None = None, *,
               dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
    """``t ~ U(eps, T)``, shape ``(B,)``: the Score SDE reference's draw ``rand(B) * (T - eps) + eps`` (Song et al.
    2021, eq. 7's expectation over ``t``), from ``generator`` (torch's global stream when ``None``).

    Every continuous-time loss draws its times with it, so replaying ``t`` and drawing it are interchangeable."""
    check_eps(eps, sde)
    return torch.rand(B, generator=generator, device=device, dtype=dtype) * (sde.T - eps) + eps


def check_times(t: Tensor, B: int) -> Tensor:
    """``t`` if it has shape ``(B,)`` (one time per example), else a ``ValueError``."""
    if t.shape != (B,):
        raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
    return t
