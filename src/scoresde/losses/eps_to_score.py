"""The epsilon-to-score conversion of a phase-space network (PSLD, CLD), the form in which
:func:`~scoresde.losses.sde_loss` matches scores on phase space.

With ``z_t = Phi(t) z_0 + L_t eps`` (``L_t L_t^T`` the kernel covariance of ``sde.marginal_prob``) the conditional
score is ``-L_t^-T eps``, so score matching in the epsilon form is ``|| L_t^T s(z_t, t) + eps ||^2``
(Dockhorn et al. 2022, §3.2 and App. B; Pandey & Mandt 2023, §3):

* **HSM** (``sde.score_matching == "hsm"``): the initial momentum is marginalised, ``z_0 = [x_0, 0]`` and the kernel
  covariance starts at ``Sigma_0 = diag(0, kappa M)``;
* **DSM** (``"dsm"``): ``m_0 ~ N(0, kappa M)`` is drawn, ``z_0 = [x_0, m_0]`` and the kernel starts at ``0``.

Both have the true phase-space score as minimiser. ``blocks="momentum"`` keeps only the momentum rows of the
residual: with the lower factor they involve only the momentum score, which is all the reverse SDE needs when the
data block has no diffusion (CLD, PSLD with ``Gamma = 0``; a network with 3 output channels for RGB data).
"""

from __future__ import annotations

from torch import Tensor

from ..models.phase_space_model import BLOCKS, momentum_score
from ..sdes.base import SDE


def score_from_eps(sde: SDE, eps_pred: Tensor, t: Tensor, blocks: str = "all") -> Tensor:
    """The score ``-L_t^-T eps`` of a noise-predicting network, with the kernel factor of ``sde``'s training mode
    (Dockhorn et al. 2022, §3.2; Pandey & Mandt 2023, §3): ``sde.eps_to_score`` for ``blocks="all"``,
    :func:`scoresde.models.phase_space_model.momentum_score` for ``"momentum"``. Use it to turn a raw network output
    into the score outside a model adapter.

    Using the covariance of the mode the network was trained with matters: PSLD's code converts every network
    with the HSM covariance, which is wrong for DSM-trained ones.
    """
    if blocks not in BLOCKS:
        raise ValueError(f"unknown blocks {blocks!r}; valid values are: {', '.join(BLOCKS)}")
    if blocks == "all":
        return sde.eps_to_score(eps_pred, t, eps_pred)
    return momentum_score(sde, eps_pred, t)
