"""Latent codes: ``scoresde.encode`` runs the probability-flow ODE forward, ``sample(..., "ode", x_T=code)`` runs it
back; with the exact mixture score the codes of data are prior draws and the round trip returns the data to the
solver's tolerance. ``scoresde.interpolate`` is slerp: closed forms on orthogonal codes, norms kept on the sphere."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde
from scoresde.sdes import PSLD, VESDE, VPSDE
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(sigma_max=20.0)], ids=["vp", "ve"])
def test_encode_decode_round_trip_and_codes_are_prior_draws(sde) -> None:
    gm = GaussianMixture.example_2d()
    x = gm.sample(200, torch.Generator().manual_seed(0))
    code, info = scoresde.encode(sde, gm.score_fn(sde), x, return_info=True)
    assert info.nfe > 10 and info.rtol == 1e-5 and info.method == "dopri5"
    back = scoresde.sample(sde, gm.score_fn(sde), sampler="ode", x_T=code, dtype=torch.float64)
    err = (back - x).abs()
    # default tolerances rtol = atol = 1e-5; measured median 2e-6 / 1e-5 and max 3.5e-3 / 4.2e-3 (VP / VE), the max at
    # a point between two components, where the flow separates neighbours
    assert float(err.median()) < 1e-4 and float(err.max()) < 1e-2, (err.median(), err.max())
    tight = scoresde.encode(sde, gm.score_fn(sde), x, rtol=1e-7, atol=1e-7)
    back = scoresde.sample(sde, gm.score_fn(sde), sampler="ode", x_T=tight, dtype=torch.float64, rtol=1e-7, atol=1e-7)
    assert float((back - x).abs().max()) < 1e-4  # measured 1.5e-5 / 2.9e-5: the error is the solver's
    # x_eps ~ p_eps and the flow maps p_eps to p_T: codes have the prior's mean and std
    std = sde.prior_std
    assert float(code.mean(0).abs().max()) < 0.2 * std
    torch.testing.assert_close(code.std(0), torch.full((2,), float(std), dtype=torch.float64), rtol=0.12, atol=0)


def test_phase_space_codes_are_states_and_decode_to_the_data() -> None:
    sde = PSLD()
    gm = GaussianMixture.example_2d()
    pm = PhaseSpaceMixture(gm, sde)
    x = gm.sample(4, torch.Generator().manual_seed(1))
    m = torch.zeros_like(x)
    code = scoresde.encode(sde, pm.score_fn(), x, auxiliary=m)
    assert code.shape == (4, 4)
    back = scoresde.sample(sde, pm.score_fn(), sampler="ode", x_T=code, dtype=torch.float64)
    assert float((back - x).abs().max()) < 1e-3
    drawn = scoresde.encode(sde, pm.score_fn(), x, generator=torch.Generator().manual_seed(0), rtol=1e-3, atol=1e-3)
    again = scoresde.encode(sde, pm.score_fn(), x, generator=torch.Generator().manual_seed(0), rtol=1e-3, atol=1e-3)
    assert torch.equal(drawn, again) and not torch.equal(drawn, code)
    with pytest.raises(ValueError, match="auxiliary"):
        scoresde.encode(sde, pm.score_fn(), x, auxiliary=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="no auxiliary"):
        scoresde.encode(VPSDE(), gm.score_fn(VPSDE()), x, auxiliary=m)
    model = scoresde.as_model(VPSDE(), gm.score_fn(VPSDE()))
    torch.testing.assert_close(scoresde.encode(model, x), scoresde.encode(VPSDE(), gm.score_fn(VPSDE()), x))
    with pytest.raises(ValueError, match="unknown ODE method"):
        scoresde.encode(model, x, method="rk4")


def test_interpolate_is_slerp() -> None:
    z0 = torch.tensor([[1.0, 0.0, 0.0]])
    z1 = torch.tensor([[0.0, 2.0, 0.0]])
    out = scoresde.interpolate(z0, z1, 3)
    assert out.shape == (3, 1, 3)
    torch.testing.assert_close(out[0], z0)
    torch.testing.assert_close(out[-1], z1)
    h = math.sqrt(0.5)
    torch.testing.assert_close(out[1], torch.tensor([[h, 2 * h, 0.0]]))  # sin(pi/4) / sin(pi/2) of each end
    # equal norms stay on the sphere; nearly parallel codes fall back to linear interpolation
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 2, 8, 8, generator=g), torch.randn(4, 2, 8, 8, generator=g)
    b = b / b.flatten(1).norm(dim=1)[:, None, None, None] * a.flatten(1).norm(dim=1)[:, None, None, None]
    path = scoresde.interpolate(a, b, 7)
    norms = path.flatten(2).norm(dim=2)
    torch.testing.assert_close(norms, a.flatten(1).norm(dim=1).expand(7, 4), rtol=1e-5, atol=0)
    near = scoresde.interpolate(a, a * 1.0000001, 5)
    torch.testing.assert_close(near[2], a, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        scoresde.interpolate(a, b, 1)
    with pytest.raises(ValueError, match="same shape"):
        scoresde.interpolate(a, b[:2], 3)
