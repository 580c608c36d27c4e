"""Path-wise conformance with k-diffusion (``k-diffusion==0.1.1.post1``, test-only): with the same model, the same
``x_T`` and the same noise levels, our samplers equal k-diffusion's to float64 rounding.

k-diffusion's model is a denoiser ``D(x, sigma)``. On VE it is our data prediction ``model.x0(x, t)`` at the time
``t = sde.t_from_lambda(-log sigma)`` of that noise level; on VP and sub-VP it is the same in EDM's variables,
``D(x_hat, sigma_hat) = model.x0(alpha_t x_hat, t)`` with ``x_hat = x / alpha_t`` and ``sigma_hat = sigma_t /
alpha_t``. The noise levels are k-diffusion's ``get_sigmas_karras(n, sigma_hat(eps), sigma_hat(T), rho)`` (``n``
levels and a final zero), which our ``karras`` grid reproduces.
"""

from __future__ import annotations

import math

import pytest
import torch

from scoresde import sample
from scoresde.models import as_model
from scoresde.sampling import SAMPLERS
from scoresde.sdes import VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture
from tests.kdiffusion import kdiffusion_sampling
from tests.metrics.conftest import _one_thread  # noqa: F401 (autouse: tiny batches, one thread)

F64 = torch.float64
EPS, RHO, BATCH = 1e-3, 7.0, 64
TOL = 1e-12  # max |ours - k-diffusion| <= TOL * max(1, max |k-diffusion|)
SDES = {"ve": lambda: VESDE(N=1000), "vp": lambda: VPSDE(N=1000), "subvp": lambda: SubVPSDE(N=1000)}


@pytest.fixture(scope="module")
def ks():
    return kdiffusion_sampling()


def _setup(name: str, seed: int = 0):
    sde = SDES[name]()
    model = as_model(sde, GaussianMixture.example_2d().score_fn(sde))
    z = sde.prior_sampling((BATCH, 2), torch.Generator().manual_seed(seed), dtype=F64)
    return sde, model, z


def _sigma_hat(sde, t: float) -> float:
    return float(torch.exp(-sde.lambda_t(torch.tensor(t, dtype=F64))))


def _karras(ks, sde, n: int) -> torch.Tensor:
    """k-diffusion's Karras levels between our ``sigma_hat(eps)`` and ``sigma_hat(T)`` (its ramp in float64: its
    ``torch.linspace`` takes the default dtype)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        return ks.get_sigmas_karras(n, _sigma_hat(sde, EPS), _sigma_hat(sde, sde.T), RHO)
    finally:
        torch.set_default_dtype(default)


def _denoiser(sde, model):
    """k-diffusion's ``D(x_hat, sigma_hat)`` for our model (``alpha = 1`` on VE)."""

    def D(x_hat: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = sde.t_from_lambda(-torch.log(sigma))
        return model.x0(sde.alpha(t)[:, None] * x_hat, t)

    return D


def _assert_equal(ours: torch.Tensor, ref: torch.Tensor, what: str) -> float:
    diff = float((ours - ref).abs().max())
    scale = max(1.0, float(ref.abs().max()))
    assert torch.isfinite(ref).all(), what
    assert diff <= TOL * scale, f"{what}: max |ours - k-diffusion| = {diff:.3g} (scale {scale:.3g})"
    return diff


class _SeededTorch:
    """k-diffusion's ``torch`` with ``randn_like`` drawn from a generator: batch first with ``torch.randn``, as our
    sampler draws, and only on the steps that use it (k-diffusion draws on every step and discards the draw when
    ``gamma = 0``; ours draws only when ``gamma > 0``)."""

    def __init__(self, generator: torch.Generator, used: list[bool]) -> None:
        self.generator, self.used, self.calls = generator, used, 0

    def __getattr__(self, name: str):
        return getattr(torch, name)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        used = self.used[self.calls]
        self.calls += 1
        if not used:
            return torch.zeros_like(x)
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)


