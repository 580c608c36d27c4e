"""The observation of a masked linear inverse problem: which coordinates of the data are observed, in which orthonormal
basis (the pixel basis for inpainting, the colour-decoupling rotation :func:`decoupling_matrix` for colorization), and
the forward-noised draws of those coordinates that the replacement-type samplers put back into the state.

Every SDE of scoresde acts on each coordinate alike (VE/VP/sub-VP: one scalar kernel; CLD/PSLD: one ``k x k`` block on
the position and its momentum), so the observed coordinates of the *state* (position and momentum of the observed
pixels) diffuse independently of the others; :class:`Observation` holds the mask on data and on states.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..numerics.checks import check_count
from ..sdes.base import SDE

__all__ = ["Observation", "decoupling_matrix", "noised_observation"]


class Observation:
    """The observed coordinates ``mask`` (1 = observed) of the data in the orthonormal basis ``rotate`` (a ``C x C``
    channel rotation, or ``None`` for the pixel basis), their values ``y`` (in that basis) and the same on states
    (the ``k`` channel blocks of a phase-space state share the pixel mask).

    Args:
        x_obs: the observed data, shape ``(B, C, ...)`` (values at unobserved coordinates are ignored).
        mask: 1 = observed, 0 = to fill in, already expanded to ``x_obs``'s shape, in the basis ``rotate``.
        rotate: ``C x C`` orthonormal channel rotation (``x M`` maps pixels to the basis), or ``None``.
        k: channel blocks per state (1 for VE/VP/sub-VP, 2 for CLD/PSLD).
    """

    def __init__(self, x_obs: Tensor, mask: Tensor, rotate: Tensor | None, k: int) -> None:
        self.rotate, self.k = rotate, k
        self.mask = mask
        self.y = self.to_basis(x_obs)
        self.state_mask = torch.cat([mask] * k, dim=1)

    def select(self, rows: Tensor) -> Observation:
        """The observation of the rows ``rows`` (e.g. repeated once per particle)."""
        out = copy.copy(self)
        out.mask, out.y, out.state_mask = self.mask[rows], self.y[rows], self.state_mask[rows]
        return out

    def to_basis(self, x: Tensor) -> Tensor:
        """Data (or one block) into the observation basis: ``out_j = sum_i x_i M_ij`` over channels."""
        if self.rotate is None:
            return x
        return torch.einsum("bi...,ij->bj...", x, self.rotate.to(x))

    def from_basis(self, x: Tensor) -> Tensor:
        """Back to pixels with the inverse rotation (``M^-1``, computed as the original does)."""
        if self.rotate is None:
            return x
        return torch.einsum("bi...,ij->bj...", x, torch.linalg.inv(self.rotate).to(x))

    def _blockwise(self, fn: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
        if self.rotate is None:
            return z
        return torch.cat([fn(b) for b in z.chunk(self.k, dim=1)], dim=1)

    def state_to_basis(self, z: Tensor) -> Tensor:
        """A state (``k`` channel blocks) into the observation basis, block by block."""
        return self._blockwise(self.to_basis, z)

    def state_from_basis(self, z: Tensor) -> Tensor:
        """A state back from the observation basis, block by block."""
        return self._blockwise(self.from_basis, z)

    def merge(self, z: Tensor, observed: Tensor) -> Tensor:
        """The state ``z`` with its observed coordinates (in the basis) set to those of ``observed`` (a state in the
        basis)."""
        m = self.state_mask
        return self.state_from_basis(self.state_to_basis(z) * (1.0 - m) + observed * m)

    def finish(self, x: Tensor) -> Tensor:
        """Data with the observed coordinates set to the observation (exactly for a pixel mask)."""
        if self.rotate is None:
            return x * (1.0 - self.mask) + self.y * self.mask
        return self.from_basis(self.to_basis(x) * (1.0 - self.mask) + self.y * self.mask)


def noised_observation(sde: SDE, obs: Observation, t: Tensor, generator: torch.Generator | None) -> tuple[
        Tensor, Tensor]:
    """A draw of ``p_t(z_t | x_0 = y)`` for the observation (in the basis) and its mean: the state ``initial_state(y)``
    pushed through the SDE's perturbation kernel (``alpha_t y + sigma_t eps`` for scalar SDEs)."""
    z0 = sde.initial_state(obs.y, generator=generator)
    mean, std = sde.marginal_prob(z0, t)
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + sde.apply_std(std, noise), mean


def decoupling_matrix(channels: int = 3, dtype: torch.dtype = torch.float64) -> Tensor:
    """An orthonormal ``C x C`` matrix ``M`` whose first column is ``(1, ..., 1) / sqrt(C)``: ``x M`` rotates the
    channels so that the first holds the grey value (``sqrt(C)`` times the channel mean) and the others are orthogonal
    to it (the "orthogonal colour decoupling" of Song et al., ICLR 2021, App. I). For ``C = 3`` the other columns are
    ``(-2, 1, 1) / sqrt(6)`` and ``(0, 1, -1) / sqrt(2)``, as in the original (whose float32 constants agree to 1.3e-7);
    for other ``C``, the Householder completion of the first column."""
    check_count("channels", channels)
    if channels < 2:
        raise ValueError(f"colorization needs at least 2 channels, got {channels}")
    if channels == 3:
        s3, s6, s2 = math.sqrt(3.0), math.sqrt(6.0), math.sqrt(2.0)
        return torch.tensor([[1 / s3, -2 / s6, 0.0], [1 / s3, 1 / s6, 1 / s2], [1 / s3, 1 / s6, -1 / s2]],
                            dtype=dtype)
    ones = torch.ones(channels, dtype=torch.float64) / math.sqrt(channels)
    v = ones - torch.eye(channels, dtype=torch.float64)[0]
    H = torch.eye(channels, dtype=torch.float64) - 2.0 * torch.outer(v, v) / float(v @ v)  # H e_1 = ones
    return H.to(dtype)
