"""The Gaussian-mixture oracle is right: its score, its density and its perturbed marginals.

Every sampler and likelihood test trusts ``GaussianMixture``; here it is checked against independent facts:
the score is the autograd gradient of ``log_prob``; ``log_prob`` integrates to 1 (grid quadrature in 2-D,
importance sampling in 3-D) and its moments are those of ``x_t = alpha x_0 + sigma eps`` (``E x_t = alpha m``,
``Cov x_t = alpha^2 Cov x_0 + sigma^2 I`` with ``Cov x_0 = sum_k w_k (S_k + mu_k mu_k^T) - m m^T``);
samples have those moments and the component laws; bad parameters are refused with the bad value named.
"""

from __future__ import annotations

import math

import pytest
import torch

from scoresde.sdes import VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture

SDES = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}
TIMES = [1e-4, 0.05, 0.3, 0.7, 1.0]


def anisotropic_3d() -> GaussianMixture:
    """Three correlated, unequal components in 3-D (random SPD covariances, fixed seed)."""
    g = torch.Generator().manual_seed(11)
    a = torch.randn(3, 3, 3, generator=g, dtype=torch.float64)
    covs = 0.3 * a @ a.transpose(-1, -2) + 0.05 * torch.eye(3, dtype=torch.float64)
    means = 2.0 * torch.randn(3, 3, generator=g, dtype=torch.float64)
    return GaussianMixture([0.2, 0.5, 0.3], means, covs)


MIXTURES = {"example_2d": GaussianMixture.example_2d, "anisotropic_3d": anisotropic_3d}


