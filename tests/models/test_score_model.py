"""ScoreModel: label conventions, and the score / eps / x0 converters against closed forms.

Oracle networks for standard Gaussian data ``x_0 ~ N(0, I)``: then ``x_t ~ N(0, (alpha^2 + sigma^2) I)``, so
``score = -x / v``, ``E[eps | x_t] = sigma x / v`` and ``E[x_0 | x_t] = alpha x / v`` with ``v = alpha^2 + sigma^2``.
Each oracle recovers ``t`` from the labels it is fed, so a wrong label convention also fails. Tolerances allow the
round-off of inverting sigma(t) and of x0 -> score at small sigma (1 - exp(-...) cancels); formula errors are O(1).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import scoresde
from scoresde.models import ScoreModel
from scoresde.sdes import VESDE, VPSDE, SubVPSDE


class GaussianOracle(nn.Module):
    """Predicts the score, eps or x0 of standard Gaussian data exactly, from continuous labels."""

    def __init__(self, sde, output_type: str, label_type: str) -> None:
        super().__init__()
        self.sde, self.output_type, self.label_type = sde, output_type, label_type

    def time(self, labels: torch.Tensor) -> torch.Tensor:
        if self.label_type == "time":
            return labels / 999
        # sigma labels (VE): invert sigma(t) = sigma_min (sigma_max / sigma_min)^t
        sde = self.sde
        return torch.log(labels / sde.sigma_min) / math.log(sde.sigma_max / sde.sigma_min)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = self.time(labels.to(torch.float64))
        alpha, sigma = self.sde.alpha(t)[:, None], self.sde.sigma(t)[:, None]
        v = alpha**2 + sigma**2
        return {"score": -x / v, "eps": sigma * x / v, "x0": alpha * x / v}[self.output_type]


SDES = {"ve": VESDE(), "vp": VPSDE(), "subvp": SubVPSDE()}


def _closed_forms(sde, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    alpha, sigma = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
    v = alpha**2 + sigma**2
    return {"score": -x / v, "eps": sigma * x / v, "x0": alpha * x / v}


@pytest.mark.parametrize("output_type", ["score", "eps", "x0"])
@pytest.mark.parametrize("sde_name", list(SDES))
def test_converters_match_closed_forms(sde_name: str, output_type: str) -> None:
    sde = SDES[sde_name]
    label_type = "sigma" if sde_name == "ve" else "time"
    model = ScoreModel(GaussianOracle(sde, output_type, label_type), sde, continuous=True,
                       label_type=label_type, output_type=output_type)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.01, 0.2, 0.5, 0.8, 1.0], dtype=torch.float64)
    expected = _closed_forms(sde, x, t)
    torch.testing.assert_close(model.score(x, t), expected["score"], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(model.eps(x, t), expected["eps"], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(model.x0(x, t), expected["x0"], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(model(x, t), model.score(x, t), rtol=0, atol=0)
    # The identities of the module docstring, for arbitrary (non-oracle) values too.
    sigma = sde.sigma(t)[:, None]
    torch.testing.assert_close(model.eps(x, t), -sigma * model.score(x, t), rtol=1e-9, atol=1e-10)


def test_original_conventions() -> None:
    assert VESDE().original_conventions(True) == ("sigma", "score")
    assert VESDE().original_conventions(False) == ("sigma_index", "score")
    assert VPSDE().original_conventions(True) == ("time", "eps")
    assert VPSDE().original_conventions(False) == ("timestep", "eps")
    assert SubVPSDE().original_conventions(False) == ("time", "eps")  # the original ignores `continuous`


def test_labels_follow_the_original_formulas() -> None:
    t = torch.tensor([0.01, 0.3, 0.65, 1.0])
    net = nn.Identity()
    ve = VESDE(sigma_min=0.01, sigma_max=50.0, N=10)
    torch.testing.assert_close(ScoreModel(net, ve).labels(t), 0.01 * 5000.0**t)
    index = ScoreModel(net, ve, continuous=False).labels(t)
    assert index.dtype == torch.int64 and index.tolist() == [9, 6, 3, 0]  # round((1 - t) * 9); 0 = largest sigma
    vp = VPSDE(N=1000)
    torch.testing.assert_close(ScoreModel(net, vp).labels(t), t * 999)
    torch.testing.assert_close(ScoreModel(net, VPSDE(N=20), continuous=False).labels(t), t * 19)


def test_discrete_conversions_use_the_tables() -> None:
    vp = VPSDE(N=1000)
    t = torch.tensor([0.01, 0.3, 0.65, 1.0])
    out = torch.randn(4, 3)
    model = ScoreModel(lambda x, labels: out, vp, continuous=False)  # type: ignore[arg-type]
    std = vp.sqrt_1m_alphas_cumprod[(t * 999).long()]
    torch.testing.assert_close(model.score(torch.zeros(4, 3), t), -out / std[:, None], rtol=0, atol=0)
    ve = VESDE(N=10)
    smld = ScoreModel(lambda x, labels: out, ve, continuous=False)  # type: ignore[arg-type]
    alpha, sigma = smld.alpha_sigma(t)
    assert torch.equal(alpha, torch.ones(4))
    torch.testing.assert_close(sigma, torch.flip(ve.discrete_sigmas, (0,))[smld.labels(t)])
    torch.testing.assert_close(smld.eps(torch.zeros(4, 3), t), -sigma[:, None] * out)


def test_invalid_choices() -> None:
    with pytest.raises(ValueError, match="unknown output_type 'velocity'"):
        ScoreModel(nn.Identity(), VPSDE(), output_type="velocity")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma_index"):
        ScoreModel(nn.Identity(), VPSDE(), label_type="sigma_index", output_type="eps")


def test_models_of_every_output_type_drive_the_sampler_to_the_data() -> None:
    """An x0-predicting model works with the (score-based) ODE sampler: N(0, I) data comes back out."""
    sde = VPSDE(N=100)
    model = ScoreModel(GaussianOracle(sde, "x0", "time"), sde, output_type="x0")
    gen = torch.Generator().manual_seed(1)
    x = scoresde.sample(sde, model, (4000, 2), sampler="ode", generator=gen, dtype=torch.float64, rtol=1e-6,
                        atol=1e-6)
    assert abs(x.std().item() - 1.0) < 0.05
