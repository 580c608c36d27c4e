"""DPM-Solver(++) on phase-space SDEs (PSLD, CLD): the matrix exponential integrator of the kernel flow.

Checked against: the scalar DPM-Solver coefficients (a one-block recipe SDE is VP), the phase-space DDIM step (order
1), an independent high-accuracy solve of the kernel-flow ODE ``dz/dt = Phi' x0_hat + L' eps_hat`` (scipy DOP853 with
finite-difference ``L'``), and the mixture itself (energy distance at 20 NFE).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from scoresde import sample
from scoresde.numerics.grids import time_steps
from scoresde.sdes import CLD, PSLD, VPSDE, RecipeSDE
from scoresde.sdes.linalg import apply_blocks
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture
from tests.metrics.conftest import _one_thread  # noqa: F401 (autouse: batches of 2x2 matrices, one thread)
from tests.sampling.test_samplers_exact_score import N_SAMPLES, oracle  # noqa: F401 (shared fixture)
from tests.sampling.test_samplers_exact_score import _check as check_samples

F64 = torch.float64
SDES = {"psld": PSLD, "cld": CLD}


def _t(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


def test_one_block_recipe_has_the_scalar_schedule_and_dpm_solver_coefficients() -> None:
    """``D = 1/2``, ``S = 1``, ``Q = 0`` is VP: lambda, its derivative and inverse, and every ``C_k`` must equal
    DPM-Solver's ``-B phi_k`` for both predictions."""
    r = RecipeSDE([[0.5]], [[0.0]], [[1.0]], beta_min=0.1, beta_max=20.0)
    vp = VPSDE(beta_min=0.1, beta_max=20.0)
    t = torch.tensor([1e-3, 0.05, 0.3, 0.9, 1.0], dtype=F64)
    torch.testing.assert_close(r.lambda_t(t), vp.lambda_t(t), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r.dlambda_dt(t), -(vp.beta_0 + t * (vp.beta_1 - vp.beta_0))
                               / (2 * vp.sigma(t) ** 2), rtol=1e-10, atol=0)
    torch.testing.assert_close(r.t_from_lambda(vp.lambda_t(t)), t, rtol=1e-13, atol=0)
    for s_, t_ in ((0.5, 0.1), (1.0, 0.6), (0.01, 1e-3)):
        h = vp.lambda_t(_t(t_)) - vp.lambda_t(_t(s_))
        for prediction in ("x0", "eps"):
            A, C = r.exp_integrator(_t(s_), _t(t_), 3, prediction)
            hh = -h if prediction == "x0" else h
            phi1 = torch.expm1(hh)
            phi2 = phi1 / hh - 1
            phi3 = phi2 / hh - 0.5
            if prediction == "x0":
                A_ref, B = vp.sigma(_t(t_)) / vp.sigma(_t(s_)), vp.alpha(_t(t_))
            else:
                A_ref, B = vp.alpha(_t(t_)) / vp.alpha(_t(s_)), vp.sigma(_t(t_))
            torch.testing.assert_close(A[0, 0], A_ref, rtol=1e-12, atol=0)
            for c, phi in zip(C, (phi1, phi2, phi3), strict=True):
                torch.testing.assert_close(c[0, 0], -B * phi, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name", sorted(SDES))
def test_lambda_is_decreasing_and_inverted(name: str) -> None:
    sde = SDES[name]()
    t = torch.tensor([1e-5, 1e-3, 0.01, 0.1, 0.5, 0.99, 1.0], dtype=F64)
    lam = sde.lambda_t(t)
    assert bool((lam[1:] < lam[:-1]).all()), lam
    torch.testing.assert_close(sde.t_from_lambda(lam), t, rtol=1e-12, atol=0)
    h = 1e-6 * t
    fd = (sde.lambda_t(t + h) - sde.lambda_t(t - h)) / (2 * h)
    torch.testing.assert_close(sde.dlambda_dt(t), fd, rtol=1e-6, atol=0)
    assert float(sde.t_from_lambda(lam[-1] - 1.0)) == 1.0  # beyond lambda_T: T


def _start(sde, n: int, seed: int = 0) -> torch.Tensor:
    return sde.prior_sampling(sde.state_shape((n, 2)), torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("name", sorted(SDES))
@pytest.mark.parametrize("grid", ["logSNR", "time_quadratic"])
def test_order_one_is_the_kernel_ddim_step(name: str, grid: str) -> None:
    sde = SDES[name]()
    score = PhaseSpaceMixture(GaussianMixture.example_2d(), sde).score
    z = _start(sde, 64)
    a = sample(sde, score, None, "ddim", x_T=z, steps=8, grid=grid, dtype=F64)
    for algorithm in ("dpmsolver++", "dpmsolver"):
        b, info = sample(sde, score, None, "dpm_solver", x_T=z, steps=8, grid=grid, order=1, algorithm=algorithm,
                         dtype=F64, return_info=True)
        assert info.nfe == 8
        torch.testing.assert_close(b, a, rtol=0, atol=1e-11)


def _kernel_flow_reference(sde, score, z: torch.Tensor, t_end: float, rtol: float = 1e-10) -> torch.Tensor:
    """Independent solve of ``dz/dt = Phi'_t x0_hat + L'_t eps_hat`` (``Phi' = -beta A Phi``, ``L'`` by central
    differences), backwards from ``T`` to ``t_end`` with scipy's DOP853, in the test's own simple form."""
    shape = z.shape

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        zt = torch.as_tensor(y, dtype=F64).reshape(shape)
        tt = torch.full((shape[0],), t, dtype=F64)
        dt = 1e-6 * t
        Lm, L, Lp = sde.kernel_factor(torch.tensor([t - dt, t, t + dt], dtype=F64))
        phi = sde.transition(torch.tensor([t], dtype=F64))[0]
        dL = (Lp - Lm) / (2 * dt)
        dphi = -float(sde.beta(torch.tensor(t, dtype=F64))) * sde.A @ phi
        eps_hat = -apply_blocks(L.T, score(zt, tt))
        x0_hat = apply_blocks(torch.linalg.inv(phi), zt - apply_blocks(L, eps_hat))
        return (apply_blocks(dphi, x0_hat) + apply_blocks(dL, eps_hat)).reshape(-1).numpy()

    sol = solve_ivp(rhs, (sde.T, t_end), z.reshape(-1).numpy(), method="DOP853", rtol=rtol, atol=rtol)
    return torch.as_tensor(sol.y[:, -1], dtype=F64).reshape(shape)


@pytest.mark.parametrize("name", sorted(SDES))
def test_solver_converges_to_the_kernel_flow_at_its_order(name: str) -> None:
    sde = SDES[name]()
    score = PhaseSpaceMixture(GaussianMixture.example_2d(), sde).score
    z = _start(sde, 12, seed=3)
    ref = sde.data_part(_kernel_flow_reference(sde, score, z, 1e-3, rtol=1e-9))

    def err(steps: int, **options) -> float:
        x = sample(sde, score, None, "dpm_solver", x_T=z, steps=steps, grid="time_quadratic", dtype=F64, **options)
        return float((x - ref).norm(dim=1).median())

    e1 = [err(n, order=1) for n in (12, 24)]
    e2 = [err(n, order=2, algorithm="dpmsolver") for n in (12, 24, 48)]
    assert 1.6 < e1[0] / e1[1] < 2.5, e1  # first order (DDIM)
    assert e2[1] / e2[2] > 3.0, e2  # second order
    assert e2[2] < 0.02 * e1[1], (e1, e2)
    assert err(48, order=3, algorithm="dpmsolver") < 1e-3


@pytest.mark.parametrize("name", sorted(SDES))
@pytest.mark.parametrize(("algorithm", "order", "method"), [("dpmsolver++", 2, "multistep"),
                                                            ("dpmsolver", 3, "multistep"),
                                                            ("dpmsolver++", 2, "singlestep")])
def test_twenty_nfe_reproduce_the_mixture(oracle: dict, name: str, algorithm: str, order: int,  # noqa: F811
                                          method: str) -> None:
    sde = SDES[name]()
    score = PhaseSpaceMixture(oracle["gm"], sde).score
    steps = 20 if method == "multistep" else 10
    x, info = sample(sde, score, (N_SAMPLES, 2), "dpm_solver", steps=steps, order=order, algorithm=algorithm,
                     method=method, grid="time_quadratic", generator=torch.Generator().manual_seed(7), dtype=F64,
                     return_info=True)
    assert info.nfe == 20
    check_samples(x, oracle, f"{name}/{algorithm}-{order}-{method}")


def test_adaptive_runs_on_phase_space() -> None:
    sde = PSLD()
    score = PhaseSpaceMixture(GaussianMixture.example_2d(), sde).score
    z = _start(sde, 16, seed=5)
    x, info = sample(sde, score, None, "dpm_solver", x_T=z, method="adaptive", order=3, rtol=0.01, atol=0.01,
                     dtype=F64, return_info=True)
    fine = sample(sde, score, None, "dpm_solver", x_T=z, steps=40, order=3, algorithm="dpmsolver", dtype=F64)
    assert torch.isfinite(x).all() and 10 < info.nfe < 200, info.nfe
    assert float((x - fine).norm(dim=1).median()) < 0.05


def test_stochastic_variant_and_scalar_only_samplers_are_refused_on_phase_space() -> None:
    sde = PSLD()
    score = PhaseSpaceMixture(GaussianMixture.example_2d(), sde).score
    with pytest.raises(ValueError, match=r"sde-dpmsolver.* matrix kernel"):
        sample(sde, score, (4, 2), "dpm_solver", algorithm="sde-dpmsolver++", steps=4)
    for name in ("unipc", "heun"):
        with pytest.raises(ValueError, match=name + r" needs a scalar noise schedule .*\(use ddim, dpm_solver"):
            sample(sde, score, (4, 2), name, steps=4)


def test_logsnr_grid_on_phase_space_is_uniform_in_lambda() -> None:
    sde = CLD()
    ts = time_steps(sde, 10, grid="logSNR", eps=1e-3).to(F64)
    assert math.isclose(float(ts[0]), sde.T) and math.isclose(float(ts[-1]), 1e-3, rel_tol=1e-12)
    diffs = torch.diff(sde.lambda_t(ts))
    torch.testing.assert_close(diffs, diffs.mean().expand_as(diffs), rtol=1e-9, atol=0)