def moments_formula(gm: GaussianMixture, alpha: float, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``alpha m`` and covariance ``alpha^2 Cov x_0 + sigma^2 I`` of ``x_t = alpha x_0 + sigma eps``."""
    w, mu, S = gm.weights, gm.means, gm.covs
    m = w @ mu
    second = (w[:, None, None] * (S + mu[:, :, None] * mu[:, None, :])).sum(0)
    cov0 = second - torch.outer(m, m)
    return alpha * m, alpha**2 * cov0 + sigma**2 * torch.eye(gm.dim, dtype=torch.float64)


def schedule(sde_name: str | None, t: float) -> tuple[float, float, object]:
    """``(alpha(t), sigma(t), sde)``; ``(1, 0, None)`` for the clean mixture."""
    if sde_name is None:
        return 1.0, 0.0, None
    sde = SDES[sde_name]()
    tt = torch.tensor([t], dtype=torch.float64)
    return float(sde.alpha(tt)), float(sde.sigma(tt)), sde


# -- score ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mixture", sorted(MIXTURES))
@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp", None])
def test_score_is_the_gradient_of_log_prob(mixture: str, sde_name: str | None) -> None:
    gm = MIXTURES[mixture]()
    g = torch.Generator().manual_seed(0)
    n_per_t = 40
    times = [0.0] if sde_name is None else TIMES
    t = torch.tensor(times, dtype=torch.float64).repeat_interleave(n_per_t)
    sde = None if sde_name is None else SDES[sde_name]()
    x0 = gm.sample(t.shape[0], g)
    if sde is None:
        x, t_arg = x0, None
    else:
        x = sde.alpha(t)[:, None] * x0 + sde.sigma(t)[:, None] * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
        t_arg = t
    x[::7] *= 3.0  # some points far out in the tails, where one component dominates
    x = x.requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob(x, t_arg, sde).sum(), x)
    score = gm.score(x.detach(), t_arg, sde)
    assert score.dtype == torch.float64 and score.shape == x.shape
    torch.testing.assert_close(score, grad, rtol=1e-9, atol=1e-9)


def test_score_fn_matches_score_any_shape_and_dtype() -> None:
    gm, sde = GaussianMixture.example_2d(), VPSDE()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 2, dtype=torch.float64, generator=g)
    t = torch.rand(16, dtype=torch.float64, generator=g)
    expected = gm.score(x, t, sde)
    out = gm.score_fn(sde)(x.reshape(16, 1, 2).float(), t.float())
    assert out.shape == (16, 1, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out.reshape(16, 2).double(), expected, rtol=1e-5, atol=1e-5)


def test_scalar_time_equals_per_example_time() -> None:
    gm, sde = GaussianMixture.example_2d(), VESDE()
    x = gm.sample(8, torch.Generator().manual_seed(2))
    per_example = torch.full((8,), 0.4, dtype=torch.float64)
    torch.testing.assert_close(gm.log_prob(x, 0.4, sde), gm.log_prob(x, per_example, sde), rtol=0, atol=0)
    scalar = torch.tensor(0.4, dtype=torch.float64)
    torch.testing.assert_close(gm.score(x, scalar, sde), gm.score(x, per_example, sde), rtol=0, atol=0)


def test_clean_density_is_the_t0_marginal_of_vp() -> None:
    """``alpha(0) = 1, sigma(0) = 0`` for VP/sub-VP: the perturbed density at t=0 is the clean one."""
    gm = GaussianMixture.example_2d()
    x = gm.sample(32, torch.Generator().manual_seed(3))
    for sde in (VPSDE(), SubVPSDE()):
        torch.testing.assert_close(gm.log_prob(x, 0.0, sde), gm.log_prob(x), rtol=1e-12, atol=1e-12)


def test_log_prob_is_a_logsumexp_of_gaussians() -> None:
    """Against ``torch.distributions`` component by component, at a perturbed time (independent implementation)."""
    gm, sde = anisotropic_3d(), SubVPSDE()
    t = torch.tensor([0.2], dtype=torch.float64)
    a, s = float(sde.alpha(t)), float(sde.sigma(t))
    comps = torch.distributions.MultivariateNormal(a * gm.means, a**2 * gm.covs + s**2 * torch.eye(3).double())
    mix = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(gm.weights), comps)
    x = gm.sample(64, torch.Generator().manual_seed(4)) * 0.9
    torch.testing.assert_close(gm.log_prob(x, 0.2, sde), mix.log_prob(x), rtol=1e-12, atol=1e-12)


# -- normalisation and moments of the density -------------------------------------------------------
@pytest.mark.parametrize(("sde_name", "t"), [(None, 0.0), ("ve", 0.5), ("ve", 1.0), ("vp", 0.3), ("vp", 1.0),
                                             ("subvp", 0.3)])
def test_2d_density_integrates_to_one_with_the_right_moments(sde_name: str | None, t: float) -> None:
    gm = GaussianMixture.example_2d()
    alpha, sigma, sde = schedule(sde_name, t)
    mean, cov = moments_formula(gm, alpha, sigma)
    spread = alpha * float((gm.means - gm.weights @ gm.means).abs().max())
    half = spread + 10.0 * math.sqrt(alpha**2 * float(torch.linalg.eigvalsh(gm.covs).max()) + sigma**2)
    n = 801
    axis = [torch.linspace(float(c) - half, float(c) + half, n, dtype=torch.float64) for c in mean]
    h = (axis[0][1] - axis[0][0]) * (axis[1][1] - axis[1][0])
    pts = torch.stack(torch.meshgrid(*axis, indexing="ij"), -1).reshape(-1, 2)
    p = torch.exp(gm.log_prob(pts, None if sde is None else t, sde)) * h  # midpoint rule: spectral for Gaussians
    assert abs(float(p.sum()) - 1.0) < 1e-8
    got_mean = (p[:, None] * pts).sum(0)
    centred = pts - got_mean
    got_cov = (p[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
    torch.testing.assert_close(got_mean, mean, rtol=0, atol=1e-8 * max(1.0, half))
    torch.testing.assert_close(got_cov, cov, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize(("sde_name", "t"), [(None, 0.0), ("ve", 0.3), ("vp", 0.5)])
def test_3d_density_integrates_to_one_by_importance_sampling(sde_name: str | None, t: float) -> None:
    """``E_q[p / q] = 1`` under a proposal with twice the component covariances (heavier tails than ``p``)."""
    gm = anisotropic_3d()
    alpha, sigma, sde = schedule(sde_name, t)
    cov_t = alpha**2 * gm.covs + sigma**2 * torch.eye(3, dtype=torch.float64)
    comps = torch.distributions.MultivariateNormal(alpha * gm.means, 2.0 * cov_t)
    q = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(torch.ones(3) / 3), comps)
    torch.manual_seed(5)
    z = q.sample((100_000,))
    ratio = torch.exp(gm.log_prob(z, None if sde is None else t, sde) - q.log_prob(z))
    estimate, stderr = float(ratio.mean()), float(ratio.std() / math.sqrt(ratio.shape[0]))
    assert stderr < 0.005
    assert abs(estimate - 1.0) < 4 * stderr, (estimate, stderr)


# -- samples ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mixture", sorted(MIXTURES))
@pytest.mark.parametrize(("sde_name", "t"), [(None, 0.0), ("ve", 0.4), ("vp", 0.4), ("subvp", 0.6)])
def test_perturbed_samples_have_the_formula_moments(mixture: str, sde_name: str | None, t: float) -> None:
    gm = MIXTURES[mixture]()
    alpha, sigma, _ = schedule(sde_name, t)
    g = torch.Generator().manual_seed(6)
    n = 100_000
    x_t = alpha * gm.sample(n, g) + sigma * torch.randn(n, gm.dim, generator=g, dtype=torch.float64)
    mean, cov = moments_formula(gm, alpha, sigma)
    # Standard errors: Var(mean_i) = C_ii / n; Var(C_ij) <= (C_ii C_jj + C_ij^2) (1 + excess kurtosis) / n.
    sd = cov.diagonal().sqrt()
    torch.testing.assert_close(x_t.mean(0), mean, rtol=0, atol=float(5 * sd.max() / math.sqrt(n)))
    torch.testing.assert_close(torch.cov(x_t.T), cov, rtol=0, atol=float(15 * sd.max() ** 2 / math.sqrt(n)))


def test_samples_come_from_their_components() -> None:
    gm = anisotropic_3d()
    n = 60_000
    x, labels = gm.sample(n, torch.Generator().manual_seed(7), return_labels=True)
    proportions = torch.bincount(labels, minlength=3).double() / n
    torch.testing.assert_close(proportions, gm.weights, rtol=0, atol=0.01)
    for k in range(3):
        xk = x[labels == k]
        scale = float(gm.covs[k].diagonal().max().sqrt())
        torch.testing.assert_close(xk.mean(0), gm.means[k], rtol=0, atol=8 * scale / math.sqrt(xk.shape[0]))
        torch.testing.assert_close(torch.cov(xk.T), gm.covs[k], rtol=0, atol=20 * scale**2 / math.sqrt(xk.shape[0]))


def test_samples_are_reproducible_from_a_generator() -> None:
    gm = GaussianMixture.example_2d()
    a = gm.sample(50, torch.Generator().manual_seed(8))
    b = gm.sample(50, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)


def test_responsibilities_are_a_posterior() -> None:
    gm = GaussianMixture.example_2d()
    r = gm.responsibilities(gm.means)
    torch.testing.assert_close(r.sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.equal(r.argmax(1), torch.arange(3))
    # Bayes' rule against the log-densities of the components.
    x = gm.sample(10, torch.Generator().manual_seed(9))
    comps = torch.distributions.MultivariateNormal(gm.means, gm.covs)
    log_joint = torch.log(gm.weights) + comps.log_prob(x[:, None, :])
    torch.testing.assert_close(gm.responsibilities(x), torch.softmax(log_joint, 1))


def test_dimension_and_mean() -> None:
    gm = anisotropic_3d()
    assert (gm.dim, gm.num_components) == (3, 3)
    torch.testing.assert_close(gm.mean(), gm.weights @ gm.means)
    iso = GaussianMixture([0.25, 0.75], [[0.0], [1.0]], [0.5, 2.0])
    torch.testing.assert_close(iso.covs[:, 0, 0], torch.tensor([0.25, 4.0], dtype=torch.float64))


# -- validation ------------------------------------------------------------------------------------
EYE = [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    ("weights", "means", "covs", "match"),
    [
        ([0.5, 0.6], [[0, 0], [1, 1]], [EYE, EYE], r"summing to 1, got \[0\.5, 0\.6"),
        ([-0.2, 1.2], [[0, 0], [1, 1]], [EYE, EYE], r"positive.*-0\.2"),
        ([[0.5, 0.5]], [[0, 0], [1, 1]], [EYE, EYE], r"1-D"),
        ([0.5, 0.5], [[0, 0], [1, 1], [2, 2]], [EYE, EYE], r"\(K=2, d\), got \(3, 2\)"),
        ([0.5, 0.5], [0, 1], [EYE, EYE], r"\(K=2, d\), got \(2,\)"),
        ([0.5, 0.5], [[0, 0], [1, 1]], [EYE], r"\(K=2, d=2, d=2\) or \(K,\), got \(1, 2, 2\)"),
        ([0.5, 0.5], [[0, 0], [1, 1]], [1.0, -0.5], r"positive standard deviations, got \[1\.0, -0\.5\]"),
        ([0.5, 0.5], [[0, 0], [1, 1]], [EYE, [[1.0, 2.0], [2.0, 1.0]]], r"component 1 has smallest eigenvalue -1"),
        ([0.5, 0.5], [[0, 0], [1, 1]], [[[1.0, 0.3], [0.0, 1.0]], EYE], r"symmetric; component 0 .* 0\.3"),
        ([0.5, 0.5], [[0, float("nan")], [1, 1]], [EYE, EYE], r"finite"),
    ],
)
def test_bad_parameters_are_refused_naming_the_value(weights, means, covs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GaussianMixture(weights, means, covs)


def test_bad_queries_are_refused() -> None:
    gm, sde = GaussianMixture.example_2d(), VPSDE()
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="x has 3 dimensions per example, the mixture has 2"):
        gm.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="t is required"):
        gm.score(x, None, sde)
    with pytest.raises(ValueError, match="t was given without an sde"):
        gm.log_prob(x, 0.5)
    with pytest.raises(ValueError, match=r"shape \(B=4,\), got \(3,\)"):
        gm.log_prob(x, torch.ones(3), sde)
