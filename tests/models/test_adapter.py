"""The model adapter: every prediction from every network output type, plain score functions, conditioning, the
and the phase-space model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scoresde.models import PhaseSpaceScoreModel, ScoreFunctionModel, ScoreModel, as_model, check_cond, slice_cond
from scoresde.sdes import PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture

F64 = torch.float64


class _Fixed(nn.Module):
    """Returns a prediction of the chosen type computed from the exact mixture score (so all four agree)."""

    def __init__(self, gm: GaussianMixture, sde, kind: str) -> None:
        super().__init__()
        self.gm, self.sde, self.kind = gm, sde, kind
        self.t = None

    def forward(self, x, noise_labels, class_labels=None):
        t = self.t
        s = self.gm.score(x, t, self.sde)
        a, sig = self.sde.alpha(t)[:, None], self.sde.sigma(t)[:, None]
        eps = -sig * s
        x0 = (x + sig**2 * s) / a
        return {"score": s, "eps": eps, "x0": x0, "v": a * eps - sig * x0}[self.kind]


@pytest.mark.parametrize("sde", [VESDE(), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("kind", ["score", "eps", "x0", "v"])
def test_every_prediction_from_every_output_type(sde, kind: str) -> None:
    gm = GaussianMixture.example_2d()
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 2
    t = torch.linspace(0.05, 0.95, 16, dtype=F64)
    net = _Fixed(gm, sde, kind)
    net.t = t
    model = ScoreModel(net, sde, label_type="time", output_type=kind)
    truth = ScoreFunctionModel(sde, gm.score_fn(sde))
    assert model.prediction == kind
    for want in ("score", "eps", "x0", "v"):
        torch.testing.assert_close(getattr(model, want)(x, t), getattr(truth, want)(x, t), rtol=1e-9, atol=1e-9,
                                   msg=lambda m, w=want: f"{kind} -> {w}: {m}")
    # the native prediction is the network output itself, bit for bit
    torch.testing.assert_close(getattr(model, kind)(x, t), net(x, None), rtol=0, atol=0)


def test_plain_score_function_conversions_are_the_kernel_formulas() -> None:
    sde = SubVPSDE()
    f = ScoreFunctionModel(sde, lambda x, t: -x)
    x, t = torch.randn(4, 3, dtype=F64), torch.full((4,), 0.4, dtype=F64)
    a, s = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
    torch.testing.assert_close(f.eps(x, t), s * x)
    torch.testing.assert_close(f.x0(x, t), (x - s**2 * x) / a)
    torch.testing.assert_close(f.v(x, t), a * s * x - s * (x - s**2 * x) / a)


def test_as_model_unwraps_adapters_and_their_bound_methods_and_checks_the_sde() -> None:
    model = ScoreModel(nn.Identity(), VPSDE(), label_type="time", output_type="eps")
    assert as_model(None, model) is model and as_model(VPSDE(), model.score) is model
    assert as_model(model.sde, model.score) is model
    with pytest.raises(ValueError, match="differs from the SDE passed"):
        as_model(VPSDE(beta_max=10.0), model)
    with pytest.raises(TypeError, match="expected a model adapter or a callable"):
        as_model(VPSDE(), 3)
    with pytest.raises(TypeError, match="needs its SDE"):
        as_model(None, lambda x, t: x)


def test_conditioning_reaches_the_network_as_keywords() -> None:
    seen = {}

    class Net(nn.Module):
        def forward(self, x, noise_labels, class_labels=None):
            seen["labels"] = class_labels
            return x

    model = ScoreModel(Net(), VPSDE(), label_type="time", output_type="eps")
    y = torch.tensor([3, 1])
    model.eps(torch.zeros(2, 2), torch.full((2,), 0.5), class_labels=y)
    assert seen["labels"] is y
    cond = check_cond({"class_labels": y, "mask": None}, 2)
    assert slice_cond(cond, torch.tensor([False, True]))["class_labels"].tolist() == [1]
    with pytest.raises(ValueError, match="must be a batch-first tensor or None"):
        check_cond({"class_labels": 3}, 2)


@pytest.mark.parametrize("blocks", ["all", "momentum"])
@pytest.mark.parametrize("mixed", [False, True])
def test_phase_space_model_eps_is_the_kernel_conversion_of_its_score(blocks: str, mixed: bool) -> None:
    sde = PSLD(gamma=0.0) if blocks == "momentum" else PSLD()
    torch.manual_seed(0)
    net = nn.Conv1d(2, 2 if blocks == "all" else 1, 1).double()

    class Net(nn.Module):
        def forward(self, z, noise_labels, class_labels=None):
            return net(z)

    model = PhaseSpaceScoreModel(Net(), sde, blocks=blocks, mixed_score=mixed)
    z, t = torch.randn(5, 2, 3, dtype=F64), torch.full((5,), 0.3, dtype=F64)
    score = model.score(z, t)
    torch.testing.assert_close(model.eps(z, t), sde.score_to_eps(z, t, score))
    torch.testing.assert_close(sde.eps_to_score(z, t, model.eps(z, t)), score, rtol=1e-9, atol=1e-9)
    if blocks == "all" and not mixed:
        torch.testing.assert_close(model.eps(z, t), net(z), rtol=0, atol=0)
