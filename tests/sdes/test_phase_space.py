"""The complete-recipe SDE, PSLD and CLD: kernel against the moment ODEs, stationarity, validation, equivalences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.stats import multivariate_normal

from scoresde import log_likelihood
from scoresde.likelihood import bits_per_dim
from scoresde.sdes import CLD, PSLD, VPSDE, RecipeSDE
from scoresde.sdes.linalg import apply_blocks
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture
from tests.sampling.test_phase_space_samplers import _one_thread  # noqa: F401 (autouse: 2x2 batches, one thread)

F64 = torch.float64
TIMES = [1e-5, 1e-3, 0.05, 0.3, 0.7, 1.0]
SDES = {
    "psld": lambda **kw: PSLD(**kw),
    "psld-linear-beta": lambda **kw: PSLD(beta_min=0.5, beta_max=12.0, **kw),
    "cld": lambda **kw: CLD(**kw),
    "cld-linear-beta": lambda **kw: CLD(beta_min=1.0, beta_max=6.0, **kw),
    "cld-underdamped": lambda **kw: CLD(friction=0.3, **kw),
}


def _moment_odes(sde: RecipeSDE, initial_cov: np.ndarray) -> solve_ivp:
    """Integrate ``dPhi/dt = -beta A Phi`` and ``dP/dt = -beta (A P + P A^T) + 2 beta D`` to tight tolerances."""
    A, D, k = sde.A.numpy(), sde.D.numpy(), sde.k

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        beta = sde.beta_0 + t * (sde.beta_1 - sde.beta_0)
        phi, P = y[: k * k].reshape(k, k), y[k * k :].reshape(k, k)
        return np.concatenate([(-beta * A @ phi).ravel(), (-beta * (A @ P + P @ A.T) + 2 * beta * D).ravel()])

    y0 = np.concatenate([np.eye(k).ravel(), initial_cov.ravel()])
    return solve_ivp(rhs, (0.0, 1.0), y0, t_eval=TIMES, rtol=1e-12, atol=1e-16, method="DOP853")


@pytest.mark.parametrize("name", sorted(SDES))
@pytest.mark.parametrize("mode", ["hsm", "dsm"])
def test_kernel_matches_the_moment_odes(name: str, mode: str) -> None:
    sde = SDES[name](score_matching=mode)
    init = sde.initial_cov.numpy() if mode == "hsm" else np.zeros((2, 2))
    sol = _moment_odes(sde, init)
    t = torch.tensor(TIMES, dtype=F64)
    phi, cov = sde.transition(t).numpy(), sde.kernel_cov(t).numpy()
    for i, ti in enumerate(TIMES):
        np.testing.assert_allclose(phi[i], sol.y[:4, i].reshape(2, 2), rtol=1e-9, atol=1e-13, err_msg=f"Phi({ti})")
        # Entry-wise relative accuracy, including CLD's O(t^3) position variance at t = 1e-5 (DSM mode).
        np.testing.assert_allclose(cov[i], sol.y[4:, i].reshape(2, 2), rtol=1e-8, atol=0, err_msg=f"Sigma({ti})")


@pytest.mark.parametrize("name", sorted(SDES))
def test_stationary_at_T(name: str) -> None:
    """At ``T`` the kernel forgets ``z_0``: mean map ~ 0 and covariance ~ the prior's ``diag(1, M)``.

    Not for the underdamped CLD (friction 0.3 instead of the critical 1): it has not mixed by ``T = 1``.
    """
    sde = SDES[name]()
    T = torch.tensor([sde.T], dtype=F64)
    if name != "cld-underdamped":
        assert sde.transition(T).abs().max() < 0.05
        torch.testing.assert_close(sde.kernel_cov(T)[0], sde.stationary_cov, atol=2e-3, rtol=0)
    # And N(0, S) is exactly invariant: starting there, the covariance stays S at every t.
    t = torch.tensor(TIMES, dtype=F64)
    torch.testing.assert_close(sde.kernel_cov(t, sde.stationary_cov), sde.stationary_cov.expand(len(TIMES), 2, 2),
                               atol=1e-12, rtol=0)


def test_psld_with_zero_gamma_is_cld() -> None:
    """PSLD(Gamma=0, nu=4, beta=8) and CLD(M^-1=4, beta=4) are the same SDE (Pandey & Mandt 2023, §3)."""
    psld = PSLD(beta_min=8.0, beta_max=8.0, nu=4.0, gamma=0.0, kappa=0.04)
    cld = CLD(m_inv=4.0, beta_min=4.0, beta_max=4.0, kappa=0.04)
    assert psld.m_inv == cld.m_inv == 4.0 and cld.friction == 1.0
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 6, 4, 4, generator=g, dtype=F64)
    t = torch.rand(16, generator=g, dtype=F64)
    for a, b in zip(psld.sde(z, t), cld.sde(z, t), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(psld.marginal_prob(z, t), cld.marginal_prob(z, t), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(psld.prior_logp(z), cld.prior_logp(z))
    torch.testing.assert_close(psld.initial_cov, cld.initial_cov)


def test_psld_drift_is_the_papers() -> None:
    """PSLD: ``dx = beta/2 (M^-1 m - Gamma x)``, ``dm = beta/2 (-x - nu m)``, ``g = sqrt(beta (Gamma, M nu))``."""
    sde = PSLD(beta_min=2.0, beta_max=10.0, nu=4.01, gamma=0.01)
    M = 4 / (0.01 - 4.01) ** 2
    x, m = torch.randn(3, 1, dtype=F64), torch.randn(3, 1, dtype=F64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    beta = 2.0 + 8.0 * t[:, None]
    f, g = sde.sde(torch.cat([x, m], 1), t)
    torch.testing.assert_close(f, torch.cat([beta / 2 * (m / M - 0.01 * x), beta / 2 * (-x - 4.01 * m)], 1))
    torch.testing.assert_close(g, torch.cat([(beta * 0.01).sqrt(), (M * 4.01 * beta).sqrt()], 1))
    assert sde.M == pytest.approx(M)


def test_one_by_one_recipe_is_vp() -> None:
    """``k = 1``, ``D = 1/2``, ``Q = 0``, ``S = 1`` is the VP SDE: same drift, diffusion, mean and std."""
    vp = VPSDE(beta_min=0.1, beta_max=20.0)
    rec = RecipeSDE([[0.5]], [[0.0]], [[1.0]], beta_min=0.1, beta_max=20.0)
    x = torch.randn(5, 3, dtype=F64)
    t = torch.tensor([1e-4, 0.01, 0.2, 0.6, 1.0], dtype=F64)
    f, g = rec.sde(x, t)
    f_vp, g_vp = vp.sde(x, t)
    torch.testing.assert_close(f, f_vp)
    torch.testing.assert_close(g, g_vp[:, None].expand_as(g))
    mean, std = rec.marginal_prob(x, t)
    torch.testing.assert_close(mean, vp.alpha(t)[:, None] * x)
    torch.testing.assert_close(std[:, 0, 0], vp.sigma(t), rtol=1e-10, atol=0)


def test_state_layout_and_prior() -> None:
    sde = PSLD()
    assert sde.state_shape((8, 3, 32, 32)) == (8, 6, 32, 32)
    z = sde.prior_sampling((4000, 6, 2, 2), torch.Generator().manual_seed(1), dtype=F64)
    torch.testing.assert_close(sde.data_part(z), z[:, :3])
    var = z.transpose(0, 1).reshape(6, -1).var(1)
    torch.testing.assert_close(var, torch.tensor([1.0] * 3 + [sde.M] * 3, dtype=F64), rtol=0.05, atol=0)
    # prior_logp is the density of N(0, I) x N(0, M I) over all 24 coordinates.
    zs = z[:5].reshape(5, 2, -1)
    ref = multivariate_normal(np.zeros(2), np.diag([1.0, sde.M]))
    expected = ref.logpdf(zs.permute(0, 2, 1).numpy()).sum(-1)
    np.testing.assert_allclose(sde.prior_logp(z[:5]).numpy(), expected, rtol=1e-12)


def test_marginal_prob_factor_modes() -> None:
    t = torch.tensor([1e-3, 0.4], dtype=F64)
    z = torch.randn(2, 4, dtype=F64)
    for mode in ("lower", "upper"):
        sde = PSLD(decomp_mode=mode)
        mean, L = sde.marginal_prob(z, t)
        torch.testing.assert_close(L @ L.transpose(-1, -2), sde.kernel_cov(t))
        tri = torch.tril(L) if mode == "lower" else torch.triu(L)
        torch.testing.assert_close(L, tri)
        torch.testing.assert_close(mean, apply_blocks(sde.transition(t), z))
    # HSM starts from the momentum variance kappa M, DSM from zero.
    zero = torch.zeros(1, dtype=F64)
    hsm, dsm = PSLD(score_matching="hsm"), PSLD(score_matching="dsm")
    assert float(hsm.kernel_cov(zero + 1e-9)[0, 1, 1]) == pytest.approx(0.04 * hsm.M, rel=1e-6)
    assert float(dsm.kernel_cov(zero + 1e-9)[0, 1, 1]) < 1e-8


def test_denoise_and_ancestral_mean_are_exact_for_gaussian_data() -> None:
    """For ``z_0 ~ N(0, P)`` the score is linear: Tweedie gives ``E[z_0 | z_t]`` and the ancestral step's mean is
    ``E[z_s | z_t] = Cov_s Psi^T Cov_t^-1 z_t``; its noise has the kernel posterior covariance (DDPM's rule)."""
    sde = CLD(beta_min=1.0, beta_max=6.0, score_matching="dsm")
    P = torch.tensor([[0.5, 0.1], [0.1, 0.3]], dtype=F64)
    t, s = torch.full((8,), 0.4, dtype=F64), torch.full((8,), 0.3, dtype=F64)
    cov_t, cov_s = sde.kernel_cov(t, P), sde.kernel_cov(s, P)
    zt = torch.randn(8, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    score = -apply_blocks(torch.linalg.inv(cov_t), zt)
    gain = P @ sde.transition(t)[0].T @ torch.linalg.inv(cov_t[0])
    torch.testing.assert_close(sde.denoise(zt, t, score), apply_blocks(gain, zt))
    psi = sde.transition(t, s)[0]
    _, mean = sde.ancestral_step(zt, t, s, score, torch.zeros_like(zt))
    torch.testing.assert_close(mean, apply_blocks(cov_s[0] @ psi.T @ torch.linalg.inv(cov_t[0]), zt))
    noise = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    z, mean = sde.ancestral_step(zt[:1].expand(100_000, 2), t[:1].expand(100_000), s[:1].expand(100_000),
                                 score[:1].expand(100_000, 2), noise)
    Ks, Kt = sde.kernel_cov(s[:1])[0], sde.kernel_cov(t[:1])[0]
    posterior = Ks - Ks @ psi.T @ torch.linalg.inv(Kt) @ psi @ Ks
    torch.testing.assert_close(torch.cov((z - mean).T), posterior, rtol=0.03, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"D": [[1.0, 0.0], [0.0, -0.1]]}, "positive semi-definite"),
        ({"D": [[1.0, 0.2], [0.3, 1.0]]}, "symmetric"),
        ({"D": [[1.0, 0.2], [0.2, 1.0]]}, "diagonal"),
        ({"Q": [[0.0, 1.0], [1.0, 0.0]]}, "skew-symmetric"),
        ({"Q": [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]}, "2 x 2"),
        ({"stationary_cov": [[1.0, 0.0], [0.0, 0.0]]}, "positive definite"),
        ({"initial_cov": [[0.0, 0.0], [0.0, -1.0]]}, "positive semi-definite"),
        ({"beta_min": 0.0}, "beta_min"),
        ({"beta_min": 5.0, "beta_max": 1.0}, "beta_max"),
        ({"score_matching": "ism"}, "hsm, dsm"),
        ({"decomp_mode": "diag"}, "lower, upper"),
        ({"D": [[[1.0]]]}, "square"),
    ],
)
def test_recipe_validation(kwargs: dict, match: str) -> None:
    args = {"D": [[0.0, 0.0], [0.0, 1.0]], "Q": [[0.0, -1.0], [1.0, 0.0]], "stationary_cov": [[1.0, 0.0], [0.0, 0.25]],
            "beta_min": 4.0, "beta_max": 4.0}
    args.update(kwargs)
    D, Q, S = args.pop("D"), args.pop("Q"), args.pop("stationary_cov")
    with pytest.raises(ValueError, match=match):
        RecipeSDE(D, Q, S, **args)


