"""A noise-predicting network on the phase space (data and momentum) as ``score_fn(z, t)`` of a PSLD/CLD SDE."""

from __future__ import annotations

from torch import Tensor, nn

from ..objectives.phase_space import BLOCKS, score_from_eps
from ..sdes.phase_space import RecipeSDE


class PhaseSpaceScoreModel(nn.Module):
    """``score(z, t) = -L_t^-T eps_theta(z, t)`` for a phase-space SDE (Dockhorn et al. 2022, §3.2; Pandey & Mandt
    2023, §3), with ``L_t`` the kernel factor of the SDE's own training mode (HSM or DSM).

    As in PSLD's code the network is fed the raw time ``t`` (no rescaling, no division by a noise level).

    Args:
        net: ``net(z, t)`` with ``z`` the full state (data and momentum on dim 1), predicting the noise of every
            block (``blocks="all"``) or of the momentum block only (``blocks="momentum"``: CLD / PSLD with
            ``Gamma = 0``, lower factor).
        sde: the phase-space SDE.
        blocks: ``"all"`` or ``"momentum"``.
    """

    def __init__(self, net: nn.Module, sde: RecipeSDE, *, blocks: str = "all") -> None:
        super().__init__()
        if blocks not in BLOCKS:
            raise ValueError(f"unknown blocks {blocks!r}; valid values are: {', '.join(BLOCKS)}")
        self.net, self.sde, self.blocks = net, sde, blocks
        self.continuous = True

    def with_net(self, net: nn.Module) -> PhaseSpaceScoreModel:
        """The same SDE and blocks around another network (e.g. the DDP-wrapped training copy)."""
        return PhaseSpaceScoreModel(net, self.sde, blocks=self.blocks)

    def labels(self, t: Tensor) -> Tensor:
        """The network's time input: ``t`` itself."""
        return t

    def eps_fn(self, z: Tensor, t: Tensor) -> Tensor:
        """The network's noise prediction."""
        return self.net(z, self.labels(t))

    def score_fn(self, z: Tensor, t: Tensor) -> Tensor:
        """Score of the full state, ``-L_t^-T eps``, via :func:`scoresde.objectives.phase_space.score_from_eps`."""
        return score_from_eps(self.sde, self.eps_fn(z, t), t, blocks=self.blocks).to(z.dtype)

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        """``score_fn(z, t)``."""
        return self.score_fn(z, t)
