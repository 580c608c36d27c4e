"""Training recipes after Score SDE: EDM's loss, the loss weightings, the time distributions and the flow-matching
loss, against hand computations, closed forms (Gaussian data, exact mixture denoisers) and k-diffusion's Denoiser."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scoresde.losses import sde_loss
from scoresde.losses.edm import edm_loss
from scoresde.losses.flow import flow_matching_loss, schedule_derivatives
from scoresde.losses.weighting import WEIGHTINGS, check_recipe, draw_loss_times, loss_weight
from scoresde.models import ScoreModel, as_model
from scoresde.numerics.times import draw_times
from scoresde.sdes import EDM, VESDE, VPSDE, RectifiedFlow
from scoresde.toy import GaussianMixture
from tests.kdiffusion import kdiffusion_layers

F64 = torch.float64


class Stub(nn.Module):
    """A fixed network ``F(y, c) = 0.3 y + sin(c)``."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return 0.3 * x + torch.sin(labels)[:, None, None, None]


def _data(B: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, 2, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(seed)) * 0.5


def test_edm_loss_equals_hand_computation_with_its_draw_order() -> None:
    """EDM's loss on the EDM SDE: ln s = -1.2 + 1.2 z (first draw), then the noise; weight (s^2+0.25)/(0.5 s)^2."""
    sde, x = EDM(), _data()
    model = ScoreModel(Stub(), sde, preconditioning="edm")
    got = edm_loss(model, sde, x, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    s = torch.exp(torch.randn(6, generator=g, dtype=F64) * 1.2 - 1.2)
    n = torch.randn(x.shape, generator=g, dtype=F64)
    sb = s[:, None, None, None]
    y = x + sb * n
    var = sb**2 + 0.25
    D = 0.25 / var * y + sb * 0.5 / var.sqrt() * (0.3 * y / var.sqrt() + torch.sin(torch.log(sb) / 4))
    weight = (s**2 + 0.25) / (s * 0.5) ** 2
    want = (weight * 0.5 * ((D - x) ** 2).flatten(1).sum(1)).mean()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    # the same draws passed in replay the value; a second draw from the same seed is the same (resume exactness)
    torch.testing.assert_close(edm_loss(model, sde, x, t=s, noise=n), want, rtol=1e-12, atol=0)
    assert torch.equal(got, edm_loss(model, sde, x, generator=torch.Generator().manual_seed(7)))


def test_weightings_are_their_formulas() -> None:
    sde = VPSDE()
    t = torch.linspace(0.01, 1.0, 9, dtype=F64)
    a, sig = sde.alpha(t), sde.sigma(t)
    s, beta = sig / a, 0.1 + t * 19.9
    want = {"edm": (s**2 + 0.49) / (0.7 * s) ** 2, "snr": a**2 / sig**2, "likelihood": beta * a**2 / sig**4,
            "min_snr": torch.minimum(a**2 / sig**2, torch.tensor(3.0, dtype=F64)),
            "soft_min_snr": 1 / (s**2 + 0.49)}
    assert set(want) == set(WEIGHTINGS)
    for name, value in want.items():
        torch.testing.assert_close(loss_weight(name, sde, t, sigma_data=0.7, gamma=3.0), value, msg=name)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_snr_and_likelihood_weightings_are_score_sdes_losses(sde) -> None:
    """Score SDE's sigma^2 and g^2 weightings of the score error are 'snr' and 'likelihood' on the x0 error."""
    x, net = _data(8), Stub()
    model = ScoreModel(net, sde, output_type="eps", label_type="time")
    t = draw_times(8, sde, 1e-3, torch.Generator().manual_seed(1), dtype=F64)
    z = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
    for weighting, likelihood in (("snr", False), ("likelihood", True)):
        ours = edm_loss(model, sde, x, weighting=weighting, t=t, noise=z, reduction="none")
        theirs = sde_loss(model, sde, x, t=t, noise=z, likelihood_weighting=likelihood, reduction="none")
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=0)
    # and the uniform draw is Score SDE's: same generator, same times
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(edm_loss(model, sde, x, weighting="snr", time_distribution="uniform", generator=g1),
                               sde_loss(model, sde, x, generator=g2), rtol=1e-9, atol=0)


