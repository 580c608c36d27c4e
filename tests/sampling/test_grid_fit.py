"""``optimize_grid``: grids fitted to the model on exact-score mixtures (the 2-D mixture's closed-form score, so every
error is the sampler's): monotone with the sampler's ends, within the ``nfe`` budget (calls counted), lower error
than the grid it starts from (recomputed here against an independent dopri8 solve), reproducible, every sampler
family including phase space and stochastic samplers, and one-line refusals."""

from __future__ import annotations

import math

import pytest
import torch

from scoresde import sample, sdes
from scoresde.models import as_model
from scoresde.numerics.grids import time_steps
from scoresde.sampling import SAMPLERS, optimize_grid
from scoresde.sdes import PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

from .test_nfe_budget import counting_score

F64 = torch.float64
GM = GaussianMixture.example_2d()


def _vp() -> tuple[VPSDE, object]:
    sde = VPSDE(N=1000)
    return sde, GM.score_fn(sde)


def _fit(sde, score, *, nfe: int, seed: int = 1, probes: int = 64, max_evals: int = 30, **options):
    return optimize_grid(sde, score, (probes, 2), nfe=nfe, generator=torch.Generator().manual_seed(seed), dtype=F64,
                         max_evals=max_evals, return_info=True, **options)


def _path_error(sde, score, times, x_T, sampler: str, **options) -> float:
    """Mean ``||x - x_ref|| / sqrt(2)`` against dopri8 at 1e-9, computed here, not by the fit."""
    ref = sample(sde, score, None, "ode", x_T=x_T, dtype=F64, rtol=1e-9, atol=1e-9, method="dopri8")
    x = sample(sde, score, None, sampler, x_T=x_T, dtype=F64, times=times, **options)
    return float((x - ref).norm(dim=1).mean()) / math.sqrt(2)


def test_fitted_grid_is_monotone_within_budget_and_beats_its_start() -> None:
    sde, score = _vp()
    options = {"algorithm": "dpmsolver", "order": 3}
    times, info = _fit(sde, score, nfe=6, max_evals=60, sampler="dpm_solver", **options)
    assert times.dtype == F64 and times.shape == (7,)  # multistep: one call per interval
    assert float(times[0]) == sde.T and float(times[-1]) == pytest.approx(1e-3, abs=1e-15)
    assert bool((times[1:] < times[:-1]).all())
    counted, calls = counting_score(score)
    _, run = sample(sde, counted, (8, 2), "dpm_solver", dtype=F64, times=times, return_info=True, **options)
    assert run.nfe == calls[0] == info.nfe == 6
    assert info.criterion == "path_error" and info.value < 0.8 * info.start_value
    # the same probe draws (the generator's first draw), scored independently of the fit
    x_T = sde.prior_sampling((64, 2), torch.Generator().manual_seed(1), dtype=F64)
    start = time_steps(sde, 6, grid=info.start_grid, eps=1e-3)
    fitted_err, start_err = (_path_error(sde, score, t, x_T, "dpm_solver", **options) for t in (times, start))
    assert fitted_err < 0.8 * start_err
    assert fitted_err == pytest.approx(info.value, rel=0.05)  # the fit's own reference is dopri5 at 1e-6


