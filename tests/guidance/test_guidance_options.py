"""CFG rescale (Lin et al. 2024), dynamic thresholding (Saharia et al. 2022), guidance in a noise-level interval
(Kynkäänniemi et al. 2024), the batched conditional/unconditional call and the NFE count, on exact-score Gaussian
mixtures: every expected value is computed here independently of the guidance code (numpy, the mixture's closed
forms, the pre-batching two-call formula)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import scoresde
from scoresde.guidance import classifier, classifier_free, dynamic_threshold, noise_level
from scoresde.models import DiffusionModel, ScoreFunctionModel, as_model
from scoresde.sdes import PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture

F64 = torch.float64


def image_mixture() -> GaussianMixture:
    """Two classes of 1x2x2 'images' in [-1, 1]-ish (component means +-0.8 per pixel)."""
    return GaussianMixture([0.5, 0.5], [[0.8, -0.8, 0.8, 0.8], [-0.8, 0.8, -0.8, -0.8]], [0.2, 0.2])


def counted_fn(fn):
    """``fn`` that records how many rows it evaluated (``wrapper.rows``)."""
    def wrapper(x, t, **cond):
        wrapper.rows += x.shape[0]
        return fn(x, t, **cond)
    wrapper.rows = 0
    wrapper.num_classes = fn.num_classes
    return wrapper


def two_call_cfg(fn, w):
    """The formula as it was computed before batching: two calls, the second with ``class_labels=None``."""
    return lambda x, t, class_labels: (1.0 + w) * fn(x, t, class_labels=class_labels) - w * fn(x, t)


class TwoCallModel(DiffusionModel):
    """The adapter form as it was before batching: each prediction combined in the inner model's own space from two
    calls."""

    def __init__(self, inner, w):
        self.inner, self.w, self.sde, self.prediction = inner, w, inner.sde, inner.prediction

    def _mix(self, kind, x, t, cond):
        call = getattr(self.inner, kind)
        return (1.0 + self.w) * call(x, t, **cond) - self.w * call(x, t, **{**cond, "class_labels": None})

    def score(self, x, t, **cond):
        return self._mix("score", x, t, cond)

    def eps(self, x, t, **cond):
        return self._mix("eps", x, t, cond)

    def x0(self, x, t, **cond):
        return self._mix("x0", x, t, cond)


@pytest.mark.parametrize("sde", [VPSDE(N=50), VESDE(sigma_max=10.0, N=50), SubVPSDE(N=50)],
                         ids=["vp", "ve", "subvp"])
def test_defaults_are_the_unbatched_samples_bit_for_bit_and_nfe_counts_network_evaluations(sde) -> None:
    gm = GaussianMixture.example_2d()
    fn = counted_fn(gm.conditional_score_fn(sde))
    y = torch.tensor([0, 1, 2] * 4)
    x_T = sde.prior_sampling((12, 2), torch.Generator().manual_seed(0), dtype=F64)
    kw = dict(x_T=x_T, cond={"class_labels": y}, dtype=F64, return_info=True)
    plain_ref = two_call_cfg(gm.conditional_score_fn(sde), 2.0)
    model_ref = TwoCallModel(as_model(sde, gm.conditional_score_fn(sde)), 2.0)
    for guided, reference in ((classifier_free(fn, 2.0), plain_ref), (classifier_free(as_model(sde, fn), 2.0),
                                                                      model_ref)):
        ref, ref_info = scoresde.sample(sde, reference, (12, 2), "ddim", steps=8, **kw)
        fn.rows = 0
        out, info = scoresde.sample(sde, guided, (12, 2), "ddim", steps=8, **kw)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        assert info.nfe == 2 * ref_info.nfe == fn.rows // 12  # one 2B-row call per step counts 2
    # w = 0: the conditional model itself, one evaluation per step
    fn.rows = 0
    out, info = scoresde.sample(sde, classifier_free(as_model(sde, fn), 0.0), (12, 2), "dpm_solver", steps=6, **kw)
    plain, plain_info = scoresde.sample(sde, gm.conditional_score_fn(sde), (12, 2), "dpm_solver", steps=6, **kw)
    torch.testing.assert_close(out, plain, rtol=0, atol=0)
    assert info.nfe == plain_info.nfe == fn.rows // 12


def test_batched_equals_unbatched_on_a_network_to_1e6() -> None:
    from scoresde.models import ScoreModel
    from scoresde.nets.toy import ToyMLP

    torch.manual_seed(0)
    model = ScoreModel(ToyMLP(dim=4, hidden=32, depth=2, num_classes=3), VPSDE(N=50))
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.05, 0.95, 6)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    one, two = classifier_free(model, 3.0), classifier_free(model, 3.0, batched=False)
    for kind in ("score", "eps", "x0"):
        torch.testing.assert_close(getattr(one, kind)(x, t, class_labels=y), getattr(two, kind)(x, t, class_labels=y),
                                   rtol=1e-6, atol=1e-6)
    assert one.network_evaluations == two.network_evaluations == 6


def test_rescale_matches_an_independent_computation_in_the_data_prediction() -> None:
    gm = image_mixture()
    sde = VPSDE(N=50)
    fn = gm.conditional_score_fn(sde)
    model = as_model(sde, fn)
    w, phi = 3.0, 0.7
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.9], dtype=F64)
    y = torch.tensor([0, 1, 1, 0])
    # independent: Tweedie x0 = (x + sigma^2 s) / alpha with the closed-form VP alpha, sigma; numpy std (ddof 0)
    log_mean = -0.25 * t**2 * (sde.beta_1 - sde.beta_0) - 0.5 * t * sde.beta_0
    a = np.exp(log_mean.numpy())[:, None, None, None]
    s = np.sqrt(1.0 - np.exp(2.0 * log_mean.numpy()))[:, None, None, None]
    xn = x.numpy()
    x0c = (xn + s**2 * fn(x, t, class_labels=y).numpy()) / a
    x0u = (xn + s**2 * fn(x, t).numpy()) / a
    cfg = x0u + (1 + w) * (x0c - x0u)
    ratio = x0c.reshape(4, -1).std(1) / cfg.reshape(4, -1).std(1)
    final = phi * cfg * ratio[:, None, None, None] + (1 - phi) * cfg
    guided = classifier_free(model, w, rescale=phi)
    torch.testing.assert_close(guided.x0(x, t, class_labels=y), torch.from_numpy(final), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(guided.eps(x, t, class_labels=y), torch.from_numpy((xn - a * final) / s),
                               rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(guided.score(x, t, class_labels=y), torch.from_numpy((a * final - xn) / s**2),
                               rtol=1e-9, atol=1e-9)
    # the rescaled prediction has the conditional one's spread at phi = 1
    full = classifier_free(model, w, rescale=1.0).x0(x, t, class_labels=y)
    np.testing.assert_allclose(full.flatten(1).std(1, correction=0).numpy(), x0c.reshape(4, -1).std(1), rtol=1e-10)
    # phi = 0 is plain CFG (through the data prediction)
    torch.testing.assert_close(classifier_free(model, w, rescale=0.0).x0(x, t, class_labels=y), torch.from_numpy(cfg))


def test_dynamic_threshold_against_a_hand_computation() -> None:
    x0 = torch.tensor([[[[0.5, -3.0], [2.0, 1.0]]], [[[0.2, -0.9], [0.4, 0.1]]]], dtype=F64)
    # |x| of sample 0 sorted: 0.5 1 2 3; the 50th percentile (linear) is 1.5: clip to [-1.5, 1.5], divide by 1.5
    out = dynamic_threshold(x0, 50.0)
    torch.testing.assert_close(out[0, 0], torch.tensor([[1 / 3, -1.0], [1.0, 2 / 3]], dtype=F64))
    torch.testing.assert_close(out[1], x0[1])  # percentile 0.3 < 1: s = 1, nothing outside [-1, 1]
    torch.testing.assert_close(dynamic_threshold(x0, 100.0)[0, 0], torch.tensor([[0.5, -3.0], [2.0, 1.0]]) / 3.0,
                               check_dtype=False)
    # 75th percentile of 0.5 1 2 3: 2.25 (numpy's linear rule)
    assert float(np.percentile([0.5, 1, 2, 3], 75)) == 2.25
    torch.testing.assert_close(dynamic_threshold(x0, 75.0)[0, 0],
                               torch.tensor([[0.5, -2.25], [2.0, 1.0]], dtype=F64) / 2.25)


def test_threshold_acts_on_the_guided_data_prediction_of_both_guidance_kinds() -> None:
    gm = image_mixture()
    sde = VPSDE(N=50)
    fn = gm.conditional_score_fn(sde)
    model = as_model(sde, fn)
    x = 3.0 * torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    t = torch.full((4,), 0.6, dtype=F64)
    y = torch.tensor([0, 1, 0, 1])
    plain = classifier_free(model, 4.0).x0(x, t, class_labels=y)
    assert float(plain.abs().max()) > 1.5  # the guided prediction leaves [-1, 1]: something to threshold
    guided = classifier_free(model, 4.0, threshold=90.0)
    torch.testing.assert_close(guided.x0(x, t, class_labels=y), dynamic_threshold(plain, 90.0))
    unconditional = ScoreFunctionModel(sde, gm.score_fn(sde))
    cls = classifier(unconditional, gm.classifier_fn(sde), 5.0, threshold=90.0)
    ref = classifier(unconditional, gm.classifier_fn(sde), 5.0).x0(x, t, class_labels=y)
    torch.testing.assert_close(cls.x0(x, t, class_labels=y), dynamic_threshold(ref, 90.0))
    torch.testing.assert_close(cls.score(x, t, class_labels=y), sde.eps_to_score(x, t, cls.eps(x, t, class_labels=y)))


def vp_sigma(sde: VPSDE, t: float) -> float:
    """EDM sigma of continuous VP by hand: sqrt(exp(int_0^t beta) - 1)."""
    return math.sqrt(math.expm1(sde.beta_0 * t + 0.5 * (sde.beta_1 - sde.beta_0) * t * t))


def vp_time(sde: VPSDE, sigma: float) -> float:
    """The VP time of EDM noise level ``sigma`` (the quadratic int_0^t beta = log(1 + sigma^2) solved for t)."""
    b0, d = sde.beta_0, sde.beta_1 - sde.beta_0
    return (-b0 + math.sqrt(b0 * b0 + 2.0 * d * math.log1p(sigma * sigma))) / d


def test_interval_switches_guidance_at_the_right_noise_level() -> None:
    gm = GaussianMixture.example_2d()
    sde = VPSDE(N=50)
    fn = gm.conditional_score_fn(sde)
    model = as_model(sde, fn)
    lo, hi = 0.5, 3.0
    t_lo, t_hi = vp_time(sde, lo), vp_time(sde, hi)
    assert abs(vp_sigma(sde, t_hi) - hi) < 1e-12
    t = torch.tensor([t_lo * 0.999, t_lo * 1.001, 0.5 * (t_lo + t_hi), t_hi * 0.999, t_hi * 1.001, 0.95], dtype=F64)
    torch.testing.assert_close(noise_level(model, t), torch.tensor([vp_sigma(sde, float(v)) for v in t], dtype=F64))
    inside = torch.tensor([False, True, True, True, False, False])
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    full, cond = two_call_cfg(fn, 2.0)(x, t, y), fn(x, t, class_labels=y)
    expected = torch.where(inside[:, None], full, cond)
    for windowed in (classifier_free(model, 2.0, interval=(lo, hi)), classifier_free(model, 2.0, interval=(lo, hi),
                                                                                    batched=False)):
        torch.testing.assert_close(windowed.score(x, t, class_labels=y), expected, rtol=1e-12, atol=1e-12)
    # classifier guidance: the gradient term only inside, the score model alone outside
    unconditional = ScoreFunctionModel(sde, gm.score_fn(sde))
    cls = classifier(unconditional, gm.classifier_fn(sde), 1.0, interval=(lo, hi))
    exact = gm.class_score(x, y, t, sde)
    outside = gm.score(x, t, sde)
    torch.testing.assert_close(cls.score(x, t, class_labels=y), torch.where(inside[:, None], exact, outside))
    # VE: EDM's sigma is sigma(t) itself
    ve = VESDE(sigma_max=10.0, N=50)
    tv = torch.tensor([0.2, 0.8], dtype=F64)
    torch.testing.assert_close(noise_level(as_model(ve, gm.conditional_score_fn(ve)), tv), ve.sigma(tv))


def test_interval_nfe_counts_one_outside_and_two_inside() -> None:
    gm = GaussianMixture.example_2d()
    sde = VPSDE(N=50)
    fn = counted_fn(gm.conditional_score_fn(sde))
    y = torch.tensor([0, 1, 2, 0])
    times = []
    _, info = scoresde.sample(classifier_free(as_model(sde, fn), 2.0, interval=(0.5, 3.0)), (4, 2), "ddim",
                              steps=20, cond={"class_labels": y}, dtype=F64, return_info=True,
                              generator=torch.Generator().manual_seed(5),
                              callback=lambda i, t, x, x0: times.append(float(t)))
    grid = [1.0, *times[:-1]]  # ddim evaluates at every time but the last one it reaches
    inside = sum(0.5 < vp_sigma(sde, s) <= 3.0 for s in grid)
    assert 0 < inside < len(grid)
    assert info.nfe == fn.rows // 4 == len(grid) + inside


def test_guided_nfe_through_inverse_methods() -> None:
    gm = GaussianMixture.example_2d()
    sde = VPSDE(N=50)
    model = as_model(sde, gm.conditional_score_fn(sde))
    y = torch.tensor([0, 1])
    obs, mask = torch.zeros(2, 2, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64)
    kw = dict(method="replacement", steps=25, cond={"class_labels": y}, dtype=F64, return_info=True,
              generator=torch.Generator().manual_seed(6))
    _, plain = scoresde.inpaint(classifier_free(model, 0.0), obs, mask, **kw)
    _, guided = scoresde.inpaint(classifier_free(model, 1.0), obs, mask, **kw)
    assert guided.nfe == 2 * plain.nfe > 0


def test_options_refuse_bad_input_in_one_line() -> None:
    gm = GaussianMixture.example_2d()
    sde = VPSDE(N=50)
    fn = gm.conditional_score_fn(sde)
    model = as_model(sde, fn)
    x, t, y = torch.zeros(2, 2, dtype=F64), torch.full((2,), 0.5, dtype=F64), torch.tensor([0, 1])
    for bad, match in (({"rescale": 1.5}, "phi in \\[0, 1\\]"), ({"threshold": 0}, "percentile p in \\(0, 100\\]"),
                       ({"interval": (2.0, 1.0)}, "0 <= sigma_lo < sigma_hi"), ({"interval": "ab"}, "sigma_lo"),
                       ({"batched": "yes"}, "batched")):
        with pytest.raises(ValueError, match=match):
            classifier_free(model, 1.0, **bad)
    with pytest.raises(ValueError, match="need the noise schedule: pass a model adapter"):
        classifier_free(fn, 1.0, rescale=0.5)
    with pytest.raises(ValueError, match="need the noise schedule"):
        classifier(gm.score_fn(sde), gm.classifier_fn(sde), interval=(0.1, 1.0))
    with pytest.raises(ValueError, match="for images"):
        classifier_free(model, 1.0, threshold=99.5).x0(x, t, class_labels=y)
    line = as_model(sde, GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [0.3, 0.3]).conditional_score_fn(sde))
    with pytest.raises(ValueError, match="at least 2 values"):
        classifier_free(line, 1.0, rescale=0.5).x0(x[:, :1], t, class_labels=y)
    psld = ScoreFunctionModel(PSLD(N=50), fn)
    with pytest.raises(ValueError, match="scalar noise schedule"):
        classifier_free(psld, 1.0, interval=(0.1, 1.0))
    uncentered = ScoreFunctionModel(sde, fn)
    uncentered.config = {"data": {"centered": False}}
    with pytest.raises(ValueError, match=r"data in \[0, 1\]"):
        classifier_free(uncentered, 1.0, threshold=99.5)