@pytest.mark.parametrize("theirs, ours", [("karras", "edm"), ("soft-min-snr", "soft_min_snr"), ("snr", "snr")])
def test_weighted_loss_equals_kdiffusion_denoiser_loss(theirs: str, ours: str) -> None:
    """k-diffusion's Denoiser.loss (the F-space loss of Karras et al. with its weightings) on the same network and
    draws equals edm_loss with the EDM preconditioning, mean reduction, on the EDM SDE."""
    layers = kdiffusion_layers()
    sde, net, x = EDM(), Stub(), _data(5)
    sigma = torch.tensor([0.01, 0.3, 0.5, 2.0, 40.0], dtype=F64)
    noise = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(4))
    denoiser = layers.Denoiser(lambda y, s: net(y, torch.log(s) / 4), sigma_data=0.5, weighting=theirs)
    want = denoiser.loss(x, noise, sigma)
    model = ScoreModel(net, sde, preconditioning="edm")
    got = edm_loss(model, sde, x, weighting=ours, t=sigma, noise=noise, reduce_mean=True, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)


def test_time_distributions() -> None:
    g = lambda: torch.Generator().manual_seed(11)  # noqa: E731
    z = torch.randn(20000, generator=g(), dtype=F64)
    edm = EDM()
    t = draw_loss_times("lognormal", 20000, edm, generator=g(), dtype=F64)
    torch.testing.assert_close(t, torch.exp(-1.2 + 1.2 * z))  # times are noise levels on EDM
    vp = VPSDE()
    t = draw_loss_times("lognormal", 20000, vp, mean=0.5, std=0.3, generator=g(), dtype=F64)
    torch.testing.assert_close(vp.sigma(t) / vp.alpha(t), torch.exp(0.5 + 0.3 * z))
    rf = RectifiedFlow()
    t = draw_loss_times("logit_normal", 20000, rf, eps=1e-3, generator=g(), dtype=F64)
    torch.testing.assert_close(t, 1e-3 + (rf.T - 1e-3) * torch.sigmoid(z))
    assert abs(float(torch.log(t / (1 - t)).median())) < 0.03  # the median of a logit-normal is sigmoid(0)
    assert torch.equal(draw_loss_times("uniform", 7, vp, eps=1e-3, generator=g()), draw_times(7, vp, 1e-3, g()))
    with pytest.raises(ValueError, match="time_distribution 'uniform' takes no mean/std"):
        draw_loss_times("uniform", 3, vp, mean=0.0)
    with pytest.raises(ValueError, match=r"needs a finite mean and a std > 0, got -1\.2, 0\.0"):
        draw_loss_times("lognormal", 3, vp, std=0.0)


@pytest.mark.parametrize("sde", [EDM(), VPSDE()], ids=["edm", "vp"])
def test_edm_loss_of_the_exact_denoiser_is_the_mmse(sde) -> None:
    """Data N(0, c^2 I): the exact denoiser's error per dimension is c^2 s^2 / (c^2 + s^2) (Gaussian MMSE), so the
    EDM-weighted loss is (s^2 + sigma_d^2) c^2 / (sigma_d^2 (c^2 + s^2)): exactly 1 at sigma_d = c (Karras et al.
    App. B.6: unit-variance training target)."""
    c, B = 0.5, 40000
    gauss = GaussianMixture([1.0], [[0.0, 0.0]], [c])
    model = as_model(sde, gauss.score_fn(sde))
    x = gauss.sample(B, generator=torch.Generator().manual_seed(0)).reshape(B, 2, 1, 1)
    for s in (0.05, 0.5, 3.0):
        t = sde.t_from_lambda(torch.full((B,), -math.log(s), dtype=F64))
        for sigma_data in (0.5, 1.0):
            loss = edm_loss(model, sde, x, sigma_data=sigma_data, t=t, reduce_mean=True,
                            generator=torch.Generator().manual_seed(1))
            want = (s**2 + sigma_data**2) * c**2 / (sigma_data**2 * (c**2 + s**2))
            assert float(loss) == pytest.approx(want, rel=0.02), (s, sigma_data)


