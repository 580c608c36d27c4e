"""``method="projection"`` (Song et al., ICLR 2022): replacement in the SVD basis of any operator. With a mask and
``weight=1`` it is Score SDE's replacement inpainter bit for bit; on a dense projection it meets ``A x = y`` and shows
the bias the method is known for (the unmeasured part does not learn which mode ``y`` selects)."""

from __future__ import annotations

import pytest
import torch

import scoresde
from scoresde.inverse import Mask, dense_matrix
from scoresde.sdes import PSLD, VPSDE
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture
from tests.inverse.test_smc import bimodal_problem


def test_projection_with_a_mask_is_replacement() -> None:
    gm, _A, _y = bimodal_problem("dense")
    sde = VPSDE(N=30)
    mask = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    x = gm.sample(3, torch.Generator().manual_seed(0)).reshape(3, 1, 2, 2)
    a = scoresde.solve_inverse(sde, gm.score_fn(sde), Mask(mask), x * mask, method="projection", dtype=torch.float64,
                               generator=torch.Generator().manual_seed(4))
    b = scoresde.inpaint(sde, gm.score_fn(sde), x, mask, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_projection_meets_a_dense_measurement_and_is_biased() -> None:
    """Exact conditional weight 0.808; measured: projection 0.564 (200 samples, 100 steps, corrector off), i.e. close
    to the prior's 0.5 — the bias documented in the module."""
    gm, A, y = bimodal_problem("dense")
    M = dense_matrix(A)
    exact = gm.condition(M, y)
    sde, B = VPSDE(N=100), 200
    x = scoresde.solve_inverse(sde, gm.score_fn(sde), A, y.expand(B, 2).clone(), method="projection",
                               corrector="none", dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.reshape(B, 4) @ M.T, y.expand(B, 2), atol=1e-10, rtol=0)
    f = float(exact.component_fractions(x)[0])
    assert float(exact.weights[0]) - f > 0.12, (f, float(exact.weights[0]))


def test_partial_weight_and_phase_space_and_bad_input() -> None:
    gm, A, y = bimodal_problem("dense")
    sde = VPSDE(N=30)
    x = scoresde.solve_inverse(sde, gm.score_fn(sde), A, y.expand(4, 2).clone(), method="projection", weight=0.5,
                               dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 2, 2) and torch.isfinite(x).all()
    psld = PSLD(N=10)
    score = PhaseSpaceMixture(gm, psld).score_fn()
    z = scoresde.solve_inverse(psld, lambda s, t: score(s.reshape(s.shape[0], -1), t).reshape(s.shape), A,
                               y.expand(4, 2).clone(), method="projection", dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.reshape(4, 4) @ dense_matrix(A).T, y.expand(4, 2), atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match=r"weight must lie in \(0, 1\]"):
        scoresde.solve_inverse(sde, gm.score_fn(sde), A, y.expand(4, 2).clone(), method="projection", weight=0.0)
    with pytest.raises(ValueError, match=r"method 'projection' assumes a noiseless measurement y = A x; got "
                                         r"sigma_y=0\.1"):
        scoresde.solve_inverse(sde, gm.score_fn(sde), A, y.expand(4, 2).clone(), method="projection", sigma_y=0.1)
