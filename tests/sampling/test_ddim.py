"""DDIM on VE, VP and sub-VP: the step against an independent closed form, the path against a tight ODE solve from the
same start, the distribution with the exact mixture score, and the bad inputs."""

from __future__ import annotations

import itertools

import pytest
import torch

from scoresde import sample
from scoresde.sdes import CLD, PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture, energy_distance
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

F64 = torch.float64
SDES = {"ve": lambda: VESDE(sigma_min=0.01, sigma_max=10.0, N=1000), "vp": lambda: VPSDE(N=1000),
        "subvp": lambda: SubVPSDE(N=1000)}


def _linear_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth, t-dependent, non-trivial score (not any model's exact one: the closed form below must not care)."""
    return -x * (1.0 + t[:, None]) + 0.3 * torch.sin(x.flip(1))


@pytest.mark.parametrize("name", list(SDES))
def test_deterministic_step_is_the_exponential_integrator_first_order_step(name: str) -> None:
    """eta=0: x_s = alpha_s/alpha_t x_t - sigma_s (e^h - 1) eps_hat, h = lambda_s - lambda_t (Lu et al. 2022, eq. 3.7),
    written here from the half log-SNR, independently of the sampler's alpha/sigma form."""
    sde = SDES[name]()
    times = torch.tensor([0.9, 0.55, 0.2, 0.03], dtype=F64)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = sample(sde, _linear_score, (8, 2), "ddim", times=times, x_T=x_T, dtype=F64)
    x = x_T
    for t, s in itertools.pairwise(times):
        tt = t.expand(8)
        eps_hat = -sde.sigma(tt)[:, None] * _linear_score(x, tt)
        h = sde.lambda_t(s) - sde.lambda_t(t)
        x = torch.exp(sde.log_alpha(s) - sde.log_alpha(t)) * x - sde.sigma(s) * torch.expm1(h) * eps_hat
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(SDES))
def test_eta_one_draws_the_ddpm_posterior(name: str) -> None:
    """eta=1: one step from t to s has mean alpha_s x0 + sqrt(sigma_s^2 - c^2) eps and std c, c the posterior std
    sigma_s sqrt(1 - alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2)) of q(x_s | x_t, x_0)."""
    sde = SDES[name]()
    t, s, n = 0.6, 0.3, 40_000
    x_T = torch.full((n, 1), 0.7, dtype=F64)
    out = sample(sde, _linear_score, (n, 1), "ddim", times=torch.tensor([t, s]), x_T=x_T, eta=1.0, dtype=F64,
                 generator=torch.Generator().manual_seed(1))
    tt, ss = torch.tensor([t], dtype=F64), torch.tensor([s], dtype=F64)
    a_t, s_t, a_s, s_s = sde.alpha(tt), sde.sigma(tt), sde.alpha(ss), sde.sigma(ss)
    eps_hat = -s_t * _linear_score(x_T[:1], tt)
    x0 = (x_T[:1] - s_t * eps_hat) / a_t
    c = s_s * torch.sqrt(1 - (a_t * s_s / (a_s * s_t)) ** 2)
    mean = a_s * x0 + torch.sqrt(s_s**2 - c**2) * eps_hat
    assert abs(float(out.mean() - mean)) < 4 * float(c) / n**0.5
    assert abs(float(out.std()) / float(c) - 1) < 0.02


@pytest.mark.parametrize("name", list(SDES))
def test_path_converges_to_the_probability_flow_solution_at_first_order(name: str) -> None:
    """From the same x_T the deterministic DDIM path approaches a tight ODE solve; halving the step halves the error.

    The median over paths: the few that start near a basin boundary of the mixture switch modes under coarse steps,
    which makes the mean error converge irregularly (VP: 100 -> 200 steps reduces it only 1.5x, 400 -> 800 4x)."""
    sde = SDES[name]()
    gm = GaussianMixture.example_2d()
    score = gm.score_fn(sde)
    x_T = sde.prior_sampling((64, 2), torch.Generator().manual_seed(3), dtype=F64)
    ref = sample(sde, score, None, "ode", x_T=x_T, dtype=F64, rtol=1e-9, atol=1e-9, method="dopri8")
    errors = {}
    for steps in (100, 200):
        x, info = sample(sde, score, (64, 2), "ddim", x_T=x_T, dtype=F64, steps=steps, grid="logSNR",
                         return_info=True)
        assert info.nfe == steps
        errors[steps] = float((x - ref).norm(dim=1).median())
    assert errors[200] < 0.05 * float(ref.norm(dim=1).median())
    assert 1.8 < errors[100] / errors[200] < 2.2, errors


def test_both_etas_reproduce_the_mixture_with_its_exact_score() -> None:
    sde = VPSDE(N=1000)
    gm = GaussianMixture.example_2d()
    g = torch.Generator().manual_seed(11)
    reference = gm.sample(2000, g)
    baseline = sum(energy_distance(gm.sample(2000, g), reference) for _ in range(4)) / 4
    for eta in (0.0, 1.0):
        x = sample(sde, gm.score_fn(sde), (2000, 2), "ddim", steps=200, eta=eta, grid="logSNR", dtype=F64,
                   generator=torch.Generator().manual_seed(5))
        assert energy_distance(x, reference) / baseline < 5.0, eta
    wrong = sample(sde, lambda x, t: 1.3 * gm.score_fn(sde)(x, t), (2000, 2), "ddim", steps=200, grid="logSNR",
                   dtype=F64, generator=torch.Generator().manual_seed(5))
    assert energy_distance(wrong, reference) / baseline > 5.0  # the criterion can fail


