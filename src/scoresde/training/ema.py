"""Exponential moving average of the weights: Score SDE's decay rule or EDM's half-life in images."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import Config

#: the default ``model.ema_rate`` of a config that sets neither it nor ``training.ema_halflife_kimg``
DEFAULT_EMA_RATE = 0.999


def edm_ema_beta(num_images: int, batch_size: int, halflife_kimg: float, rampup_ratio: float | None = 0.05, *,
                 min_halflife_images: float = 1e-8) -> float:
    """EDM's EMA decay for the update after ``num_images`` training images (Karras et al. 2022, EDM
    ``training/training_loop.py``): a half-life of ``h = halflife_kimg * 1000`` images, during the ramp-up ``h =
    min(h, num_images * rampup_ratio)`` (``rampup_ratio = None``: no ramp-up), and ``beta = 0.5 ** (batch_size /
    max(h, min_halflife_images))``, so that the weight of the average halves every ``h`` images whatever the batch
    size. The first update (``num_images = 0`` with a ramp-up) has ``beta = 0``: the average starts at the weights
    after one step. Use it rather than Score SDE's ``decay`` (:class:`EMA`) when the batch size changes between
    experiments (EDM: 500 kimg for CIFAR-10 at batch 512, i.e. ``beta = 0.99929``)."""
    halflife = halflife_kimg * 1000
    if rampup_ratio is not None:
        halflife = min(halflife, num_images * rampup_ratio)
    return 0.5 ** (batch_size / max(halflife, min_halflife_images))


class EMA:
    """EMA of a module's trainable parameters, ``shadow += (1 - d) (param - shadow)`` per :meth:`update`, with one
    of two rules for ``d``:

    * ``decay`` (Score SDE ``models/ema.py``, from Polyak averaging): ``n += 1; d = min(decay, (1 + n) / (10 + n))``,
      a warm-up of the decay that keeps early averages from being dominated by the initial weights;
    * ``halflife_kimg`` (EDM, :func:`edm_ema_beta`): ``d = beta`` from the images seen before the update
      (:attr:`num_images`, which grows by ``batch_size`` per update), with ``rampup_ratio``.

    Only parameters with ``requires_grad`` are averaged (as in the original); buffers and frozen parameters (the
    Fourier ``W``) keep the model's values when the EMA is copied in.

    Args:
        module: the network whose parameters are averaged.
        decay: the target decay (``model.ema_rate`` in the configs, e.g. 0.9999).
        halflife_kimg: EDM's half-life in thousands of images (``training.ema_halflife_kimg``; 500 for CIFAR-10).
        rampup_ratio: EDM's ramp-up (``training.ema_rampup_ratio``, 0.05; ``None``: none); half-life rule only.
        batch_size: images per update (the global batch); half-life rule only.
    Exactly one of ``decay`` and ``halflife_kimg`` is given.
    """

    def __init__(self, module: nn.Module, decay: float | None = None, *, halflife_kimg: float | None = None,
                 rampup_ratio: float | None = 0.05, batch_size: int | None = None) -> None:
        if (decay is None) == (halflife_kimg is None):
            raise ValueError(f"EMA takes exactly one of decay ({decay}) and halflife_kimg ({halflife_kimg})")
        if decay is not None and not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        if halflife_kimg is not None:
            if not halflife_kimg > 0 or (rampup_ratio is not None and not rampup_ratio > 0):
                raise ValueError(f"EMA halflife_kimg ({halflife_kimg}) and rampup_ratio ({rampup_ratio}) must be > 0 "
                                 "(rampup_ratio may be None)")
            if not (isinstance(batch_size, int) and batch_size >= 1):
                raise ValueError(f"an EMA by half-life needs the images per update, batch_size, got {batch_size!r}")
        self.decay = None if decay is None else float(decay)
        self.halflife_kimg = None if halflife_kimg is None else float(halflife_kimg)
        self.rampup_ratio = None if rampup_ratio is None else float(rampup_ratio)
        self.batch_size = batch_size
        self.num_updates = 0
        self.num_images = 0  # images seen by the updates so far (half-life rule; 0 with decay)
        self.shadow = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}

    def next_decay(self) -> float:
        """The ``d`` of the next :meth:`update` (Score SDE's warm-up decay, or EDM's ``beta``)."""
        if self.halflife_kimg is not None:
            return edm_ema_beta(self.num_images, self.batch_size, self.halflife_kimg, self.rampup_ratio)
        n = self.num_updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """One EMA step towards the current parameters of ``module``: ``shadow += (1 - d) (param - shadow)``.

        Done in place with one multi-tensor ``torch._foreach_lerp_`` over every averaged parameter (one fused
        kernel per dtype/device group instead of three element-wise kernels and a temporary per parameter); equal
        to the per-parameter ``shadow -= (1 - d) (shadow - param)`` of the original to float rounding.
        """
        d = self.next_decay()
        self.num_updates += 1
        if self.halflife_kimg is not None:
            self.num_images += self.batch_size
        params = dict(module.named_parameters())
        missing = [name for name in self.shadow if name not in params]
        if missing:
            raise ValueError(f"the module lacks averaged parameters {missing[:5]}")
        names = list(self.shadow)
        torch._foreach_lerp_([self.shadow[n] for n in names], [params[n].detach() for n in names], 1.0 - d)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite ``module``'s averaged parameters with the EMA values."""
        params = dict(module.named_parameters())
        for name, value in self.shadow.items():
            params[name].copy_(value)

    def full_state_dict(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """``module.state_dict()`` with the averaged parameters replaced by their EMA: a loadable network state."""
        return {k: (self.shadow[k] if k in self.shadow else v).detach().clone()
                for k, v in module.state_dict().items()}

    def load_full_state_dict(self, state: dict[str, torch.Tensor], num_updates: int,
                             num_images: int | None = None) -> None:
        """Restore the EMA from a :meth:`full_state_dict`, its update count and (half-life rule) its image count;
        ``num_images = None`` (a checkpoint of a decay run, an original Score SDE checkpoint) counts
        ``num_updates * batch_size`` images, so the ramp-up continues where that many updates would have left it."""
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise ValueError(f"EMA state lacks parameters {missing[:5]}")
        for name in self.shadow:
            self.shadow[name].copy_(state[name])
        self.num_updates = int(num_updates)
        if self.halflife_kimg is not None:
            self.num_images = int(num_images) if num_images is not None else self.num_updates * self.batch_size

    def trainer_state(self) -> dict[str, Any]:
        """The counters and rule a checkpoint's ``trainer_state`` carries (``ema_num_updates``, ``ema_num_images``,
        ``ema_decay``, ``ema_halflife_kimg``, ``ema_rampup_ratio``); :meth:`load_full_state_dict` reads the counts."""
        return {"ema_num_updates": self.num_updates, "ema_num_images": self.num_images, "ema_decay": self.decay,
                "ema_halflife_kimg": self.halflife_kimg, "ema_rampup_ratio": self.rampup_ratio}


def ema_from_config(cfg: Config, module: nn.Module) -> EMA:
    """The run's EMA of ``module``: EDM's half-life rule when ``training.ema_halflife_kimg`` is set (with
    ``training.ema_rampup_ratio`` and the global ``training.batch_size``), else Score SDE's ``model.ema_rate``
    (:data:`DEFAULT_EMA_RATE` if absent). The config schema refuses both set at once."""
    t = cfg.training
    if t.ema_halflife_kimg is not None:
        return EMA(module, halflife_kimg=t.ema_halflife_kimg, rampup_ratio=t.ema_rampup_ratio,
                   batch_size=t.batch_size)
    rate = cfg.model.get("ema_rate")
    return EMA(module, decay=float(DEFAULT_EMA_RATE if rate is None else rate))
