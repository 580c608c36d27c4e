"""The mixtures' closed forms for controllable generation: class scores, the exact noisy classifier, the
class-conditional score oracle and the law given a linear observation.

Independent facts checked: the class score is the autograd gradient of the component's log-density; the noisy
classifier is Bayes' rule (its gradient plus the mixture score is the class score, its probabilities sum to one and
average to the prior weights); the conditional given ``A x = y`` has a density proportional to ``p(x)`` on the affine
set (so ``log p(x_p + N u) - log p_free(u)`` is constant in ``u``) and, for a mask, reweights the components by the
marginal density of the observed coordinates (computed here with ``torch.distributions``).
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import MultivariateNormal

from scoresde.sdes import CLD, PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

SDES = {"ve": lambda: VESDE(sigma_max=5.0), "vp": VPSDE, "subvp": SubVPSDE}


def mixture_4d() -> GaussianMixture:
    g = torch.Generator().manual_seed(5)
    a = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    covs = 0.2 * a @ a.transpose(-1, -2) + 0.1 * torch.eye(4, dtype=torch.float64)
    return GaussianMixture([0.3, 0.7], torch.randn(2, 4, generator=g, dtype=torch.float64) * 1.5, covs)


@pytest.mark.parametrize("name", list(SDES))
def test_class_score_is_the_gradient_of_the_component_and_bayes_holds(name: str) -> None:
    sde, gm = SDES[name](), mixture_4d()
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    t = torch.tensor([0.01, 0.1, 0.3, 0.5, 0.8, 1.0], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    xg = x.clone().requires_grad_(True)
    alpha, sigma = sde.alpha(t), sde.sigma(t)
    comp = [MultivariateNormal(alpha[i] * gm.means[labels[i]], alpha[i] ** 2 * gm.covs[labels[i]]
                               + sigma[i] ** 2 * torch.eye(4, dtype=torch.float64)) for i in range(6)]
    logp = sum(c.log_prob(xg[i]) for i, c in enumerate(comp))
    (grad,) = torch.autograd.grad(logp, xg)
    torch.testing.assert_close(gm.class_score(x, labels, t, sde), grad, rtol=1e-10, atol=1e-10)
    # Bayes: grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x)
    xg = x.clone().requires_grad_(True)
    post = gm.log_posterior(xg, t, sde)
    (gpost,) = torch.autograd.grad(post.gather(1, labels[:, None]).sum(), xg)
    torch.testing.assert_close(gm.score(x, t, sde) + gpost, gm.class_score(x, labels, t, sde), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(post.exp().sum(1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(torch.logsumexp(gm.log_joint(x, t, sde), 1), gm.log_prob(x, t, sde))


def test_noisy_classifier_averages_to_the_prior_weights() -> None:
    """``E_x[p_t(y | x_t)] = w_y`` for ``x_t ~ p_t`` (the law of total probability), at every ``t``."""
    sde, gm = VPSDE(), mixture_4d()
    g = torch.Generator().manual_seed(1)
    x0 = gm.sample(20000, g)
    for t in (0.05, 0.5):
        xt = sde.alpha(torch.tensor(t)) * x0 + sde.sigma(torch.tensor(t)) * torch.randn(x0.shape, generator=g,
                                                                                           dtype=x0.dtype)
        avg = gm.log_posterior(xt, t, sde).exp().mean(0)
        torch.testing.assert_close(avg, gm.weights, atol=0.01, rtol=0)


def test_conditional_score_oracle_and_classifier_fn() -> None:
    sde, gm = VPSDE(), mixture_4d()
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.full((4,), 0.3, dtype=torch.float64)
    fn = gm.conditional_score_fn(sde)
    assert fn.num_classes == 2
    torch.testing.assert_close(fn(x, t), gm.score(x, t, sde))
    labels = torch.tensor([0, 1, -1, 1])
    out = fn(x, t, class_labels=labels)
    torch.testing.assert_close(out[[0, 1, 3]], gm.class_score(x, labels.clamp_min(0), t, sde)[[0, 1, 3]])
    torch.testing.assert_close(out[2], gm.score(x, t, sde)[2])
    with pytest.raises(ValueError, match=r"\[-1, 2\)"):
        fn(x, t, class_labels=torch.tensor([0, 2, 0, 0]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        gm.class_score(x, torch.tensor([0, -1, 0, 0]), t, sde)
    cls = gm.classifier_fn(sde)
    assert cls.num_classes == 2 and cls.sde is sde
    torch.testing.assert_close(torch.log_softmax(cls(x, t, class_labels=labels), 1), gm.log_posterior(x, t, sde))


@pytest.mark.parametrize("cls", [PSLD, CLD])
def test_phase_space_class_scores_and_classifier(cls: type) -> None:
    sde, gm = cls(), mixture_4d()
    pm = PhaseSpaceMixture(gm, sde)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(3, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0.05, 0.4, 0.9], dtype=torch.float64)
    labels = torch.tensor([1, 0, 1])
    zg = z.clone().requires_grad_(True)
    post = pm.log_posterior(zg, t)
    (gpost,) = torch.autograd.grad(post.gather(1, labels[:, None]).sum(), zg)
    torch.testing.assert_close(pm.score(z, t) + gpost, pm.class_score(z, labels, t), rtol=1e-8, atol=1e-8)
    # the class score of a single-component mixture is that mixture's score
    for k in (0, 1):
        single = PhaseSpaceMixture(GaussianMixture([1.0], gm.means[k:k + 1], gm.covs[k:k + 1]), sde)
        torch.testing.assert_close(pm.class_score(z, torch.full((3,), k), t), single.score(z, t))
    fn = pm.conditional_score_fn()
    torch.testing.assert_close(fn(z, t, class_labels=torch.tensor([-1, 0, 1])),
                               torch.stack([pm.score(z, t)[0], pm.class_score(z, labels, t)[1],
                                            pm.class_score(z, labels, t)[2]]))
    assert pm.classifier_fn().sde is sde


def test_condition_on_a_mask_reweights_by_the_observed_marginal() -> None:
    gm = mixture_4d()
    mask = torch.tensor([1, 0, 1, 0])
    x_obs = torch.tensor([0.4, 9.0, -0.7, 9.0], dtype=torch.float64)
    cond = gm.condition_mask(mask, x_obs)
    o, u = torch.tensor([0, 2]), torch.tensor([1, 3])
    y = x_obs[o]
    logw = torch.stack([torch.log(gm.weights[k]) + MultivariateNormal(gm.means[k][o], gm.covs[k][o][:, o]).log_prob(y)
                        for k in range(2)])
    torch.testing.assert_close(cond.weights, torch.softmax(logw, 0))
    for k in range(2):  # Schur complement, written with explicit index blocks
        S = gm.covs[k]
        gain = S[u][:, o] @ torch.linalg.inv(S[o][:, o])
        torch.testing.assert_close(cond.free.means[k], gm.means[k][u] + gain @ (y - gm.means[k][o]))
        torch.testing.assert_close(cond.free.covs[k], S[u][:, u] - gain @ S[o][:, u])
    x = cond.sample(50, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x[:, o], y.expand(50, 2))
    torch.testing.assert_close(cond.free_coordinates(x), x[:, u])


def test_condition_on_a_linear_map_is_proportional_to_the_density_on_the_affine_set() -> None:
    """Colorization-type observation (the mean of the coordinates): ``p(x_p + N u) / p_free(u)`` is constant."""
    gm = mixture_4d()
    A = torch.full((1, 4), 0.25, dtype=torch.float64)
    cond = gm.condition(A, torch.tensor([0.3], dtype=torch.float64))
    x = cond.sample(200, torch.Generator().manual_seed(4))
    torch.testing.assert_close(x @ A.T, torch.full((200, 1), 0.3, dtype=torch.float64))
    ratio = gm.log_prob(x) - cond.free.log_prob(cond.free_coordinates(x))
    assert float(ratio.max() - ratio.min()) < 1e-9
    with pytest.raises(ValueError, match="full row rank"):
        gm.condition(torch.ones(2, 4, dtype=torch.float64), torch.zeros(2))
    with pytest.raises(ValueError, match="A must have shape"):
        gm.condition(torch.ones(4, 4, dtype=torch.float64), torch.zeros(4))
    with pytest.raises(ValueError, match="mask must hold 4 entries"):
        gm.condition_mask(torch.tensor([1, 0, 2, 0]), torch.zeros(4))
