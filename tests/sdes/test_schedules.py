"""Schedule queries, closed-form marginals and argument checking of the scalar SDEs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from scoresde.sdes import VESDE, VPSDE, SubVPSDE

SDES = [VESDE(), VPSDE(), SubVPSDE(), VESDE(sigma_min=0.1, sigma_max=5.0, T=2.0), VPSDE(beta_min=0.5, T=1.5)]
IDS = ["ve", "vp", "subvp", "ve-T2", "vp-T1.5"]


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_marginal_variance_solves_the_moment_ode(sde) -> None:
    """sigma(t)^2 and alpha(t) solve d(alpha)/dt = f'(t) alpha and d(var)/dt = 2 f'(t) var + g(t)^2.

    Integrated numerically from the SDE's own drift and diffusion (an independent check of ``sigma``, incl. the
    sub-VP std that has no square root in the reference).
    """
    t0 = 1e-4 * sde.T

    def coeffs(t: float) -> tuple[float, float]:
        tt = torch.tensor([t], dtype=torch.float64)
        drift, g = sde.sde(torch.ones(1, 1, dtype=torch.float64), tt)
        return float(drift[0, 0]), float(g[0])

    def rhs(t: float, y: np.ndarray) -> list[float]:
        fprime, g = coeffs(t)
        return [fprime * y[0], 2 * fprime * y[1] + g**2]

    ts = np.linspace(t0, sde.T, 7)
    a0 = float(sde.alpha(torch.tensor([t0], dtype=torch.float64))[0])
    v0 = float(sde.sigma(torch.tensor([t0], dtype=torch.float64))[0] ** 2)
    sol = solve_ivp(rhs, (t0, sde.T), [a0, v0], t_eval=ts, rtol=1e-10, atol=1e-12)
    tt = torch.tensor(ts, dtype=torch.float64)
    np.testing.assert_allclose(sol.y[0], sde.alpha(tt).numpy(), rtol=1e-6)
    np.testing.assert_allclose(sol.y[1], (sde.sigma(tt) ** 2).numpy(), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_lambda_inverse_round_trip(sde) -> None:
    t = torch.linspace(1e-3, 1.0, 50, dtype=torch.float64) * sde.T
    lam = sde.lambda_t(t)
    assert (lam[1:] < lam[:-1]).all(), "the half log-SNR must decrease in t"
    torch.testing.assert_close(sde.t_from_lambda(lam), t, rtol=1e-9, atol=1e-10)
    mean, std = sde.marginal_prob(torch.ones(50, 1, dtype=torch.float64), t)
    torch.testing.assert_close(mean[:, 0], sde.alpha(t))
    torch.testing.assert_close(std, sde.sigma(t))
    torch.testing.assert_close(lam, torch.log(sde.alpha(t) / sde.sigma(t)))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_prior_matches_the_forward_marginal_at_T(sde) -> None:
    tT = torch.tensor([sde.T], dtype=torch.float64)
    assert float(sde.sigma(tT)[0]) == pytest.approx(sde.prior_std, rel=1e-3)
    assert float(sde.alpha(tT)[0]) < 1e-2 or isinstance(sde, VESDE)


def test_prior_logp_and_explicit_prior_mean() -> None:
    mean = torch.tensor([1.0, -2.0, 0.5])
    sde = VESDE(sigma_max=3.0, prior_mean=mean)
    z = sde.prior_sampling((20000, 3), torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(z.mean(0), mean.double(), atol=0.05, rtol=0)
    assert float(z.std(0).mean()) == pytest.approx(3.0, rel=0.02)
    dist = torch.distributions.Normal(mean.double(), 3.0)
    torch.testing.assert_close(sde.prior_logp(z[:5]), dist.log_prob(z[:5]).sum(1))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: VESDE(sigma_min=-1.0), "sigma_min"),
        (lambda: VESDE(sigma_min=5.0, sigma_max=1.0), "must exceed"),
        (lambda: VPSDE(beta_min=0.0), "beta_min"),
        (lambda: VPSDE(beta_min=5.0, beta_max=1.0), "beta_max"),
        (lambda: SubVPSDE(N=0), "N must be"),
        (lambda: VPSDE(N=10.5), "N must be"),
        (lambda: VESDE(T=0.0), "T must be"),
        (lambda: VPSDE(prior_mean=float("nan")), "prior_mean"),
    ],
)
def test_bad_arguments_are_named(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_langevin_alpha_is_defined_for_every_sde() -> None:
    """The reference crashes on Langevin + sub-VP (no ``alphas``); ours reads the shared DDPM table."""
    t = torch.tensor([0.5, 1.0])
    torch.testing.assert_close(SubVPSDE().langevin_alpha(t), VPSDE().langevin_alpha(t))
    torch.testing.assert_close(VESDE().langevin_alpha(t), torch.ones(2))
    i = VPSDE().timestep_index(t)
    torch.testing.assert_close(VPSDE().langevin_alpha(t), 1 - VPSDE().discrete_betas[i])


def test_generic_ancestral_step_is_exact_for_a_point_mass() -> None:
    """For x_0 = 0 the step's posterior N((x_t + v score)/a, v sigma_s^2/sigma_t^2) is exact at any step size."""
    sde, n = SubVPSDE(), 400000
    t, s = torch.full((n,), 0.6, dtype=torch.float64), torch.full((n,), 0.2, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(n, 1, generator=g, dtype=torch.float64) * sde.sigma(t)[:, None]
    score = -x_t / sde.sigma(t)[:, None] ** 2
    x_s, x_mean = sde.ancestral_step(x_t, t, s, score, torch.randn(x_t.shape, generator=g, dtype=torch.float64))
    assert float(x_s.var()) == pytest.approx(float(sde.sigma(s[:1]) ** 2), rel=0.01)
    # The mean is E[x_s | x_t] = (alpha_s / alpha_t) (sigma_s / sigma_t)^2 x_t ... for a point mass at 0:
    a = sde.alpha(t[:1]) / sde.alpha(s[:1])
    expected = a * sde.sigma(s[:1]) ** 2 / sde.sigma(t[:1]) ** 2 * x_t
    torch.testing.assert_close(x_mean, expected)
