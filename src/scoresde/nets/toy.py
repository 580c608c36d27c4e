"""A small time-conditioned MLP for low-dimensional (toy) data such as the 2-D Gaussian mixtures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .embeddings import ClassEmbedding, build_class_embedding, class_options, reject_class_labels


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
    """``net(x, noise_labels, class_labels=None)``: an MLP on ``[x, emb(noise_labels) + emb(class_labels)]`` with SiLU
    activations and a residual hidden stack.

    With ``num_classes > 0`` the class embedding (:class:`~scoresde.nets.embeddings.ClassEmbedding`, module
    ``label_embed``: int64 labels ``(B,)``, ``-1`` or None = null label) is added to the sinusoidal time features
    before the first layer (EDM's ``label_dim`` design); with ``num_classes=0`` there is none and ``class_labels`` not
    None raises ``ValueError``.

    It has no knowledge of the SDE: the caller turns its output into a score (e.g. ``-out / sigma(t)`` for a
    noise-predicting parameterisation, as in DDPM).

    Args:
        dim: data dimension (input and output size).
        hidden: width of the hidden layers.
        depth: number of hidden residual layers.
        time_embed_dim: size of the sinusoidal time features.
        max_period: ``1 / `` the smallest angular frequency of the time features (noise labels in ``[0, 1000)``).
        num_classes: number of classes of a class-conditional network; 0 (default): unconditional.
        null_label: ``'learned'`` (a trained row) or ``'zero'`` (a zero vector) for the null label ``-1``.
    """

    #: the ``model.name`` values that build this network
    config_names: ClassVar[tuple[str, ...]] = ("toy_mlp",)
    #: whether it takes ``class_labels`` (when built with ``num_classes > 0``); the one record of it, read by
    #: :data:`scoresde.nets.catalog.CONDITIONAL_NETWORKS`
    class_conditional: ClassVar[bool] = True
    #: ``(label_type, output_type)`` its model adapter uses whatever the config says: fed ``999 t`` like the VP
    #: networks, predicts the noise (``None`` on the Score SDE networks: the SDE's original conventions apply)
    adapter_conventions: ClassVar[tuple[str, str] | None] = ("time", "eps")

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_embed_dim: int = 32,
                 max_period: float = 10000.0, num_classes: int = 0, null_label: str = "learned") -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"dim, hidden and depth must be positive, got {dim}, {hidden}, {depth}")
        self.dim, self.time_embed_dim, self.max_period = dim, time_embed_dim, max_period
        self.inp = nn.Linear(dim + time_embed_dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))
        # last, so that the other layers start from the unconditional network's weights for the same seed
        self.label_embed: ClassEmbedding | None = build_class_embedding(self, num_classes, time_embed_dim, null_label)
        self.num_classes = num_classes  # 0: class-unconditional

    #: model-section keys that belong to the SDE or the EMA (the original configs keep them in ``model``)
    SDE_KEYS = frozenset({"name", "ema_rate", "sigma_min", "sigma_max", "beta_min", "beta_max", "num_scales", "nu",
                          "gamma", "kappa", "m_inv", "friction", "decomp_mode", "score_matching", "blocks",
                          "mixed_score", "mixed_data_var"})

    @classmethod
    def from_config(cls, model: Mapping[str, Any], data: Mapping[str, Any]) -> ToyMLP:
        """Build from a config's ``model`` section (``hidden``, ``depth``, ``time_embed_dim``, ``dim``,
        ``num_classes``, ``null_label``; SDE keys are ignored) for 2-D data; unknown keys are an error naming them."""
        known = {"hidden", "depth", "time_embed_dim", "max_period", "dim", "num_classes", "null_label"}
        unknown = sorted(set(model) - known - cls.SDE_KEYS)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown} for toy_mlp; known keys: {sorted(known)}")
        return cls(dim=int(model.get("dim", 2)), hidden=int(model.get("hidden", 128)), depth=int(model.get("depth", 3)),
                   time_embed_dim=int(model.get("time_embed_dim", 32)),
                   max_period=float(model.get("max_period", 10000.0)), **class_options(model))

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """Network output for a batch ``x`` of shape ``(B, dim)``, time/noise labels ``noise_labels`` of shape
        ``(B,)`` and classes ``class_labels`` ``(B,)`` (conditional networks only; None = null label)."""
        if self.label_embed is None:
            reject_class_labels(self, class_labels)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"ToyMLP expects inputs of shape (B, {self.dim}), got {tuple(x.shape)}")
        emb = sinusoidal_time_embedding(noise_labels.to(x.dtype), self.time_embed_dim, self.max_period)
        if self.label_embed is not None:
            emb = self.label_embed.add_to(emb, class_labels)
        h = self.inp(torch.cat([x, emb], dim=1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
