"""How the score networks take in the noise level and the class: the inputs added to their embedding.

* :func:`get_timestep_embedding`: DDPM's sinusoidal embedding of the (discrete or continuous) time label (Ho et al.
  2020, appendix B; Vaswani et al. 2017);
* :class:`GaussianFourierProjection`: random Fourier features of ``log sigma`` (Song et al. 2021, appendix H;
  Tancik et al. 2020), NCSN++'s alternative for continuous VE training;
* :func:`sigma_table`: NCSN's geometric noise levels, the ``sigmas`` buffer that ``scale_by_sigma`` divides by;
* :class:`ClassEmbedding`: the class-label embedding added to the noise embedding (EDM's ``label_dim``, Karras et
  al. 2022), with the conventions every conditional network and :mod:`scoresde.guidance` share (:data:`NULL_LABEL`,
  :data:`NULL_LABEL_MODES`), :func:`build_class_embedding` / :func:`class_options` to build it and
  :func:`reject_class_labels`, the one refusal of a class-unconditional network given labels;
* :class:`AugmentEmbedding`: the augmentation labels of EDM's non-leaking augmentation (Karras et al. 2022,
  ``augment_dim``) mapped linearly into the noise embedding, built by :func:`build_augment_embedding` (``None`` for
  ``augment_dim=0``) and applied by :func:`add_augment_labels`, which refuses labels a network was not built for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scoresde.nets.init import default_init
from scoresde.numerics.checks import check_choice, check_class_labels, check_tensor

__all__ = ["NULL_LABEL", "NULL_LABEL_MODES", "AugmentEmbedding", "ClassEmbedding", "GaussianFourierProjection",
           "add_augment_labels", "build_augment_embedding", "build_class_embedding", "class_options",
           "get_timestep_embedding", "reject_class_labels", "sigma_table"]


def get_timestep_embedding(
    timesteps: torch.Tensor,
    embedding_dim: int,
    max_positions: int = 10000,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sinusoidal embedding ``[sin(t ω_i), cos(t ω_i)]``, ``ω_i = max_positions^(-i/(d/2-1))`` (DDPM).

    Computed in ``dtype`` (the reference uses float32); an odd ``embedding_dim`` is zero-padded.
    """
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must be 1-D, got shape {tuple(timesteps.shape)}")
    half = embedding_dim // 2
    if half < 2:
        raise ValueError(f"embedding_dim must be >= 4, got {embedding_dim}")
    rate = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=dtype, device=timesteps.device) * -rate)
    args = timesteps.to(dtype)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if embedding_dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


def sigma_table(sigma_min: float, sigma_max: float, num_scales: int) -> torch.Tensor:
    """NCSN's noise levels ``exp(linspace(log σ_max, log σ_min, N))``: descending, float64."""
    return torch.from_numpy(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_scales)))


class GaussianFourierProjection(nn.Module):
    """Random Fourier features ``[sin(2π x W), cos(2π x W)]``, fixed ``W ~ N(0, scale²)`` (Song et al. 2021,
    appendix H; Tancik et al. 2020). ``W`` is a parameter with ``requires_grad=False``, as in the original."""

    def __init__(self, embedding_size: int = 256, scale: float = 1.0) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, x: torch.Tensor, scale_first: bool = False) -> torch.Tensor:
        """``[sin(2π x W), cos(2π x W)]`` of ``x`` (B,). ``scale_first`` forms ``x (2π W)`` instead of ``(x W) 2π``:
        EDM's ``FourierEmbedding`` order, the same function up to float32 rounding, which shows for arguments of 1e4
        rad and more (EDM's VP preconditioning feeds ``999 t``)."""
        if scale_first:
            x_proj = x[:, None] * (2 * math.pi * self.W)[None, :]
        else:
            x_proj = x[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(x_proj), torch.cos(x_proj)], dim=-1)


#: the class label of a row without a class (classifier-free guidance's unconditional rows, label dropout)
NULL_LABEL = -1
#: how a conditional network embeds :data:`NULL_LABEL`: a learned extra row, or a zero vector
NULL_LABEL_MODES = ("learned", "zero")


def reject_class_labels(net: nn.Module, class_labels: torch.Tensor | None) -> None:
    """The one error of a class-unconditional network called with ``class_labels`` (they would be ignored).

    ``net``'s class says whether it can take labels at all (its ``class_conditional`` attribute, the source of
    :data:`scoresde.nets.catalog.CONDITIONAL_NETWORKS`)."""
    if class_labels is not None:
        name = type(net).__name__
        why = ("model.num_classes is not set" if type(net).class_conditional else
               "it has no class conditioning; the class-conditional networks are those of "
               "scoresde.nets.CONDITIONAL_NETWORKS, with model.num_classes > 0")
        raise ValueError(f"{name} was built class-unconditional ({why}); got class_labels")