def test_denoise_adds_one_data_prediction() -> None:
    sde = VPSDE()
    _, info = sample(sde, _linear_score, (4, 2), "ddim", steps=7, denoise=True, return_info=True, dtype=F64,
                     generator=torch.Generator().manual_seed(0))
    assert info.nfe == 8 and info.options["denoise"] is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eta": 1.5}, r"eta must lie in \[0, 1\], got 1.5"),
        ({"steps": 0}, "steps must be a positive integer, got 0"),
        ({"grid": "cosine"}, "unknown time grid 'cosine'; valid time grids are: uniform, time_uniform"),
        ({"times": torch.tensor([0.2, 0.5])}, "times must be strictly decreasing"),
        ({"times": torch.tensor([1.5, 0.5])}, r"times must lie in \(0, T=1.0\]"),
        ({"steps": 5, "times": torch.tensor([0.9, 0.5])}, "not both"),
        ({"order": 2}, r"unknown option\(s\) \['order'\] for sampler 'ddim'"),
    ],
)
def test_bad_options_are_one_clear_error(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample(VPSDE(), _linear_score, (2, 2), "ddim", **options)


@pytest.mark.parametrize("sde", [PSLD(), PSLD(score_matching="dsm"), CLD()], ids=["psld", "psld-dsm", "cld"])
def test_phase_space_step_follows_the_probability_flow_of_a_point_mass(sde) -> None:
    """eta=0 with the true noise of z_t = Phi_t z0 + L_t eps lands where the probability-flow ODE of the point mass z0
    goes (solved here independently with scipy), keeping the kernel law; eta>0 adds noise of covariance eta^2 times
    the posterior covariance of z_s given z_t and z0."""
    from scipy.integrate import solve_ivp

    g = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(1, 2, 1, generator=g, dtype=F64), torch.randn(1, 2, 1, generator=g, dtype=F64)
    t, s = torch.tensor(0.6, dtype=F64), torch.tensor(0.25, dtype=F64)
    mean_t, L_t = sde.marginal_prob(z0, t.reshape(1))
    z_t = mean_t + sde.apply_std(L_t, noise)
    stepped = sde.ddim_step(z_t, t, s, noise, flow="probability_flow")
    kernel = sde.ddim_step(z_t, t, s, noise)  # the kernel flow lands on Phi_s z0 + L_s eps: another path, same law
    mean_s, L_s = sde.marginal_prob(z0, s.reshape(1))
    torch.testing.assert_close(kernel, mean_s + sde.apply_std(L_s, noise), rtol=1e-10, atol=1e-10)

    def pf(tau: float, z: object) -> object:  # dz/dt = F z - 1/2 G G^T score, score of N(Phi z0, Sigma)
        tt = torch.tensor([tau], dtype=F64)
        beta, zz = sde.beta(tt), torch.as_tensor(z, dtype=F64)
        mean = sde.transition(tt)[0] @ z0[0, :, 0]
        score = -torch.linalg.solve(sde.kernel_cov(tt)[0], zz - mean)
        return (-beta * sde.A @ zz - beta * sde.D @ score).numpy()

    sol = solve_ivp(pf, (0.6, 0.25), z_t[0, :, 0].numpy(), rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(stepped[0, :, 0], torch.as_tensor(sol.y[:, -1]), rtol=1e-7, atol=1e-8)
    U = sde.flow_propagator(t, s)
    cov_t, cov_s = sde.kernel_cov(t.reshape(1))[0], sde.kernel_cov(s.reshape(1))[0]
    torch.testing.assert_close(U @ cov_t @ U.T, cov_s, rtol=1e-8, atol=1e-10)  # the kernel law is kept
    n = 40_000
    zt = z_t.expand(n, 2, 1)
    draws = sde.ddim_step(zt, t, s, noise.expand(n, 2, 1), 0.7, torch.randn(n, 2, 1, generator=g, dtype=F64))
    psi = sde.transition(t.reshape(1), s.reshape(1))[0]
    post = cov_s - cov_s @ psi.T @ torch.linalg.inv(cov_t) @ psi @ cov_s
    scale = float(0.49 * post.diagonal().max())  # Monte-Carlo error of 40k draws ~ 1% of the largest variance
    torch.testing.assert_close(torch.cov(draws[:, :, 0].T), 0.49 * post, rtol=0.05, atol=0.03 * scale)


@pytest.mark.parametrize("name", ["psld", "cld"])
def test_phase_space_ddim_reaches_the_noise_floor_in_50_steps(name: str) -> None:
    """Exact phase-space mixture score: deterministic DDIM at 50 NFE is within the true-vs-true energy-distance spread
    (measured ED ratio 1.03 for both; SSCS gives 1.2-2.9 at 20-50 steps, benchmarks/RESULTS.md)."""
    sde = PSLD() if name == "psld" else CLD()
    gm = GaussianMixture.example_2d()
    g = torch.Generator().manual_seed(1234)
    reference = gm.sample(2000, g)
    baseline = sum(energy_distance(gm.sample(2000, g), reference) for _ in range(4)) / 4
    score = PhaseSpaceMixture(gm, sde).score
    x, info = sample(sde, score, (2000, 2), "ddim", steps=50, dtype=F64, return_info=True,
                     generator=torch.Generator().manual_seed(7))
    assert x.shape == (2000, 2) and info.nfe == 50
    assert energy_distance(x, reference) / baseline < 1.6
    wrong = sample(sde, lambda z, t: 1.3 * score(z, t), (2000, 2), "ddim", steps=50, dtype=F64,
                   generator=torch.Generator().manual_seed(7))
    assert energy_distance(wrong, reference) / baseline > 5.0
