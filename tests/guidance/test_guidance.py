"""Classifier and classifier-free guidance with exact scores on Gaussian mixtures (class = component).

With the exact unconditional score and the exact noisy classifier ``p_t(y | x_t)``, classifier guidance at
``scale = 1`` is the exact class score (Bayes), pointwise for every SDE; sampling with it through every registered
sampler puts the samples in the requested component. Classifier-free guidance with exact conditional and
unconditional scores at ``w = 0`` is conditional sampling, path-wise; larger ``w`` raises the classifier confidence
``p(y | x_0)`` of the samples (they sample roughly ``p(x | y) p(y | x)^w``).
"""

from __future__ import annotations

import pytest
import torch

import scoresde
from scoresde.guidance import GuidedModel, classifier, classifier_free
from scoresde.models import ScoreFunctionModel
from scoresde.sampling import SAMPLERS
from scoresde.sdes import CLD, PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

SCALAR = {"ve": lambda: VESDE(sigma_max=10.0, N=50), "vp": lambda: VPSDE(N=50), "subvp": lambda: SubVPSDE(N=50)}
PHASE = {"psld": lambda: PSLD(N=50), "cld": lambda: CLD(N=50)}


def oracle(name: str, gm: GaussianMixture):
    """``(sde, unconditional score, conditional score, classifier)`` of the exact mixture under SDE ``name``."""
    sde = {**SCALAR, **PHASE}[name]()
    if name in PHASE:
        pm = PhaseSpaceMixture(gm, sde)
        return sde, pm.score_fn(), pm.conditional_score_fn(), pm.classifier_fn()
    return sde, gm.score_fn(sde), gm.conditional_score_fn(sde), gm.classifier_fn(sde)


