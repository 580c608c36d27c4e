"""The default end time ``eps`` of every sampler, inverse method and likelihood comes from the SDE (issue 23 item 1):
``sde.sampling_eps`` (``1e-3``; EDM: ``sigma_min = 0.002``) and ``sde.likelihood_eps`` (``1e-5``; EDM:
``sigma_min``), so ``scoresde.sample(edm_model, shape, "heun", steps=18)`` is EDM's sampler (Karras et al. 2022, eq. 5
levels down to ``sigma_min``, 35 NFE) without passing ``eps``. The floor is read off the times at which the exact
mixture score is evaluated (a recording score function), not from the code under test."""

from __future__ import annotations

import pytest
import torch

import scoresde
from scoresde.config import config_from_dict, get_preset, load_config
from scoresde.inverse import INVERSE_METHODS, Dense, solve_inverse
from scoresde.numerics.times import resolve_eps
from scoresde.sampling import SAMPLERS
from scoresde.sdes import CLD, EDM, PSLD, VESDE, VPSDE, CosineVP, RectifiedFlow, SubVPSDE
from scoresde.toy import GaussianMixture
from tests.kdiffusion import kdiffusion_sampling

F64 = torch.float64
#: every registered sampler that takes a scalar SDE (sscs is the phase-space splitting sampler), with few steps;
#: ``denoise`` makes the multistep samplers evaluate the model at their last time (``eps``) too
CASES = {"pc": {"steps": 10, "predictor": "euler_maruyama", "corrector": "none"}, "ode": {"rtol": 1e-3, "atol": 1e-3},
         "ddim": {"steps": 10, "denoise": True}, "heun": {"steps": 10}, "unipc": {"steps": 10, "denoise": True},
         "dpm_solver": {"steps": 10, "denoise": True}}


class Recorder:
    """The exact score of the 2-D mixture under ``sde``, recording the smallest time of each call."""

    def __init__(self, sde) -> None:
        self.score, self.times = GaussianMixture.example_2d().score_fn(sde), []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.times.append(float(t.min()))
        return self.score(x, t)


def _sample(sde, sampler: str, **options):
    score = Recorder(sde)
    z = sde.prior_sampling((8, 2), torch.Generator().manual_seed(0), dtype=F64)
    x, info = scoresde.sample(sde, score, None, sampler, x_T=z, dtype=F64, return_info=True,
                              generator=torch.Generator().manual_seed(1), **{**CASES[sampler], **options})
    return x, score.times, info


def test_the_sdes_floors() -> None:
    for sde in (VESDE(), VPSDE(), SubVPSDE(), CosineVP(), RectifiedFlow(), PSLD(), CLD()):
        assert (sde.sampling_eps, sde.likelihood_eps) == (1e-3, 1e-5), type(sde).__name__
    assert (EDM().sampling_eps, EDM().likelihood_eps) == (0.002, 0.002)
    assert EDM(sigma_min=0.01, sigma_max=50.0).sampling_eps == 0.01
    assert (resolve_eps(EDM(), None), resolve_eps(EDM(), None, likelihood=True), resolve_eps(VPSDE(), 0.3)) == (
        0.002, 0.002, 0.3)
    with pytest.raises(ValueError, match=r"eps must lie in \(0, T=80.0\), got 81"):
        resolve_eps(EDM(), 81)


def test_every_scalar_sampler_is_covered() -> None:
    assert set(CASES) == {name for name in SAMPLERS if name != "sscs"}


@pytest.mark.parametrize("sampler", sorted(CASES))
def test_every_sampler_stops_at_edms_sigma_min_by_default(sampler: str) -> None:
    sde = EDM()
    x, times, info = _sample(sde, sampler)
    assert min(times) == pytest.approx(0.002, rel=1e-12, abs=0) and info.options["eps"] == 0.002
    explicit, _, _ = _sample(sde, sampler, eps=0.002)
    assert torch.equal(x, explicit)
    assert min(_sample(sde, sampler, eps=1e-3)[1]) == pytest.approx(1e-3, rel=1e-12, abs=0)  # an explicit eps wins


