"""``ScheduleSDE`` (any scalar schedule from ``alpha(t)``, ``sigma(t)``) and the named schedules on it: EDM, CosineVP,
RectifiedFlow. Checked against the papers' formulas, against finite differences of ``alpha``/``sigma`` (so ``f`` and
``g^2`` are the SDE whose marginals these are), against VPSDE (the generic class fed VP's schedule) and round trips of
``lambda``; the run-config hooks and the bad-input messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from scoresde.config import build_sde
from scoresde.sdes import CONFIG_SDES, EDM, VPSDE, CosineVP, RectifiedFlow, ScheduleSDE, SubVPSDE

F64 = torch.float64
NAMED = {"edm": EDM, "cosine": CosineVP, "rectified_flow": RectifiedFlow}


def _times(sde, n: int = 41) -> torch.Tensor:
    return torch.linspace(0.02 * sde.T, sde.T, n, dtype=F64)


def _closed_forms(name: str, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha(t), sigma(t) written from the papers (EDM eq. 6 with s = 1; Nichol & Dhariwal 2021 eq. 17; Liu et al.
    2023 eq. 1), independently of the classes."""
    if name == "edm":
        return torch.ones_like(t), t
    if name == "cosine":
        s = 0.008
        alpha = torch.cos((t + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)
        return alpha, torch.sqrt(1 - alpha**2)
    return 1 - t, t


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_schedules_match_the_papers_formulas(name: str) -> None:
    sde = NAMED[name]()
    t = _times(sde)
    alpha, sigma = _closed_forms(name, t)
    torch.testing.assert_close(sde.alpha(t), alpha, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sde.sigma(t), sigma, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sde.lambda_t(t), torch.log(alpha / sigma), rtol=1e-12, atol=1e-12)
    mean, std = sde.marginal_prob(torch.full((len(t), 3), 2.0, dtype=F64), t)
    torch.testing.assert_close(mean, 2.0 * alpha[:, None].expand(-1, 3), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(std, sigma, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_drift_and_diffusion_are_the_finite_differences_of_the_schedule(name: str) -> None:
    """f = d log alpha / dt and g^2 = d sigma^2 / dt - 2 f sigma^2, by central differences of the papers' alpha and
    sigma (h = 1e-6 T: error ~ h^2 relative); the closed forms of each class and the generic autograd path agree."""
    sde = NAMED[name]()
    t = _times(sde)[:-1]
    h = 1e-6 * sde.T
    (a_p, s_p), (a_m, s_m) = _closed_forms(name, t + h), _closed_forms(name, t - h)
    sigma = _closed_forms(name, t)[1]
    f_fd = (torch.log(a_p) - torch.log(a_m)) / (2 * h)
    g2_fd = (s_p**2 - s_m**2) / (2 * h) - 2 * f_fd * sigma**2
    x = torch.full((len(t), 2), 3.0, dtype=F64)
    drift, g = sde.sde(x, t)
    torch.testing.assert_close(drift, 3.0 * f_fd[:, None].expand(-1, 2), rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(g**2, g2_fd, rtol=1e-7, atol=1e-8)
    generic = ScheduleSDE(lambda u: _closed_forms(name, u)[0], lambda u: _closed_forms(name, u)[1], T=sde.T)
    torch.testing.assert_close(generic.sde(x, t)[1], g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(generic.sde(x, t)[0], drift, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(generic.t_from_lambda(sde.lambda_t(t)), t, rtol=0, atol=1e-10 * sde.T)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_marginal_variance_solves_the_moment_ode(name: str) -> None:
    """Integrating d alpha/dt = f alpha and d var/dt = 2 f var + g^2 from the SDE's own coefficients (scipy, rtol
    1e-10) gives alpha(t) and sigma(t)^2: the SDE's marginals are the schedule (an independent check of sde())."""
    sde = NAMED[name]()
    t0, t1 = 0.05 * sde.T, sde.T

    def rhs(t: float, y: np.ndarray) -> list[float]:
        drift, g = sde.sde(torch.ones(1, 1, dtype=F64), torch.tensor([t], dtype=F64))
        f = float(drift[0, 0])
        return [f * y[0], 2 * f * y[1] + float(g[0]) ** 2]

    y0 = [float(sde.alpha(torch.tensor(t0, dtype=F64))), float(sde.sigma(torch.tensor(t0, dtype=F64))) ** 2]
    sol = solve_ivp(rhs, (t0, t1), y0, rtol=1e-10, atol=1e-12, method="DOP853")
    end = torch.tensor(t1, dtype=F64)
    assert sol.y[0, -1] == pytest.approx(float(sde.alpha(end)), rel=1e-6, abs=1e-9)
    assert sol.y[1, -1] == pytest.approx(float(sde.sigma(end)) ** 2, rel=1e-6)


@pytest.mark.parametrize("sde", [EDM(), CosineVP(), RectifiedFlow(), EDM(sigma_min=0.01, sigma_max=10.0),
                                 CosineVP(s=0.0, T=0.99), RectifiedFlow(T=0.99)])
def test_lambda_inverse_round_trip(sde) -> None:
    t = torch.cat([torch.tensor([1e-6 * sde.T, 1e-3 * sde.T], dtype=F64), _times(sde)])
    torch.testing.assert_close(sde.t_from_lambda(sde.lambda_t(t)), t, rtol=1e-9, atol=1e-14)
    lam = torch.linspace(float(sde.lambda_t(torch.tensor(sde.T, dtype=F64))), 8.0, 33, dtype=F64)
    torch.testing.assert_close(sde.lambda_t(sde.t_from_lambda(lam)), lam, rtol=0, atol=1e-9)


def _vp_generic(vp: VPSDE | SubVPSDE) -> ScheduleSDE:
    return ScheduleSDE(lambda t: torch.exp(vp.log_alpha(t)), vp.sigma, T=vp.T, N=vp.N, prior_std=1.0)


@pytest.mark.parametrize("vp", [VPSDE(), SubVPSDE(), VPSDE(beta_min=0.5, beta_max=5.0, T=1.5)],
                         ids=["vp", "subvp", "vp_beta_0.5_5_T1.5"])
def test_generic_schedule_of_vp_reproduces_its_sde(vp) -> None:
    """Only alpha and sigma of VP / sub-VP in: drift, diffusion, marginals, lambda inverse and prior out, to 1e-6."""
    generic = _vp_generic(vp)
    t = torch.linspace(1e-3, vp.T, 57, dtype=F64)
    x = torch.randn(57, 3, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for ours, theirs in zip(generic.sde(x, t), vp.sde(x, t), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(generic.marginal_prob(x, t), vp.marginal_prob(x, t), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(generic.t_from_lambda(vp.lambda_t(t)), t, rtol=0, atol=1e-9)
    torch.testing.assert_close(generic.prior_logp(x), vp.prior_logp(x), rtol=1e-12, atol=0)
    t32 = t.float()
    assert generic.sde(x.float(), t32)[1].dtype == torch.float32  # the caller's dtype (derivatives in float64)
    with torch.inference_mode():  # autograd of the schedule works where the caller has none
        torch.testing.assert_close(generic.sde(x, t)[1], vp.sde(x, t)[1], rtol=1e-6, atol=1e-6)


def test_edm_times_are_noise_levels_and_karras_grid_is_edms() -> None:
    """EDM eq. 5: sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, 18 levels, rho = 7."""
    from scoresde.numerics.grids import time_steps

    sde = EDM()
    assert sde.T == 80.0 and sde.prior_std == 80.0 and sde.sampling_eps == 0.002
    i = torch.arange(18, dtype=F64)
    edm = (80.0 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    torch.testing.assert_close(time_steps(sde, 17, grid="karras", eps=sde.sigma_min), edm, rtol=1e-12, atol=0)
    for grid in ("quadratic", "time_quadratic", "logSNR", "uniform"):  # T = 80 exactly (sqrt(80)^2 rounded above)
        assert float(time_steps(sde, 10, grid=grid, eps=sde.sigma_min)[0]) == 80.0
    z = sde.prior_sampling((20000, 2), torch.Generator().manual_seed(0), dtype=F64)
    assert float(z.std()) == pytest.approx(80.0, rel=0.02)


def test_end_times_before_alpha_vanishes() -> None:
    """CosineVP ends at DPM-Solver's T = 0.9946 and RectifiedFlow at 1 - 1e-3, where lambda is finite; the prior is
    N(0, I) on both (the law at t = 1)."""
    cos, rf = CosineVP(), RectifiedFlow()
    assert cos.T == 0.9946 and rf.T == pytest.approx(0.999, abs=1e-15)
    assert float(cos.alpha(torch.tensor(cos.T, dtype=F64))) == pytest.approx(8.415e-3, rel=1e-3)
    assert float(rf.lambda_t(torch.tensor(rf.T, dtype=F64))) == pytest.approx(-math.log(999.0), rel=1e-12)
    assert cos.prior_std == rf.prior_std == 1.0
    for sde in (cos, rf):
        t = torch.tensor([sde.T], dtype=F64)
        assert torch.isfinite(sde.sde(torch.ones(1, 2, dtype=F64), t)[1]).all()


@pytest.mark.parametrize("name", sorted(NAMED))
def test_run_config_round_trip(name: str) -> None:
    sde = NAMED[name]()
    assert CONFIG_SDES[name] is NAMED[name] and sde.config_name == name
    entries = sde.model_config()
    rebuilt = build_sde({"training": {"sde": name}, "model": entries})
    assert type(rebuilt) is type(sde) and rebuilt.describe() == sde.describe()
    assert rebuilt.with_steps(18).N == 18


def test_run_config_keys() -> None:
    assert EDM(0.01, 40.0, N=18).model_config() == {"sigma_min": 0.01, "sigma_max": 40.0, "num_scales": 18}
    assert CosineVP(s=0.01).model_config() == {"cosine_s": 0.01, "num_scales": 1000}
    assert RectifiedFlow(N=50).model_config() == {"num_scales": 50}
    with pytest.raises(ValueError, match=r"CosineVP differs from the SDE its run config entries .* in T"):
        CosineVP(T=0.99).model_config()
    with pytest.raises(ValueError, match=r"ScheduleSDE has no training\.sde name"):
        ScheduleSDE(lambda t: 1 - t, lambda t: t, T=0.5).model_config()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: EDM(sigma_min=0.0), "sigma_min must be a positive finite noise level, got 0.0"),
    (lambda: EDM(sigma_min=5.0, sigma_max=1.0), r"sigma_max \(1.0\) must exceed sigma_min \(5.0\)"),
    (lambda: CosineVP(s=-0.1), "s must be a finite number >= 0, got -0.1"),
    (lambda: CosineVP(T=1.0), r"T must be in \(0, 1\): alpha\(1\) = 0"),
    (lambda: RectifiedFlow(T=1.0), r"T must be in \(0, 1\): at t = 1 alpha = 0"),
    (lambda: ScheduleSDE(lambda t: 1 - t, None), "ScheduleSDE needs sigma"),
    (lambda: ScheduleSDE(lambda t: 1 - t, lambda t: t), r"alpha\(t\) must be finite and positive on \[0, T=1\]"),
    (lambda: ScheduleSDE(lambda t: 0.5 + 0.5 * t, lambda t: 0.1 + 0 * t, T=1.0),
     r"lambda.* must strictly decrease"),
    (lambda: ScheduleSDE(lambda t: 1 - 0.5 * t, lambda t: t, inverse_tol=0.0), "inverse_tol must be a positive"),
])
def test_bad_input_is_one_line(make, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_lambda_outside_the_schedule_is_refused() -> None:
    generic = ScheduleSDE(lambda t: 1 - 0.5 * t, lambda t: t)
    with pytest.raises(ValueError, match=r"lambda = -5.0 is outside \[lambda\(T\), lambda\(0\)\]"):
        generic.t_from_lambda(torch.tensor([0.0, -5.0], dtype=F64))


@pytest.mark.parametrize("name", sorted(NAMED))
def test_diffusers_export_refuses_in_one_line(name: str, tmp_path) -> None:
    from scoresde.checkpoint.diffusers.export import export_diffusers
    from scoresde.models import ScoreModel
    from scoresde.nets.toy import ToyMLP

    model = ScoreModel(ToyMLP(dim=2, hidden=8, depth=1), NAMED[name](), label_type="time", output_type="eps")
    with pytest.raises(ValueError, match=f"cannot export a model on {NAMED[name].__name__}: no diffusers scheduler"):
        export_diffusers(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
