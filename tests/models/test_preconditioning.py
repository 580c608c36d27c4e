"""EDM preconditioning (Karras et al. 2022, Table 1) in ScoreModel: closed forms, k-diffusion's scalings, the VP and
VE rows against Score SDE's conventions, and the default (no preconditioning) unchanged."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scoresde.models import ScoreModel
from scoresde.models.preconditioning import (
    PRECONDITIONINGS,
    EDMPreconditioning,
    VEPreconditioning,
    VPPreconditioning,
    make_preconditioning,
)
from scoresde.sdes import EDM, VESDE, VPSDE
from tests.kdiffusion import kdiffusion_layers

F64 = torch.float64


class Stub(nn.Module):
    """A known network ``F(y, c) = 0.3 y + sin(c)`` that records its inputs."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        self.seen = (x, labels, class_labels)
        out = 0.3 * x + torch.sin(labels)[:, None, None, None]
        return out if class_labels is None else out + class_labels[:, None, None, None].to(x.dtype)


def test_edm_closed_form_at_sigma_data() -> None:
    c = EDMPreconditioning(0.5).coefficients(torch.tensor([0.5], dtype=F64))
    for got, want in zip(c, (0.5, 0.353553, 1.414214, -0.173287), strict=True):
        assert float(got) == pytest.approx(want, abs=5e-7)


def test_edm_scalings_equal_kdiffusion() -> None:
    layers = kdiffusion_layers()
    s = torch.logspace(-3, 2, 41, dtype=F64)
    for sigma_data in (0.5, 1.0, 0.2):
        theirs = layers.Denoiser(None, sigma_data=sigma_data).get_scalings(s)
        ours = EDMPreconditioning(sigma_data).coefficients(s)
        for a, b in zip(ours[:3], theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-14, atol=0)


def test_vp_and_ve_rows() -> None:
    s = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=F64)
    vp = VPPreconditioning().coefficients(s)
    t = vp.c_noise / 999
    # t(s) inverts EDM's VP schedule s(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)
    torch.testing.assert_close(torch.sqrt(torch.exp(19.9 * t**2 / 2 + 0.1 * t) - 1), s)
    torch.testing.assert_close(vp.c_out, -s)
    torch.testing.assert_close(vp.c_in, 1 / torch.sqrt(1 + s**2))
    ve = VEPreconditioning().coefficients(s)
    torch.testing.assert_close(ve.c_noise, torch.log(s / 2))
    assert ve.c_skip.eq(1).all() and ve.c_in.eq(1).all() and ve.c_out.equal(s)


def _stub_denoiser(x: torch.Tensor, alpha: float, s: float, sigma_data: float = 0.5) -> torch.Tensor:
    """``D`` of the stub network written out by hand (Karras et al. eq. 7)."""
    var = s**2 + sigma_data**2
    xt = x / alpha
    F = 0.3 * xt / math.sqrt(var) + math.sin(math.log(s) / 4)
    return sigma_data**2 / var * xt + s * sigma_data / math.sqrt(var) * F