@pytest.mark.parametrize("sde", [EDM(), VPSDE(), RectifiedFlow()], ids=["edm", "vp", "rf"])
def test_the_exact_mixture_denoiser_minimises_the_losses(sde) -> None:
    """On a two-component mixture the exact posterior mean beats a shrunk and a shifted one on the same draws, for
    the EDM loss and the flow-matching loss (both are minimised by E[x0 | x_t])."""
    mix = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]], [0.3, 0.5])
    B = 20000
    x = mix.sample(B, generator=torch.Generator().manual_seed(0)).reshape(B, 2, 1, 1)
    exact = as_model(sde, mix.score_fn(sde))

    def perturbed(scale: float, shift: float):
        def score(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # Tweedie's score of the perturbed x0
            alpha, sigma = sde.alpha(t)[:, None, None, None], sde.sigma(t)[:, None, None, None]
            return (alpha * (exact.x0(y, t) * scale + shift) - y) / sigma**2
        return score

    for loss in (edm_loss, flow_matching_loss):
        values = [float(loss(m, sde, x, generator=torch.Generator().manual_seed(5)))
                  for m in (exact, perturbed(0.95, 0.0), perturbed(1.0, 0.05))]
        assert values[0] < values[1] and values[0] < values[2], (loss.__name__, values)


def test_flow_matching_target_on_rectified_flow() -> None:
    """On rectified flow the target is eps - x0 and the loss is || u_hat - (eps - x0) ||^2 with u_hat = eps_hat -
    x0_hat, i.e. || x0_hat - x0 ||^2 / t^2."""
    sde, net, x = RectifiedFlow(), Stub(), _data(4)
    model = ScoreModel(net, sde, preconditioning="edm")
    t = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=F64)
    n = torch.randn(x.shape, dtype=F64, generator=torch.Generator().manual_seed(9))
    d_alpha, d_sigma = schedule_derivatives(sde, t)
    torch.testing.assert_close(d_alpha, -torch.ones_like(t))
    torch.testing.assert_close(d_sigma, torch.ones_like(t))
    tb = t[:, None, None, None]
    xt = (1 - tb) * x + tb * n
    x0_hat = model.x0(xt, t)
    u_hat = (xt - (1 - tb) * x0_hat) / tb - x0_hat
    want = 0.5 * ((u_hat - (n - x)) ** 2).flatten(1).sum(1)
    got = flow_matching_loss(model, sde, x, t=t, noise=n, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    torch.testing.assert_close(got, 0.5 * ((x0_hat - x) ** 2).flatten(1).sum(1) / t**2, rtol=1e-9, atol=0)


def test_schedule_derivatives_of_vp() -> None:
    sde, t = VPSDE(), torch.linspace(0.05, 1.0, 6, dtype=F64)
    d_alpha, d_sigma = schedule_derivatives(sde, t)
    h = 1e-6
    torch.testing.assert_close(d_alpha, (sde.alpha(t + h) - sde.alpha(t - h)) / (2 * h), rtol=1e-7, atol=0)
    torch.testing.assert_close(d_sigma, (sde.sigma(t + h) - sde.sigma(t - h)) / (2 * h), rtol=1e-7, atol=0)


@pytest.mark.parametrize("args, message", [
    (("edmloss", None, None, None, None, 5.0), "unknown training.objective 'edmloss'"),
    (("dsm", "edm", None, None, None, 5.0), "training.loss_weighting='edm' applies to training.objective='edm'"),
    (("edm", "minsnr", None, None, None, 5.0), "unknown training.loss_weighting 'minsnr'"),
    (("dsm", None, "lognormal", None, None, 5.0), "training.time_distribution='lognormal' applies to"),
    (("edm", None, "uniform", -1.0, None, 5.0), "training.p_mean=-1.0 is a parameter of the 'lognormal'"),
    (("flow_matching", None, None, None, 1.0, 5.0), "this recipe draws 'uniform' times"),
    (("edm", None, None, None, -1.0, 5.0), "training.p_std must be a finite number > 0, got -1.0"),
    (("edm", "edm", None, None, None, 3.0), "training.min_snr_gamma=3.0 applies to training.loss_weighting='min_snr'"),
])
def test_recipe_checks_are_one_line(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_recipe(*args)
    check_recipe("edm", "min_snr", "logit_normal", 0.0, 1.0, 3.0)  # a valid combination


def test_phase_space_sdes_are_refused() -> None:
    from scoresde.sdes import PSLD

    with pytest.raises(ValueError, match="edm_loss needs an SDE with a scalar noise schedule"):
        edm_loss(lambda x, t: x, PSLD(), torch.zeros(2, 1, 2, 2))