class ClassEmbedding(nn.Module):
    """The class-label embedding that a conditional network adds to its noise embedding (EDM's ``label_dim``
    design, Karras et al. 2022, ``training/networks.py``: ``emb = map_noise(sigma) + map_label(one_hot(y))``,
    *before* the embedding MLP / activation).

    ``forward(class_labels, batch_size)`` returns ``(B, dim)``: row ``y`` of a table ``(num_classes [+ 1], dim)``
    (a bias-free linear map of the one-hot label) for each label. Conventions shared by every conditional network
    and by :mod:`scoresde.guidance`:

    * ``class_labels`` is a signed integer tensor ``(B,)`` (int64; int8/16/32 are converted) with entries in
      ``[0, num_classes)`` or :data:`NULL_LABEL` (``-1``) for "no class";
    * ``class_labels=None`` means every row is null: the unconditional call of classifier-free guidance
      (Ho & Salimans 2022) and of label-dropout training;
    * ``null_label='learned'``: the null label has its own trained row (index ``num_classes``), as EDM's dropout of
      the one-hot vector leaves its trained bias; ``'zero'``: it contributes exactly zero, so an all-null call gives
      bit for bit the label-free noise embedding.

    Use it (rather than a per-network table) in every conditional network, so that the conventions are one code.

    Args:
        num_classes: number of classes (>= 1).
        dim: width of the noise embedding the result is added to.
        null_label: ``'learned'`` or ``'zero'`` (:data:`NULL_LABEL_MODES`).
        init_std: standard deviation of the initial table entries (default 1: the scale of sinusoidal features).
    """

    def __init__(self, num_classes: int, dim: int, null_label: str = "learned", init_std: float = 1.0) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if dim < 1:
            raise ValueError(f"the embedding width must be positive, got {dim}")
        self.null_label = check_choice("null_label", null_label, NULL_LABEL_MODES, ignore_case=True)
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.num_classes, self.dim = num_classes, dim
        rows = num_classes + (1 if self.null_label == "learned" else 0)
        self.weight = nn.Parameter(init_std * torch.randn(rows, dim))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}, null_label={self.null_label!r}"

    def check_labels(self, class_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
        """``class_labels`` as int64 on the table's device, or None (all null); ``ValueError`` for a non-tensor, a
        floating/bool dtype, a shape other than ``(batch_size,)`` or an entry outside ``[-1, num_classes)``."""
        if class_labels is None:
            return None
        labels = check_class_labels(class_labels, batch_size, self.num_classes, allow_null=True)
        return labels.to(device=self.weight.device)

    def forward(self, class_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """``(batch_size, dim)`` embeddings of ``class_labels`` (``None``: every row null); see the class doc."""
        labels = self.check_labels(class_labels, batch_size)
        if labels is None:
            labels = torch.full((batch_size,), NULL_LABEL, dtype=torch.int64, device=self.weight.device)
        null = labels == NULL_LABEL
        if self.null_label == "learned":
            return self.weight[torch.where(null, self.num_classes, labels)]
        emb = self.weight[labels.clamp(min=0)]
        return torch.where(null[:, None], torch.zeros((), dtype=emb.dtype, device=emb.device), emb)

    def add_to(self, emb: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """``emb + forward(class_labels)`` in ``emb``'s dtype: what a network does to its noise embedding ``emb``
        ``(B, dim)``."""
        return emb + self(class_labels, emb.shape[0]).to(emb.dtype)


def build_class_embedding(net: nn.Module, num_classes: int, dim: int, null_label: str,
                          time_conditional: bool = True) -> ClassEmbedding | None:
    """The :class:`ClassEmbedding` of a network built with ``num_classes`` (``None`` when 0: no new parameter, so
    unconditional checkpoints keep their exact key set). Build it after every other module, so that the other
    weights draw the same random numbers as the unconditional network's. ``ValueError`` for a negative or
    non-integer count, or classes on a network without a time embedding (``time_conditional=False``)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"{type(net).__name__}: num_classes must be an integer >= 0 (0 = class-unconditional), got "
                         f"{num_classes!r}")
    if num_classes and not time_conditional:
        raise ValueError(f"{type(net).__name__}: num_classes={num_classes} needs conditional=True (the class "
                         "embedding is added to the time embedding)")
    if num_classes == 0:
        check_choice("null_label", null_label, NULL_LABEL_MODES, ignore_case=True)
        return None
    return ClassEmbedding(num_classes, dim, null_label)


def class_options(model: Mapping[str, Any]) -> dict[str, Any]:
    """``num_classes`` (as an int: JSON may give ``10.0``) and ``null_label`` of a config's ``model`` section, where
    set: the constructor arguments of a conditional network (:class:`ClassEmbedding`)."""
    out: dict[str, Any] = {}
    if "num_classes" in model:
        n = model["num_classes"]
        out["num_classes"] = int(n) if isinstance(n, float) and n.is_integer() else n
    if "null_label" in model:
        out["null_label"] = model["null_label"]
    return out


class AugmentEmbedding(nn.Module):
    """The augmentation labels of EDM's non-leaking augmentation added to the noise embedding: a bias-free linear map
    ``emb + W a`` with ``W`` (``dim``, ``augment_dim``), before the embedding MLP (Karras et al. 2022, appendix
    F.2; ``map_augment`` of EDM's ``SongUNet``, initialised like it: Glorot-uniform, :func:`~scoresde.nets.init.
    default_init`).

    ``augment_labels`` is a floating tensor ``(B, augment_dim)`` describing the augmentation each row went through
    (:mod:`scoresde.data.augment` writes them); ``None`` or all zeros is "not augmented", the input at sampling time.
    Use it, rather than a class label, for a conditioning vector that is continuous and known only in training.

    Args:
        augment_dim: length of an augmentation label (>= 1; EDM's pipeline: 9).
        dim: width of the noise embedding the result is added to.
    """

    def __init__(self, augment_dim: int, dim: int) -> None:
        super().__init__()
        if isinstance(augment_dim, bool) or not isinstance(augment_dim, int) or augment_dim < 1:
            raise ValueError(f"augment_dim must be a positive integer, got {augment_dim!r}")
        if dim < 1:
            raise ValueError(f"the embedding width must be positive, got {dim}")
        self.augment_dim, self.dim = augment_dim, dim
        self.weight = nn.Parameter(default_init()((dim, augment_dim)))

    def extra_repr(self) -> str:
        return f"augment_dim={self.augment_dim}, dim={self.dim}"

    def add_to(self, emb: torch.Tensor, augment_labels: torch.Tensor | None) -> torch.Tensor:
        """``emb + augment_labels @ W.T`` in ``emb``'s dtype (``emb`` unchanged for ``None``); ``ValueError`` for a
        non-floating tensor or a shape other than ``(B, augment_dim)``."""
        if augment_labels is None:
            return emb
        check_tensor("augment_labels", augment_labels, f"a floating tensor (B, {self.augment_dim})")
        if not augment_labels.is_floating_point():
            raise ValueError(f"augment_labels must be a floating tensor, got dtype {augment_labels.dtype}")
        if tuple(augment_labels.shape) != (emb.shape[0], self.augment_dim):
            raise ValueError(f"augment_labels must have shape (batch={emb.shape[0]}, augment_dim={self.augment_dim}), "
                             f"got {tuple(augment_labels.shape)}")
        return emb + F.linear(augment_labels.to(device=self.weight.device, dtype=self.weight.dtype),
                              self.weight).to(emb.dtype)


def build_augment_embedding(net: nn.Module, augment_dim: int, dim: int,
                            time_conditional: bool = True) -> AugmentEmbedding | None:
    """The :class:`AugmentEmbedding` of a network built with ``augment_dim`` (``None`` when 0: no parameter, so
    existing checkpoints keep their exact key set). Build it after every other module (after the class embedding), so
    that the other weights draw the same random numbers as without it. ``ValueError`` for a negative or non-integer
    ``augment_dim``, or one on a network without a time embedding."""
    if isinstance(augment_dim, bool) or not isinstance(augment_dim, int) or augment_dim < 0:
        raise ValueError(f"{type(net).__name__}: augment_dim must be an integer >= 0 (0 = no augmentation labels), got "
                         f"{augment_dim!r}")
    if augment_dim and not time_conditional:
        raise ValueError(f"{type(net).__name__}: augment_dim={augment_dim} needs conditional=True (the augmentation "
                         "labels are added to the time embedding)")
    return AugmentEmbedding(augment_dim, dim) if augment_dim else None


def add_augment_labels(net: nn.Module, embedding: AugmentEmbedding | None, emb: torch.Tensor,
                       augment_labels: torch.Tensor | None) -> torch.Tensor:
    """``emb`` plus the augmentation labels' embedding (:meth:`AugmentEmbedding.add_to`); the one error of a network
    built without one (``model.augment_dim`` 0) and called with ``augment_labels`` (they would be ignored)."""
    if embedding is None:
        if augment_labels is not None:
            raise ValueError(f"{type(net).__name__} was built without augmentation labels (model.augment_dim is 0); "
                             "got augment_labels")
        return emb
    return embedding.add_to(emb, augment_labels)
