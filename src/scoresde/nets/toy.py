"""A small time-conditioned MLP for low-dimensional (toy) data such as the 2-D Gaussian mixtures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn


def sinusoidal_time_embedding(noise_labels: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """``[sin(l w_k), cos(l w_k)]`` with ``w_k = max_period^(-k / (dim/2 - 1))``, ``k = 0..dim/2-1``.

    The transformer/DDPM sinusoidal features (Vaswani et al. 2017, §3.5; Ho et al. 2020, App. B) of a noise
    label ``l`` (one per entry of ``noise_labels``, shape ``(B,)``), e.g. Score SDE's ``999 t`` for VP models:
    frequencies decrease geometrically from 1 to ``1/max_period``.
    """
    if dim < 4 or dim % 2:
        raise ValueError(f"time embedding dimension must be an even number >= 4, got {dim}")
    half = dim // 2
    arange = torch.arange(half, dtype=noise_labels.dtype, device=noise_labels.device)
    freqs = torch.exp(-math.log(max_period) * arange / (half - 1))
    args = noise_labels[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ToyMLP(nn.Module):
    """``net(x, noise_labels)``: an MLP on ``[x, emb(noise_labels)]`` with SiLU activations and a residual hidden
    stack. It has no class conditioning: ``net(x, noise_labels, class_labels)`` with ``class_labels`` not None raises
    ``ValueError``.

    It has no knowledge of the SDE: the caller turns its output into a score (e.g. ``-out / sigma(t)`` for a
    noise-predicting parameterisation, as in DDPM).

    Args:
        dim: data dimension (input and output size).
        hidden: width of the hidden layers.
        depth: number of hidden residual layers.
        time_embed_dim: size of the sinusoidal time features.
        max_period: ``1 / `` the smallest angular frequency of the time features (noise labels in ``[0, 1000)``).
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_embed_dim: int = 32,
                 max_period: float = 10000.0) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"dim, hidden and depth must be positive, got {dim}, {hidden}, {depth}")
        self.dim, self.time_embed_dim, self.max_period = dim, time_embed_dim, max_period
        self.inp = nn.Linear(dim + time_embed_dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    #: model-section keys that belong to the SDE or the EMA (the original configs keep them in ``model``)
    SDE_KEYS = frozenset({"name", "ema_rate", "sigma_min", "sigma_max", "beta_min", "beta_max", "num_scales", "nu",
                          "gamma", "kappa", "m_inv", "friction", "decomp_mode", "score_matching", "blocks",
                          "mixed_score", "mixed_data_var"})

    @classmethod
    def from_config(cls, model: Mapping[str, Any], data: Mapping[str, Any]) -> ToyMLP:
        """Build from a config's ``model`` section (``hidden``, ``depth``, ``time_embed_dim``, ``dim``; SDE keys are
        ignored) for 2-D data; unknown keys are an error naming them."""
        known = {"hidden", "depth", "time_embed_dim", "max_period", "dim"}
        unknown = sorted(set(model) - known - cls.SDE_KEYS)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown} for toy_mlp; known keys: {sorted(known)}")
        return cls(dim=int(model.get("dim", 2)), hidden=int(model.get("hidden", 128)), depth=int(model.get("depth", 3)),
                   time_embed_dim=int(model.get("time_embed_dim", 32)),
                   max_period=float(model.get("max_period", 10000.0)))

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """Network output for a batch ``x`` of shape ``(B, dim)`` and time/noise labels ``noise_labels`` of shape
        ``(B,)``. ``class_labels`` must be None (no class conditioning)."""
        if class_labels is not None:
            raise ValueError(f"{type(self).__name__} was built class-unconditional (model.num_classes is not set); "
                             "got class_labels")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"ToyMLP expects inputs of shape (B, {self.dim}), got {tuple(x.shape)}")
        emb = sinusoidal_time_embedding(noise_labels.to(x.dtype), self.time_embed_dim, self.max_period)
        h = self.inp(torch.cat([x, emb], dim=1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