@pytest.mark.parametrize("sde_name", ["edm", "vp", "ve"])
def test_edm_preconditioning_equals_closed_form(sde_name: str) -> None:
    """At the time whose noise level is s = 0.5 the model's x0 is the hand-written D, and score/eps/v follow."""
    if sde_name == "edm":  # times are noise levels
        sde, t = EDM(), torch.tensor([0.5], dtype=F64)
    elif sde_name == "vp":
        sde = VPSDE()
        t = VPPreconditioning(beta_d=19.9, beta_min=0.1).t_of_s(torch.tensor([0.5], dtype=F64))
    else:  # VE with sigma(t) = 0.5: alpha = 1, s = sigma
        sde = VESDE(sigma_min=0.01, sigma_max=50.0)
        t = torch.tensor([math.log(0.5 / 0.01) / math.log(50.0 / 0.01)], dtype=F64)
    t = t.expand(3).clone()
    alpha, sigma = float(sde.alpha(t[:1])), float(sde.sigma(t[:1]))
    assert sigma / alpha == pytest.approx(0.5, rel=1e-12)
    model = ScoreModel(Stub(), sde, preconditioning="edm", sigma_data=0.5)
    x = torch.randn(3, 1, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    x0 = _stub_denoiser(x, alpha, 0.5)
    torch.testing.assert_close(model.x0(x, t), x0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.labels(t), torch.full((3,), math.log(0.5) / 4, dtype=F64))
    torch.testing.assert_close(model.score(x, t), (alpha * x0 - x) / sigma**2)
    eps = (x - alpha * x0) / sigma
    torch.testing.assert_close(model.eps(x, t), eps)
    torch.testing.assert_close(model.v(x, t), alpha * eps - sigma * x0)
    assert model.prediction == "x0" and model.label_type is None and model.output_type is None


def test_vp_row_is_score_sdes_vp_convention() -> None:
    """EDM's VP row on our VPSDE is a noise-predicting network fed 999 t (Score SDE's DDPM++)."""
    sde, net = VPSDE(), Stub()
    x = torch.randn(5, 1, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.01, 1.0, 5, dtype=F64)
    ours = ScoreModel(net, sde, preconditioning="vp")
    theirs = ScoreModel(net, sde, output_type="eps", label_type="time")
    torch.testing.assert_close(ours.score(x, t), theirs.score(x, t), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours.labels(t), 999 * t)


def test_ve_row_on_vesde() -> None:
    """D = x + s F(x, ln(s/2)): the score is F / s."""
    sde, net = VESDE(), Stub()
    x = torch.randn(4, 1, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=F64)
    s = sde.sigma(t)[:, None, None, None]
    F = net(x, torch.log(s.flatten() / 2))
    torch.testing.assert_close(ScoreModel(net, sde, preconditioning="ve").score(x, t), F / s)


def test_class_labels_pass_through_and_derived_models_keep_it() -> None:
    sde, net = VPSDE(), Stub()
    model = ScoreModel(net, sde, preconditioning="edm", sigma_data=0.7)
    x, t = torch.randn(2, 1, 2, 2, dtype=F64), torch.tensor([0.2, 0.7], dtype=F64)
    y = torch.tensor([1, 3])
    model.x0(x, t, class_labels=y)
    assert net.seen[2] is y
    for other in (model.with_net(net), model.with_precision("fp32")):
        assert other.precond == EDMPreconditioning(0.7)
        torch.testing.assert_close(other.x0(x, t), model.x0(x, t))


def test_default_is_unchanged_bit_for_bit() -> None:
    """preconditioning=None computes exactly what the conventions compute (the same ops as before)."""
    sde, net = VPSDE(), Stub()
    x, t = torch.randn(3, 1, 2, 2), torch.tensor([0.1, 0.5, 0.9])
    model = ScoreModel(net, sde)
    assert model.precond is None and model.prediction == "eps"
    assert torch.equal(model.eps(x, t), net(x, 999 * t))
    assert torch.equal(model.score(x, t), -net(x, 999 * t) / sde.sigma(t)[:, None, None, None])


@pytest.mark.parametrize("kwargs, message", [
    ({"preconditioning": "karras"}, "unknown preconditioning 'karras'; valid values are: edm, vp, ve"),
    ({"preconditioning": "vp", "sigma_data": 0.5}, "sigma_data=0.5 is an option of preconditioning 'edm' only"),
    ({"sigma_data": 0.5}, "this model has no preconditioning"),
    ({"preconditioning": "edm", "sigma_data": 0.0}, "sigma_data must be a finite number > 0, got 0.0"),
    ({"preconditioning": "edm", "output_type": "eps"}, "leave label_type and output_type None"),
    ({"preconditioning": "edm", "continuous": False}, "needs a continuous-time model"),
])
def test_bad_arguments_are_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ScoreModel(Stub(), VPSDE(), **kwargs)


def test_registry_and_factory() -> None:
    assert set(PRECONDITIONINGS) == {"edm", "vp", "ve"}
    assert make_preconditioning("edm", sigma_data=1.0) == EDMPreconditioning(1.0)
    assert make_preconditioning("ve") == VEPreconditioning()
