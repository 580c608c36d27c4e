"""Noise-conditional classifiers against the exact noisy posterior of a labelled Gaussian mixture (class = component),
for a scalar SDE (VP) and a phase-space SDE (PSLD, classifying the state [x, m])."""

from __future__ import annotations

import itertools

import pytest
import torch

from scoresde.sdes import PSLD, VPSDE
from scoresde.toy import GaussianMixture
from scoresde.training.classifier import (
    ClassifierConfig,
    ClassifierTrainer,
    accuracy_by_time,
    build_classifier,
    noisy_state,
)

from .oracle import exact_log_posterior, mean_kl

MIXTURE = GaussianMixture.example_2d()
SDES = {"vp": lambda: VPSDE(beta_min=0.1, beta_max=20.0, N=100),
        "psld": lambda: PSLD(beta_min=8.0, beta_max=8.0, nu=4.01, gamma=0.01, kappa=0.04, N=100)}
CFG = ClassifierConfig(hidden=64, depth=2, steps=200, batch_size=128, lr=5e-3, warmup=20, ema_rate=0.0,
                       eps=1e-3, log_freq=100)


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = MIXTURE.sample(n, torch.Generator().manual_seed(seed), return_labels=True)
    return x.float(), y


def _probe(sde, n: int = 2000, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh perturbed states ``z_t ~ p_t`` at ``t ~ U(0.01, 1)`` and their times."""
    g = torch.Generator().manual_seed(seed)
    x, _ = _data(n, seed)
    t = 0.01 + 0.99 * torch.rand(n, generator=g)
    return noisy_state(sde, x, t, generator=g), t


@pytest.fixture(scope="module", params=sorted(SDES))
def trained(request):
    sde = SDES[request.param]()
    torch.manual_seed(0)
    classifier = build_classifier(sde, (2,), 3, CFG)
    untrained = build_classifier(sde, (2,), 3, CFG)
    untrained.net.load_state_dict(classifier.net.state_dict())
    x, y = _data(20_000, 0)
    threads = torch.get_num_threads()  # module-scoped: set up before the function-scoped one-thread fixture
    torch.set_num_threads(1)
    try:
        ClassifierTrainer(classifier, CFG, x, y).train()
    finally:
        torch.set_num_threads(threads)
    return request.param, sde, classifier.eval(), untrained.eval()


def test_the_oracle_equals_the_mixtures_own_posterior():
    """The test's torch.distributions oracle and scoresde.toy's closed form are two implementations of one law."""
    for name, make in SDES.items():
        sde = make()
        z, t = _probe(sde, n=64)
        ours = exact_log_posterior(MIXTURE, sde, z, t)
        if name == "vp":
            theirs = MIXTURE.log_posterior(z.double(), t, sde)
        else:
            from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

            theirs = PhaseSpaceMixture(MIXTURE, sde).log_posterior(z.double(), t)
        torch.testing.assert_close(ours, theirs, atol=1e-8, rtol=1e-8)


def test_trained_classifier_approaches_the_exact_noisy_posterior(trained):
    """Mean KL(exact || classifier) over t ~ U(0.01, 1): below 0.03 nats after 200 steps, where the untrained net
    (same initial weights) is above 0.3."""
    name, sde, classifier, untrained = trained
    z, t = _probe(sde)
    exact = exact_log_posterior(MIXTURE, sde, z, t)
    with torch.no_grad():
        kl = mean_kl(exact, classifier.log_probs(z, t))
        kl0 = mean_kl(exact, untrained.log_probs(z, t))
    assert kl0 > 0.3, (name, kl0)
    print(f"{name}: KL {kl:.4f} (untrained {kl0:.3f})")
    assert kl < 0.03, (name, kl, kl0)


def test_accuracy_falls_with_the_noise_level(trained):
    """Held-out accuracy per bin of t: near the Bayes accuracy of clean data (~1 for these separated components) at
    small t, down to the prior's (the largest weight, 0.5) at t = T, and never rising by more than noise in between."""
    name, _sde, classifier, _ = trained
    x, y = _data(2000, 3)
    rows = accuracy_by_time(classifier, x, y, num_bins=5, eps=1e-3, generator=torch.Generator().manual_seed(0))
    acc = [r["accuracy"] for r in rows]
    assert acc[0] > 0.97, (name, acc)
    assert abs(acc[-1] - 0.5) < 0.05, (name, acc)
    assert all(b <= a + 0.03 for a, b in itertools.pairwise(acc)), (name, acc)
    assert rows[0]["nll"] < rows[-1]["nll"]
    assert ("snr" in rows[0]) == (name == "vp")


@pytest.mark.parametrize("name", sorted(SDES))
def test_replayed_draws_equal_the_generators(name):
    """perturbation_draws makes the loss's own draws in its documented order (t, DSM momentum, noise): replaying them
    gives the loss drawn from a generator with the same seed, bit for bit."""
    from scoresde.sdes import PSLD as _PSLD
    from scoresde.training.classifier import classifier_loss, perturbation_draws

    sde = SDES[name]() if name == "vp" else _PSLD(N=100, score_matching="dsm")
    assert sde.random_initial_state == (name == "psld")
    clf = build_classifier(sde, (2,), 3, CFG)
    x, y = _data(64, 1)
    drawn = classifier_loss(clf, x, y, eps=1e-3, generator=torch.Generator().manual_seed(5), reduction="none")
    draws = perturbation_draws(sde, x.shape, (1e-3, sde.T), torch.Generator().manual_seed(5))
    replayed = classifier_loss(clf, x, y, eps=1e-3, reduction="none", **draws)
    torch.testing.assert_close(drawn, replayed, rtol=0, atol=0)


def test_guidance_with_the_trained_classifier_samples_the_requested_component(trained):
    """scoresde.guidance.classifier(exact unconditional score, trained classifier, scale=1) samples component 2
    (weight 0.2 unguided): > 0.9 of 500 samples are assigned to it (measured 0.968 VP, 0.98 PSLD; the exact noisy
    classifier gives 1.0)."""
    import scoresde
    from scoresde.guidance import classifier as classifier_guidance
    from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

    name, sde, classifier, _ = trained
    score = MIXTURE.score_fn(sde) if name == "vp" else PhaseSpaceMixture(MIXTURE, sde).score_fn()
    guided = classifier_guidance(score, classifier, 1.0)
    x = scoresde.sample(sde, guided, (500, 2), cond={"class_labels": torch.full((500,), 2)}, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(0), **({"sampler": "sscs"} if name == "psld" else {}))
    share = float((MIXTURE.responsibilities(x).argmax(dim=1) == 2).double().mean())
    assert share > 0.9, (name, share)