def test_instance_validation() -> None:
    with pytest.raises(ValueError, match="gamma != nu"):
        PSLD(gamma=4.0, nu=4.0)
    with pytest.raises(ValueError, match="kappa"):
        PSLD(kappa=-1.0)
    with pytest.raises(ValueError, match="m_inv"):
        CLD(m_inv=0.0)
    with pytest.raises(ValueError, match="friction"):
        CLD(friction=-1.0)
    with pytest.raises(ValueError, match="divisible by 2"):
        PSLD().data_part(torch.zeros(2, 3))


def test_augment_and_initial_logp() -> None:
    sde = PSLD()
    x = torch.randn(50_000, 1, dtype=F64)
    z = sde.augment(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z[:, :1], x)
    assert float(z[:, 1].var()) == pytest.approx(0.04 * sde.M, rel=0.03)
    expected = -0.5 * z[:, 1] ** 2 / (0.04 * sde.M) - 0.5 * math.log(2 * math.pi * 0.04 * sde.M)
    torch.testing.assert_close(sde.initial_logp(z), expected)


@pytest.mark.parametrize("name", ["psld", "cld"])
def test_augmented_likelihood_bound_is_exact_for_the_mixture(name: str) -> None:
    """``scoresde.log_likelihood`` on the phase space with the exact score gives the exact ``log p_eps(x, m_0)``,
    and ``log p(x, m_0) - log q(m_0)`` (CLD's entropy-corrected augmented bound) equals ``log p(x)`` for every
    momentum draw, hence in expectation (``m_0`` is independent of ``x_0``)."""
    sde = SDES[name]()
    gm = GaussianMixture.example_2d()
    pm = PhaseSpaceMixture(gm, sde)
    g = torch.Generator().manual_seed(5)
    x = gm.sample(12, g)
    z = sde.augment(x, g)
    eps = 1e-5
    exact = pm.log_prob(z, eps)
    logp, info = log_likelihood(sde, pm.score, z, trace="exact", eps=eps, rtol=1e-6, atol=1e-6, x_is_state=True,
                                return_info=True)
    # The ODE part alone, closed with the exact log p_T instead of the prior: measured 3.4e-5 at rtol = atol = 1e-6.
    T = torch.full((z.shape[0],), sde.T, dtype=F64)
    torch.testing.assert_close(info.delta_logp + pm.log_prob(info.latent, T), exact, atol=2e-4, rtol=0)
    # With the N(0, I) x N(0, M I) prior: p_T is not exactly stationary at T = 1 (measured 2.6e-3 and 2.7e-3 nats).
    torch.testing.assert_close(logp, exact, atol=5e-3, rtol=0)
    # The entropy-corrected bound: exact at t = 0 and for eps -> 0 (eps = 1e-5 adds 8e-5 to the momentum
    # variance kappa M = 1e-2, measured 7.2e-3 nats; 1e-7 gives < 1e-4).
    torch.testing.assert_close(pm.log_prob(z, 0.0) - sde.initial_logp(z), gm.log_prob(x), atol=1e-10, rtol=0)
    torch.testing.assert_close(pm.log_prob(z, 1e-7) - sde.initial_logp(z), gm.log_prob(x), atol=1e-4, rtol=0)
    torch.testing.assert_close(logp - sde.initial_logp(z), gm.log_prob(x), atol=1.5e-2, rtol=0)
    assert info.latent.shape == z.shape


