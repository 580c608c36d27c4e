"""Exponential moving average of the weights with the Score SDE update rule."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """EMA of a module's trainable parameters (Score SDE ``models/ema.py``, from Polyak averaging).

    Each :meth:`update` does ``n += 1; d = min(decay, (1 + n) / (10 + n)); shadow -= (1 - d) (shadow - param)``:
    a warm-up of the decay that keeps early averages from being dominated by the initial weights. Only parameters
    with ``requires_grad`` are averaged (as in the original); buffers and frozen parameters (the Fourier ``W``)
    keep the model's values when the EMA is copied in.

    Args:
        module: the network whose parameters are averaged.
        decay: the target decay (``model.ema_rate`` in the configs, e.g. 0.9999).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """One EMA step towards the current parameters of ``module``: ``shadow += (1 - d) (param - shadow)``.

        Done in place with one multi-tensor ``torch._foreach_lerp_`` over every averaged parameter (one fused
        kernel per dtype/device group instead of three element-wise kernels and a temporary per parameter); equal
        to the per-parameter ``shadow -= (1 - d) (shadow - param)`` of the original to float rounding.
        """
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
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

    def load_full_state_dict(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        """Restore the EMA from a :meth:`full_state_dict` and its update count."""
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise ValueError(f"EMA state lacks parameters {missing[:5]}")
        for name in self.shadow:
            self.shadow[name].copy_(state[name])
        self.num_updates = int(num_updates)
