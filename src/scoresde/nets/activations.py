"""The nonlinearities of the score networks, by their Score SDE config name (``model.nonlinearity``).

One table for every network (NCSN++/DDPM++, DDPM, NCSN/NCSNv2, the noise-conditional classifier), as in the original
code's ``get_act``: ``elu`` (the NCSN default), ``relu``, ``lrelu`` (LeakyReLU with slope 0.2) and ``swish`` (SiLU,
the DDPM and NCSN++ default).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from scoresde.numerics.checks import check_choice

__all__ = ["ACTIVATIONS", "get_activation"]

#: ``model.nonlinearity`` (compared case-insensitively) -> the module's constructor
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "lrelu": lambda: nn.LeakyReLU(negative_slope=0.2),
    "swish": nn.SiLU,
}


def get_activation(name: str) -> nn.Module:
    """A new activation module named by ``model.nonlinearity`` (any case; see :data:`ACTIVATIONS`), else
    ``ValueError`` listing the names."""
    return ACTIVATIONS[check_choice("nonlinearity", name, tuple(ACTIVATIONS), ignore_case=True)]()