@pytest.mark.parametrize("name", [*SCALAR, *PHASE])
def test_classifier_guidance_at_scale_one_is_the_exact_class_score(name: str) -> None:
    gm = GaussianMixture.example_2d()
    _, score, cond_score, cls = oracle(name, gm)
    guided = classifier(score, cls, 1.0)
    width = 4 if name in PHASE else 2
    x = torch.randn(5, width, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor([0.02, 0.1, 0.3, 0.6, 1.0], dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    torch.testing.assert_close(guided(x, t, class_labels=y), cond_score(x, t, class_labels=y), rtol=1e-8, atol=1e-8)
    # scale 2: one more classifier gradient
    twice = classifier(score, cls, 2.0)(x, t, class_labels=y)
    torch.testing.assert_close(twice - guided(x, t, class_labels=y), guided(x, t, class_labels=y) - score(x, t),
                               rtol=1e-8, atol=1e-8)


PHASE_SAMPLERS = ("pc", "ode", "ddim", "sscs")  # the registered samplers that serve phase-space SDEs


def _sampler_cases() -> list[tuple[str, str]]:
    """Every registered sampler on VP (sscs: PSLD), the phase-space ones on PSLD too, plus VE / sub-VP / CLD."""
    cases = [(s, "psld" if s == "sscs" else "vp") for s in SAMPLERS]
    cases += [(s, "psld") for s in PHASE_SAMPLERS if s in SAMPLERS and s != "sscs"]
    return [*cases, ("pc", "ve"), ("ddim", "subvp"), ("ddim", "cld")]


FEW_STEPS = {"pc": {"steps": 40, "corrector": "none"}, "ode": {"rtol": 1e-4, "atol": 1e-4}}


@pytest.mark.parametrize("sampler,name", _sampler_cases())
def test_guided_sampling_recovers_the_requested_component(sampler: str, name: str) -> None:
    """Every registered sampler x a representative SDE: samples guided to component ``y`` by the exact noisy classifier
    at scale 1 lie in ``y`` (posterior responsibility > 0.5 for >= 95%; with these well-separated components theory
    says ~100%)."""
    gm = GaussianMixture.example_2d()
    sde, score, _, cls = oracle(name, gm)
    y = torch.tensor([0, 1, 2] * 8)
    options = FEW_STEPS.get(sampler, {"steps": 25} if "steps" in SAMPLERS.get(sampler).options() else {})
    x = scoresde.sample(sde, classifier(score, cls), (24, 2), sampler, cond={"class_labels": y},
                        generator=torch.Generator().manual_seed(1), dtype=torch.float64, **options)
    assert not x.requires_grad
    hit = gm.responsibilities(x).gather(1, y[:, None])[:, 0] > 0.5
    assert float(hit.float().mean()) >= 0.95, (sampler, name, hit.float().mean())


def overlapping_1d() -> GaussianMixture:
    return GaussianMixture([0.5, 0.5], [[-0.5], [0.5]], [0.5, 0.5])


def test_classifier_free_w0_is_conditional_sampling_pathwise_and_w_concentrates() -> None:
    gm = overlapping_1d()
    sde = VPSDE(N=100)
    y = torch.ones(400, dtype=torch.long)
    x_T = torch.randn(400, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cond = gm.conditional_score_fn(sde)
    plain = scoresde.sample(sde, cond, (400, 1), "ddim", x_T=x_T, cond={"class_labels": y}, steps=30,
                            dtype=torch.float64)
    guided = scoresde.sample(sde, classifier_free(cond, 0.0), (400, 1), "ddim", x_T=x_T, cond={"class_labels": y},
                             steps=30, dtype=torch.float64)
    torch.testing.assert_close(guided, plain, rtol=0, atol=0)
    # the formula itself, pointwise: (1 + w) s(y) - w s(None)
    xs, ts = x_T[:5], torch.full((5,), 0.4, dtype=torch.float64)
    torch.testing.assert_close(classifier_free(cond, 1.5)(xs, ts, class_labels=y[:5]),
                               2.5 * cond(xs, ts, class_labels=y[:5]) - 1.5 * cond(xs, ts))
    # classifier confidence p(y | x_0) of the samples: w = 0 matches exact conditional draws, then rises with w
    exact = gm.means[1] + 0.5 * torch.randn(20000, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    target = float(gm.responsibilities(exact)[:, 1].mean())
    conf = []
    for w in (0.0, 1.0, 3.0):
        x = scoresde.sample(sde, classifier_free(cond, w), (400, 1), "ddim", x_T=x_T, cond={"class_labels": y},
                            steps=30, dtype=torch.float64)
        conf.append(float(gm.responsibilities(x)[:, 1].mean()))
    assert abs(conf[0] - target) < 0.03, (conf, target)
    assert conf[0] < conf[1] < conf[2], conf
    assert conf[2] > 0.9


def test_adapters_stay_adapters_and_combine_in_their_own_prediction_space() -> None:
    gm = GaussianMixture.example_2d()
    sde = VPSDE(N=50)
    model = ScoreFunctionModel(sde, gm.conditional_score_fn(sde))
    model.num_classes = 3
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.full((3,), 0.5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    for guided in (classifier_free(model, 2.0), classifier(model, gm.classifier_fn(sde), 1.0, pass_labels=False)):
        assert isinstance(guided, GuidedModel) and guided.sde is sde
        s = guided.score(x, t, class_labels=y)
        torch.testing.assert_close(guided.eps(x, t, class_labels=y), sde.score_to_eps(x, t, s))
        torch.testing.assert_close(guided.x0(x, t, class_labels=y), sde.denoise(x, t, s))
        torch.testing.assert_close(guided(x, t, class_labels=y), s)
    torch.testing.assert_close(classifier(model, gm.classifier_fn(sde), pass_labels=False)(x, t, class_labels=y),
                               gm.class_score(x, y, t, sde))
    out = scoresde.sample(classifier_free(model, 1.0), (3, 2), "ddim", cond={"class_labels": y}, steps=5,
                          generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert out.shape == (3, 2)


def test_bad_input_is_one_clear_error() -> None:
    gm = GaussianMixture.example_2d()
    sde = VPSDE(N=50)
    x = torch.zeros(2, 2, dtype=torch.float64)
    t = torch.full((2,), 0.5, dtype=torch.float64)
    guided = classifier(gm.score_fn(sde), gm.classifier_fn(sde))
    with pytest.raises(ValueError, match="needs the requested classes"):
        guided(x, t)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        guided(x, t, class_labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        classifier_free(gm.conditional_score_fn(sde), 1.0)(x, t, class_labels=torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="integer tensor"):
        guided(x, t, class_labels=torch.tensor([0.0, 1.0]))
    unconditional = ScoreFunctionModel(sde, gm.score_fn(sde))
    unconditional.num_classes = 0
    with pytest.raises(ValueError, match="unconditional"):
        classifier_free(unconditional, 1.0)
    other = gm.classifier_fn(VESDE())
    with pytest.raises(ValueError, match="another SDE"):
        classifier(ScoreFunctionModel(sde, gm.score_fn(sde)), other)
    with pytest.raises(ValueError, match="finite"):
        classifier_free(gm.conditional_score_fn(sde), float("nan"))
    with pytest.raises(ValueError, match="logits of shape"):
        classifier(gm.score_fn(sde), lambda x, t, **c: x.sum(1))(x, t, class_labels=torch.tensor([0, 1]))


def test_real_networks_plug_in() -> None:
    """Untrained toy networks through the real adapters: a conditional ScoreModel takes CFG (an unconditional one is
    refused, its ``net.num_classes`` is 0), a ClassifierModel guides an unconditional ScoreModel (its SDE is checked),
    and no parameter gradient accumulates."""
    from scoresde.models import ScoreModel
    from scoresde.models.classifier import ClassifierModel
    from scoresde.nets.classifier import MLPClassifier
    from scoresde.nets.toy import ToyMLP

    torch.manual_seed(0)
    sde = VPSDE(N=50)
    conditional = ScoreModel(ToyMLP(dim=2, hidden=16, depth=1, num_classes=3), sde)
    unconditional = ScoreModel(ToyMLP(dim=2, hidden=16, depth=1), sde)
    y = torch.tensor([0, 1, 2, 1])
    x = scoresde.sample(classifier_free(conditional, 2.0), (4, 2), "ddim", steps=4, cond={"class_labels": y},
                        generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 2) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="unconditional"):
        classifier_free(unconditional, 1.0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        classifier_free(conditional, 1.0)(x, torch.full((4,), 0.5), class_labels=torch.tensor([0, 1, 3, 0]))
    clf = ClassifierModel(MLPClassifier(2, 3, hidden=16, depth=1), sde)
    guided = classifier(unconditional, clf, 1.0)
    x = scoresde.sample(guided, (4, 2), "ddim", steps=4, cond={"class_labels": y},
                        generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    assert all(p.grad is None for p in clf.parameters())
    with pytest.raises(ValueError, match="another SDE"):
        classifier(unconditional, ClassifierModel(MLPClassifier(2, 3, hidden=16, depth=1), VESDE()))