def test_same_generator_same_grid_and_other_seed_other_probes() -> None:
    sde, score = _vp()
    a = _fit(sde, score, nfe=5, sampler="ddim")[0]
    b = _fit(sde, score, nfe=5, sampler="ddim")[0]
    c = _fit(sde, score, nfe=5, sampler="ddim", seed=2)[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_model_first_form() -> None:
    sde, score = _vp()
    model = as_model(sde, score)
    a = optimize_grid(model, (32, 2), sampler="unipc", nfe=5, generator=torch.Generator().manual_seed(0),
                      dtype=F64, max_evals=10)
    b = optimize_grid(sde, score, (32, 2), sampler="unipc", nfe=5, generator=torch.Generator().manual_seed(0),
                      dtype=F64, max_evals=10)
    assert torch.equal(a, b)


CASES = [  # (SDE, sampler, options, budget, expected number of times, criterion)
    ("VE", "heun", {}, 9, 5, "path_error"),  # 2 calls per Heun step, the last (to sigma = 0) one
    ("sub-VP", "dpm_solver", {"method": "singlestep", "order": 2}, 9, 5, "path_error"),  # 4 steps, 8 calls
    ("sub-VP", "unipc", {"order": 3, "prediction": "noise"}, 8, 9, "path_error"),
    ("VP", "ddim", {"denoise": True}, 8, 8, "path_error"),  # the last call is the denoising
    ("VP", "ddim", {"eta": 1.0}, 8, 9, "energy_distance"),
    ("VP", "dpm_solver", {"algorithm": "sde-dpmsolver++"}, 8, 9, "energy_distance"),
    ("VP", "pc", {"predictor": "euler_maruyama", "corrector": "none"}, 8, 8, "energy_distance"),
    ("PSLD", "dpm_solver", {"algorithm": "dpmsolver", "grid": "time_quadratic"}, 8, 9, "path_error"),  # kernel flow
    ("PSLD", "ddim", {}, 8, 9, "path_error"),  # flow="kernel"
    ("PSLD", "sscs", {}, 8, 8, "energy_distance"),
]
SDES = {"VE": lambda: VESDE(sigma_min=0.01, sigma_max=20.0), "VP": lambda: VPSDE(N=1000),
        "sub-VP": lambda: SubVPSDE(N=1000), "PSLD": lambda: PSLD()}


@pytest.mark.parametrize(("sde_name", "sampler", "options", "nfe", "n_times", "criterion"), CASES)
def test_every_sampler_family(sde_name, sampler, options, nfe, n_times, criterion) -> None:
    sde = SDES[sde_name]()
    score = PhaseSpaceMixture(GM, sde).score if sde.has_auxiliary else GM.score_fn(sde)
    times, info = _fit(sde, score, nfe=nfe, probes=32, max_evals=12, sampler=sampler, **options)
    assert times.shape == (n_times,) and bool((times[1:] < times[:-1]).all())
    assert info.nfe <= nfe and info.criterion == criterion
    assert info.value <= info.start_value and math.isfinite(info.value)
    counted, calls = counting_score(score)
    sample(sde, counted, (4, 2), sampler, dtype=F64, times=times, generator=torch.Generator().manual_seed(0),
           **options)
    assert calls[0] == info.nfe


def test_every_fixed_step_sampler_is_covered() -> None:
    assert {name for name, spec in SAMPLERS.items() if spec.fixed_steps} == {case[1] for case in CASES}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sampler": "ode"}, "needs a fixed-step sampler"),
    ({"sampler": "ddim", "steps": 10}, "pass no steps"),
    ({"sampler": "ddim", "space": "sigma"}, "unknown space 'sigma'"),
    ({"sampler": "ddim", "grid": "cosine"}, "unknown grid 'cosine'"),
    ({"sampler": "heun", "nfe": 0}, "nfe must be a positive integer"),
    ({"sampler": "dpm_solver", "order": 3, "nfe": 2}, "nfe=2 is too small"),
    ({"sampler": "ddim", "eta": 2.0}, "eta must lie in [0, 1]"),
])
def test_bad_input_is_one_line(kwargs, message) -> None:
    sde, score = _vp()
    kwargs = {"nfe": 5, **kwargs}
    with pytest.raises(ValueError, match=None) as err:
        optimize_grid(sde, score, (8, 2), dtype=F64, max_evals=2, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["EDM", "CosineVP", "RectifiedFlow"])
def test_the_other_schedules(name) -> None:
    """The scalar schedules beyond VE/VP/sub-VP: the grid ends at the SDE's own floor (``sampling_eps``)."""
    sde = getattr(sdes, name)()
    times, info = _fit(sde, GM.score_fn(sde), nfe=6, probes=32, max_evals=8, sampler="dpm_solver")
    assert times.shape == (7,) and info.nfe == 6 and info.value <= info.start_value
    assert float(times[0]) == sde.T and float(times[-1]) == pytest.approx(sde.sampling_eps, rel=1e-12)