def _churned(sigmas: torch.Tensor, s_churn: float, s_tmin: float = 0.0, s_tmax: float = float("inf"),
             s_noise: float = 1.0) -> list[bool]:
    n = len(sigmas) - 1
    gamma = min(s_churn / n, math.sqrt(2) - 1)
    return [gamma > 0 and s_tmin <= float(s) <= s_tmax for s in sigmas[:-1]]


def _heun_pair(ks, monkeypatch, name: str, n: int, churn: dict | None = None):
    """Our heun and k-diffusion's sample_heun from the same x_T on n Karras levels (+ zero): (ours, reference, nfe)."""
    sde, model, z = _setup(name)
    sigmas = _karras(ks, sde, n)
    options = dict(churn or {})
    if options:
        seeded = _SeededTorch(torch.Generator().manual_seed(9), _churned(sigmas, **options))
        monkeypatch.setattr(ks, "torch", seeded)
    x_hat = z / sde.alpha(torch.tensor(sde.T, dtype=F64))
    ref = ks.sample_heun(_denoiser(sde, model), x_hat, sigmas, disable=True, **options)
    if options:
        assert seeded.calls == n and 0 < sum(seeded.used)  # one randn_like a step; some steps churned
    ours, info = sample(sde, model, None, "heun", x_T=z, dtype=F64, steps=n, grid="karras", rho=RHO, eps=EPS,
                        generator=torch.Generator().manual_seed(9), return_info=True, **options)
    return ours, ref, info.nfe


def test_karras_grid_is_get_sigmas_karras(ks) -> None:
    """Our karras grid with steps - 1 intervals gives k-diffusion's n = steps levels (before its final zero).

    To 1e-10, not 1e-12: the grid maps the levels to times and back (sde.t_from_lambda, then lambda_t), and sub-VP's
    inverse loses ~6e-12 relative at its smallest level sigma_hat(eps) = 1.1e-4 (log alpha ~ -1e-4 is computed as a
    difference of O(10) terms). VE and VP agree to 1e-13."""
    from scoresde.numerics.grids import time_steps

    for name in SDES:
        sde = SDES[name]()
        for n in (2, 10, 35):
            ts = time_steps(sde, n - 1, grid="karras", eps=EPS, rho=RHO)
            torch.testing.assert_close(torch.exp(-sde.lambda_t(ts)), _karras(ks, sde, n)[:-1], rtol=1e-10, atol=0)


@pytest.mark.parametrize("n", [1, 2, 10, 35])
def test_heun_equals_kdiffusion_on_ve(ks, monkeypatch, n: int) -> None:
    ours, ref, nfe = _heun_pair(ks, monkeypatch, "ve", n)
    assert nfe == 2 * n - 1
    _assert_equal(ours, ref, f"heun ve n={n}")


@pytest.mark.parametrize("churn", [
    {"s_churn": 10.0},                                       # every level churned (gamma = min(10/n, sqrt 2 - 1))
    {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 10.0, "s_noise": 1.003},  # EDM's window: some levels deterministic
])
def test_stochastic_heun_equals_kdiffusion_path_wise_on_ve(ks, monkeypatch, churn: dict) -> None:
    n = 20
    ours, ref, nfe = _heun_pair(ks, monkeypatch, "ve", n, churn)
    assert nfe == 2 * n - 1
    _assert_equal(ours, ref, f"heun ve churn {churn}")
    sde, model, z = _setup("ve")
    deterministic = sample(sde, model, None, "heun", x_T=z, dtype=F64, steps=n, eps=EPS)
    assert float((ours - deterministic).abs().max()) > 0.1  # the churn noise did enter