def test_augmented_log_likelihood_of_data() -> None:
    """The bound equals ``log p(x)`` up to the eps bias for every momentum draw; its stderr is the spread over the
    draws (here only the ODE error and the eps bias, which depends on the draw)."""
    sde = CLD()
    gm = GaussianMixture.example_2d()
    pm = PhaseSpaceMixture(gm, sde)
    x = gm.sample(6, torch.Generator().manual_seed(2))
    bound, info = log_likelihood(sde, pm.score, x, n_probes=4, trace="exact", rtol=1e-6, atol=1e-6,
                                 generator=torch.Generator().manual_seed(3), return_info=True)
    assert bound.shape == info.stderr.shape == (6,) and info.latent.shape == (6, 4)
    torch.testing.assert_close(bound, gm.log_prob(x), atol=1.5e-2, rtol=0)
    assert float(info.stderr.max()) < 2e-2  # measured 9e-3: the eps bias depends on the momentum draw
    torch.testing.assert_close(bound, info.joint_logp - info.auxiliary_logp)
    with pytest.raises(ValueError, match="n_probes"):
        log_likelihood(sde, pm.score, x, n_probes=0)


def test_augmented_bits_per_dim() -> None:
    """Midpoint dequantisation and the exact trace: the bpd is the bound of the dequantised data in bits/dim."""
    sde = PSLD()
    gm = GaussianMixture([1.0], [[0.5, 0.4]], [0.2])
    pm = PhaseSpaceMixture(gm, sde)
    k = torch.tensor([[120, 100], [140, 90], [128, 128]], dtype=torch.uint8)
    opts = {"trace": "exact", "rtol": 1e-6, "atol": 1e-6}
    bpd, info = bits_per_dim(sde, pm.score, k, dequantization="midpoint", n_probes=2, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(0), return_info=True, **opts)
    y = (k.double() + 0.5) / 256
    bound = log_likelihood(sde, pm.score, y, n_probes=2, generator=torch.Generator().manual_seed(0), **opts)
    torch.testing.assert_close(bpd, -bound / (2 * math.log(2)) + 8)
    # The bound is tight for the exact score: bpd = -log2 p(y) / D + 8 up to the eps bias.
    torch.testing.assert_close(bpd, -gm.log_prob(y) / (2 * math.log(2)) + 8, atol=2e-2, rtol=0)
    assert info.stderr.shape == (3,)


def test_gamma_means_position_damping_on_both_phase_space_sdes() -> None:
    """8(k): CLD's initial velocity variance ratio is kappa, as PSLD's; gamma is the position damping (0 for CLD)."""
    assert CLD().gamma == 0.0 and CLD().kappa == 0.04 and PSLD().gamma == 0.01 and PSLD().kappa == 0.04
    with pytest.raises(TypeError, match="gamma"):  # the 0.1 alias of kappa is gone
        CLD(gamma=0.1)
