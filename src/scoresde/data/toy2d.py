"""Built-in 2-D toy distributions (no download): checkerboard, swiss roll, two moons, Gaussian mixtures."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..toy import GaussianMixture


def checkerboard(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform on the 8 dark squares of a 4×4 checkerboard over ``[-2, 2]^2`` (Grathwohl et al. 2019, FFJORD)."""
    u = torch.rand(n, 4, generator=generator)
    row = torch.floor(4 * u[:, 0])
    col = 2 * torch.floor(2 * u[:, 1]) + row % 2  # the dark squares have col + row even
    return torch.stack([col + u[:, 2], row + u[:, 3]], dim=1) - 2.0


def swiss_roll(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> Tensor:
    """The 2-D swiss roll ``r(θ) (cos θ, sin θ)`` with ``θ ~ 1.5π (1 + 2U)``, scaled to about ``[-1.7, 1.9]``."""
    theta = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    xy = torch.stack([theta * torch.cos(theta), theta * torch.sin(theta)], dim=1) / 7.5
    return xy + noise * torch.randn(n, 2, generator=generator)


def two_moons(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> Tensor:
    """Two interleaved half circles (as scikit-learn's ``make_moons``), centred at the origin."""
    upper = torch.rand(n, generator=generator) < 0.5
    theta = math.pi * torch.rand(n, generator=generator)
    x = torch.where(upper, torch.cos(theta), 1 - torch.cos(theta))
    y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
    xy = torch.stack([x - 0.5, y - 0.25], dim=1)
    return xy + noise * torch.randn(n, 2, generator=generator)


def gaussian_mixture(n: int, generator: torch.Generator | None = None,
                     return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Samples of :meth:`scoresde.toy.GaussianMixture.example_2d` (three anisotropic components); with
    ``return_labels=True`` also the int64 component index of each point (the class labels of class-conditional
    training), and the same points as without it for the same ``generator``."""
    return GaussianMixture.example_2d(dtype=torch.float32).sample(n, generator, return_labels=return_labels)


TOY_2D: dict[str, Callable[..., Tensor]] = {
    "checkerboard": checkerboard,
    "swiss_roll": swiss_roll,
    "two_moons": two_moons,
    "gaussian_mixture": gaussian_mixture,
}


#: the toys with class labels (mixture components) -> their number of classes
LABELLED_TOY_2D: dict[str, int] = {"gaussian_mixture": 3}


def sample_toy_2d(name: str, n: int, generator: torch.Generator | None = None,
                  return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """``n`` points of shape ``(n, 2)`` from the toy distribution ``name`` (one of :data:`TOY_2D`).

    ``return_labels=True`` returns ``(points, labels)`` with int64 labels ``(n,)``: the component of each point for
    the labelled toys (:data:`LABELLED_TOY_2D`, the same points as without labels for the same ``generator``), and
    ``-1`` (no class) for the others.
    """
    if name not in TOY_2D:
        raise ValueError(f"unknown 2-D toy dataset {name!r}; valid names are: {', '.join(sorted(TOY_2D))}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not return_labels:
        return TOY_2D[name](n, generator)
    if name in LABELLED_TOY_2D:
        return TOY_2D[name](n, generator, return_labels=True)
    return TOY_2D[name](n, generator), torch.full((n,), -1, dtype=torch.int64)
