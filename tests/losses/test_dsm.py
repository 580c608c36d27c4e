"""DSM losses against closed forms: with the exact score of Gaussian data the expected loss is known exactly.

For ``x_0 ~ N(0, s^2 I)`` and ``x_t = a x_0 + sigma z`` the exact score is ``-x_t / v`` with ``v = a^2 s^2 + sigma^2``,
and per dimension ``E||sigma s + z||^2 = a^2 s^2 / v`` and ``E||s + z / sigma||^2 = 1/sigma^2 - 1/v``.
"""

from __future__ import annotations

import math

import pytest
import torch

from scoresde.losses import ddpm_loss, sde_loss, smld_loss
from scoresde.models import as_model
from scoresde.sdes import VESDE, VPSDE, SubVPSDE

S = 0.7  # data standard deviation
SHAPE = (4000, 2, 3, 3)
D = 18


def _data(seed: int = 0) -> torch.Tensor:
    return S * torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _exact_score(sde):
    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, sigma = sde.alpha(t), sde.sigma(t)
        v = a**2 * S**2 + sigma**2
        return -x / v.reshape(-1, 1, 1, 1)

    return score_fn


def _mc_close(per_example: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Per-example losses average to the closed form within 5 standard errors."""
    err = (per_example - expected).mean()
    se = (per_example - expected).std() / math.sqrt(per_example.shape[0])
    assert abs(err) < 5 * se + 1e-12, f"{what}: mean error {err:.4g}, standard error {se:.3g}"


@pytest.mark.parametrize("sde_cls", [VESDE, VPSDE, SubVPSDE])
@pytest.mark.parametrize("reduce_mean", [True, False])
@pytest.mark.parametrize("likelihood_weighting", [False, True])
def test_sde_loss_matches_closed_form(sde_cls, reduce_mean: bool, likelihood_weighting: bool) -> None:
    sde = sde_cls()
    x = _data()
    t = torch.linspace(0.05, 1.0, SHAPE[0], dtype=torch.float64)
    per = sde_loss(_exact_score(sde), sde, x, t=t, reduce_mean=reduce_mean, likelihood_weighting=likelihood_weighting,
                   generator=torch.Generator().manual_seed(1), reduction="none")
    a, sigma = sde.alpha(t), sde.sigma(t)
    v = a**2 * S**2 + sigma**2
    per_dim = sde.sde(x, t)[1] ** 2 * (1 / sigma**2 - 1 / v) if likelihood_weighting else a**2 * S**2 / v
    expected = per_dim * (1.0 if reduce_mean else 0.5 * D)
    _mc_close(per, expected, f"{sde_cls.__name__} reduce_mean={reduce_mean} lw={likelihood_weighting}")


def test_sde_loss_detects_a_wrong_score() -> None:
    sde = VPSDE()
    x, t = _data(), torch.full((SHAPE[0],), 0.5, dtype=torch.float64)
    exact = sde_loss(_exact_score(sde), sde, x, t=t, reduce_mean=True, generator=torch.Generator().manual_seed(1))
    wrong = sde_loss(lambda y, s: 1.1 * _exact_score(sde)(y, s), sde, x, t=t, reduce_mean=True,
                     generator=torch.Generator().manual_seed(1))
    assert wrong > exact * 1.01


def test_replayed_draws_equal_generated_draws() -> None:
    """Draw order is the reference's: t (U(eps, T)) first, then the noise."""
    sde, x, eps = VESDE(), _data()[:16], 1e-5
    score = _exact_score(sde)
    loss = sde_loss(score, sde, x, eps=eps, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    t = torch.rand(16, generator=g, dtype=torch.float64) * (sde.T - eps) + eps
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    assert torch.equal(loss, sde_loss(score, sde, x, t=t, noise=z, eps=eps))
    # An independent evaluation of eq. 7 with the default weighting lambda = sigma^2 and 0.5 * sum reduction.
    std = sde.sigma(t).reshape(-1, 1, 1, 1)
    direct = (0.5 * ((score(x + std * z, t) * std + z) ** 2).flatten(1).sum(1)).mean()
    torch.testing.assert_close(loss, direct, rtol=1e-12, atol=0)


def test_smld_loss_closed_form_and_order() -> None:
    sde = VESDE(sigma_min=0.01, sigma_max=2.0, N=10)
    sigmas_desc = torch.flip(sde.discrete_sigmas, (0,)).double()
    x = _data()
    labels = torch.arange(SHAPE[0]) % sde.N

    def net(y: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:  # exact score at the network's noise level
        return -y / (S**2 + sigmas_desc[lab] ** 2).reshape(-1, 1, 1, 1)

    per = smld_loss(net, sde, x, labels=labels, reduction="none", generator=torch.Generator().manual_seed(2))
    sig = sigmas_desc[labels]
    _mc_close(per, 0.5 * D * S**2 / (S**2 + sig**2), "smld")
    # Label 0 is sigma_max (the network's descending order).
    one = smld_loss(net, sde, x[:1], labels=torch.tensor([0]), noise=torch.ones_like(x[:1]), reduction="none")
    y = x[:1] + 2.0
    expected = 0.5 * 4.0 * ((net(y, torch.tensor([0])) + 1 / 2.0) ** 2).sum()
    torch.testing.assert_close(one[0], expected, rtol=1e-6, atol=0)


def test_ddpm_loss_closed_form() -> None:
    sde = VPSDE(N=1000)
    x = _data()
    labels = torch.arange(SHAPE[0]) % sde.N
    a_tab, s_tab = sde.sqrt_alphas_cumprod.double(), sde.sqrt_1m_alphas_cumprod.double()

    def net(y: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:  # E[z | x_i], the exact noise prediction
        a, s = a_tab[lab], s_tab[lab]
        return (s / (a**2 * S**2 + s**2)).reshape(-1, 1, 1, 1) * y

    per = ddpm_loss(net, sde, x, labels=labels, reduction="none", generator=torch.Generator().manual_seed(3))
    a, s = a_tab[labels], s_tab[labels]
    _mc_close(per, a**2 * S**2 / (a**2 * S**2 + s**2), "ddpm")


class _Wrapped:
    """A stand-in model exposing ``.net`` like :class:`scoresde.models.ScoreModel`."""

    def __init__(self, net) -> None:
        self.net = net


def test_model_objects_are_accepted() -> None:
    sde = VPSDE(N=100)
    x = _data()[:8]
    net = lambda y, lab: y * 0.1  # noqa: E731
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(ddpm_loss(_Wrapped(net), sde, x, generator=g()), ddpm_loss(net, sde, x, generator=g()))
    score = _exact_score(sde)
    assert torch.equal(sde_loss(as_model(sde, score), sde, x, generator=g()), sde_loss(score, sde, x, generator=g()))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: sde_loss(lambda y, t: y, VPSDE(), x, eps=0.0), r"eps must lie in \(0, T=1.0\)"),
        (lambda x: sde_loss(lambda y, t: y, VPSDE(), x, t=torch.ones(3)), r"t must have shape \(4,\)"),
        (lambda x: sde_loss(lambda y, t: y, VPSDE(), x, noise=torch.ones(4, 2)), r"noise has shape \(4, 2\)"),
        (lambda x: sde_loss(lambda y, t: y, VPSDE(), x, reduction="sum"), "unknown reduction 'sum'"),
        (lambda x: smld_loss(lambda y, t: y, VPSDE(), x), "smld_loss needs a VESDE, got VPSDE"),
        (lambda x: ddpm_loss(lambda y, t: y, VESDE(), x), "ddpm_loss needs a VPSDE, got VESDE"),
        (lambda x: ddpm_loss(lambda y, t: y, VPSDE(N=30), x, labels=torch.tensor([0, 1, 2, 30])),
         r"labels must lie in \[0, 29\], got \[0, 30\]"),
        (lambda x: ddpm_loss(lambda y, t: y, VPSDE(N=30), x, labels=torch.zeros(4)), "integer tensor"),
        (lambda x: ddpm_loss(lambda y, t: y, VPSDE(N=10), x), r"beta_max / N < 1 \(got 20 / 10 = 2\)"),
    ],
)
def test_bad_arguments(call, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        call(torch.zeros(4, 1, 2, 2))
