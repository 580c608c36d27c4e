"""A small time-conditioned MLP for low-dimensional (toy) data such as the 2-D Gaussian mixtures."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_time_embedding(t: Tensor, dim: int, max_period: float = 1000.0) -> Tensor:
    """``[sin(t w_k), cos(t w_k)]`` with ``w_k = max_period^(k / (dim/2 - 1))``, ``k = 0..dim/2-1``.

    The transformer/DDPM sinusoidal features (Vaswani et al. 2017, §3.5; Ho et al. 2020, App. B), here with
    geometrically *increasing* frequencies from 1 to ``max_period`` because ``t`` lives in ``[0, 1]``.
    """
    if dim < 4 or dim % 2:
        raise ValueError(f"time embedding dimension must be an even number >= 4, got {dim}")
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(max_period), half, dtype=t.dtype, device=t.device))
    args = t[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ToyMLP(nn.Module):
    """``net(x, t)``: an MLP on ``[x, emb(t)]`` with SiLU activations and a residual hidden stack.

    It has no knowledge of the SDE: the caller turns its output into a score (e.g. ``-out / sigma(t)`` for a
    noise-predicting parameterisation, as in DDPM).

    Args:
        dim: data dimension (input and output size).
        hidden: width of the hidden layers.
        depth: number of hidden residual layers.
        time_embed_dim: size of the sinusoidal time features.
        max_period: largest angular frequency of the time features (``t`` in ``[0, 1]``).
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_embed_dim: int = 32,
                 max_period: float = 1000.0) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"dim, hidden and depth must be positive, got {dim}, {hidden}, {depth}")
        self.dim, self.time_embed_dim, self.max_period = dim, time_embed_dim, max_period
        self.inp = nn.Linear(dim + time_embed_dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Network output for a batch ``x`` of shape ``(B, dim)`` at times ``t`` of shape ``(B,)``."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"ToyMLP expects inputs of shape (B, {self.dim}), got {tuple(x.shape)}")
        emb = sinusoidal_time_embedding(t.to(x.dtype), self.time_embed_dim, self.max_period)
        h = self.inp(torch.cat([x, emb], dim=1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