@pytest.mark.parametrize("name", ["vp", "subvp"])
@pytest.mark.parametrize("churn", [None, {"s_churn": 10.0, "s_tmin": 0.01, "s_tmax": 50.0}])
def test_heun_equals_kdiffusion_in_edm_variables(ks, monkeypatch, name: str, churn: dict | None) -> None:
    """VP and sub-VP: our heun on x equals k-diffusion's heun on x_hat = x / alpha with D(x_hat, sigma_hat)."""
    n = 18
    ours, ref, nfe = _heun_pair(ks, monkeypatch, name, n, churn)
    assert nfe == 2 * n - 1
    _assert_equal(ours, ref, f"heun {name} churn {churn}")


@pytest.mark.parametrize("denoise", [True, False])
def test_ddim_equals_kdiffusion_euler_on_ve(ks, denoise: bool) -> None:
    """DDIM (eta = 0) on VE is Euler in sigma: on the karras grid it equals sample_euler on the same levels, its
    denoise being the last Euler step to sigma = 0."""
    sde, model, z = _setup("ve")
    n = 25
    sigmas = _karras(ks, sde, n)
    ref = ks.sample_euler(_denoiser(sde, model), z, sigmas if denoise else sigmas[:-1], disable=True)
    # steps counts k-diffusion's way on the karras grid with denoise (n levels, the step to 0 included)
    ours, info = sample(sde, model, None, "ddim", x_T=z, dtype=F64, steps=n if denoise else n - 1, grid="karras",
                        rho=RHO, eps=EPS, denoise=denoise, return_info=True)
    assert info.nfe == n - 1 + denoise  # k-diffusion's NFE on the same levels
    _assert_equal(ours, ref, f"ddim/euler denoise={denoise}")


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("n", [5, 20])
def test_dpmpp_2m_equals_kdiffusion(ks, name: str, n: int) -> None:
    """DPM-Solver++(2M) on the karras grid equals k-diffusion's sample_dpmpp_2m on the same levels (on VP/sub-VP in
    EDM's variables): first order on its first step and on the last, to sigma = 0, which is our denoise (the data
    prediction at eps). k-diffusion never lowers the order before that, so lower_order_final=False (with it, ours
    takes a first-order step before the last below 15 steps, and differs by design)."""
    if "dpm_solver" not in list(SAMPLERS):  # (list: `in SAMPLERS` raised ValueError for unknown names)
        pytest.skip("the dpm_solver sampler is not registered")
    sde, model, z = _setup(name)
    x_hat = z / sde.alpha(torch.tensor(sde.T, dtype=F64))
    ref = ks.sample_dpmpp_2m(_denoiser(sde, model), x_hat, _karras(ks, sde, n), disable=True)
    ours, info = sample(sde, model, None, "dpm_solver", x_T=z, dtype=F64, steps=n, grid="karras", rho=RHO,
                        eps=EPS, algorithm="dpmsolver++", method="multistep", order=2, denoise=True,
                        lower_order_final=False, return_info=True)
    assert info.nfe == n
    _assert_equal(ours, ref, f"dpmpp_2m {name} n={n}")


@pytest.mark.parametrize("name", ["vp", "subvp"])
@pytest.mark.parametrize("n", [1, 2, 15])
def test_ddim_equals_kdiffusion_euler_in_edm_variables_with_the_same_step_count(ks, name: str, n: int) -> None:
    """Issue 26 item 2: on the karras grid ``steps=n`` (with ``denoise``) is k-diffusion's ``get_sigmas_karras(n,
    ...)``: n levels then sigma = 0, NFE n. DDIM (eta = 0) on VP / sub-VP is Euler on x_hat = x / alpha in EDM's
    variables, so it equals ``sample_euler`` there."""
    sde, model, z = _setup(name)
    x_hat = z / sde.alpha(torch.tensor(sde.T, dtype=F64))
    ref = ks.sample_euler(_denoiser(sde, model), x_hat, _karras(ks, sde, n), disable=True)
    ours, info = sample(sde, model, None, "ddim", x_T=z, dtype=F64, steps=n, grid="karras", rho=RHO, eps=EPS,
                        denoise=True, return_info=True)
    assert info.nfe == n
    _assert_equal(ours, ref, f"ddim/euler {name} n={n}")