@pytest.mark.parametrize("sampler", sorted(CASES))
@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_vp_and_ve_keep_1e_3_bit_for_bit(sde, sampler: str) -> None:
    x, times, info = _sample(sde, sampler)
    assert min(times) == pytest.approx(1e-3, rel=1e-12, abs=0) and info.options["eps"] == 1e-3
    assert torch.equal(x, _sample(sde, sampler, eps=1e-3)[0])


def test_heun_by_default_is_edms_sampler_on_karras_levels() -> None:
    """``sample(EDM(), ..., "heun", steps=18)``: evaluated at k-diffusion's ``get_sigmas_karras(18, 0.002, 80, 7)``
    (EDM eq. 5) and nothing else, 35 NFE."""
    ks = kdiffusion_sampling()
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # k-diffusion's ramp takes the default dtype
    try:
        sigmas = ks.get_sigmas_karras(18, 0.002, 80.0, 7.0)
    finally:
        torch.set_default_dtype(default)
    _, times, info = _sample(EDM(), "heun", steps=18)
    assert info.nfe == 35 and info.options["grid"] == "karras" and info.options["rho"] == 7.0
    levels = torch.tensor(sorted(set(times), reverse=True), dtype=F64)
    assert levels.shape == (18,) and float(sigmas[-1]) == 0.0
    torch.testing.assert_close(levels, sigmas[:-1], rtol=1e-14, atol=0)


def test_the_likelihood_starts_at_the_sdes_floor() -> None:
    x = GaussianMixture.example_2d().sample(4, torch.Generator().manual_seed(2))
    for sde, floor in ((EDM(), 0.002), (VPSDE(), 1e-5)):
        score = Recorder(sde)
        logp = scoresde.log_likelihood(sde, score, x, trace="exact", method="rk4", steps=8)
        assert min(score.times) == pytest.approx(floor, rel=1e-12, abs=0), type(sde).__name__
        torch.testing.assert_close(logp, scoresde.log_likelihood(sde, score, x, trace="exact", method="rk4", steps=8,
                                                                 eps=floor), rtol=0, atol=0)
        bpd_score = Recorder(sde)
        scoresde.bits_per_dim(sde, bpd_score, (x.clamp(0, 1) * 255).to(torch.uint8), trace="exact", method="rk4",
                              steps=4, dequantization="midpoint", dtype=F64)
        assert min(bpd_score.times) == pytest.approx(floor, rel=1e-12, abs=0), type(sde).__name__


@pytest.mark.parametrize("method", list(INVERSE_METHODS))
def test_every_inverse_method_stops_at_the_sdes_floor(method: str) -> None:
    A = Dense(torch.tensor([[1.0, 0.0]], dtype=F64))
    y = torch.full((4, 1), 1.0, dtype=F64)
    for sde, floor in ((EDM(), 0.002), (VPSDE(N=100), 1e-3)):
        score = Recorder(sde)
        _, info = solve_inverse(sde, score, A, y, method=method, steps=25, dtype=F64, return_info=True,
                                generator=torch.Generator().manual_seed(0))
        assert min(score.times) == pytest.approx(floor, rel=1e-12, abs=0), type(sde).__name__
        assert info.options["eps"] == floor


def test_the_config_leaves_the_floor_to_the_sde() -> None:
    edm = load_config("edm/digits")
    assert edm.sampling.eps is None
    assert edm.sampling.sampler_call() == ("heun", {"steps": 18, "nfe": None, "grid": "karras", "rho": 7.0,
                                                    "eps": None, "s_churn": 0.0, "s_tmin": 0.0, "s_tmax": None,
                                                    "s_noise": 1.0, "denoise": True})
    assert config_from_dict(get_preset("digits/vp_ddpmpp")).sampling.eps is None
    assert load_config("fm/digits").sampling.eps is None
