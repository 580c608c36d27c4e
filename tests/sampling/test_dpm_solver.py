"""DPM-Solver / DPM-Solver++ on VE, VP and sub-VP: order 1 is DDIM, the convergence orders against the closed-form
probability-flow solution of Gaussian data, the path error against a tight ODE solve on the 2-D mixture, the
stochastic SDE-DPM-Solver++, the adaptive solver, lower_order_final, denoise, the NFE and the bad inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scoresde import sample
from scoresde.config import SamplingConfig, apply_overrides, config_from_dict, get_preset
from scoresde.sampling import SAMPLERS, dpm_solver
from scoresde.sdes import CLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture, energy_distance

F64 = torch.float64
SDES = {"ve": lambda: VESDE(sigma_min=0.01, sigma_max=10.0, N=1000), "vp": lambda: VPSDE(N=1000),
        "subvp": lambda: SubVPSDE(N=1000)}
ALGORITHMS = ("dpmsolver", "dpmsolver++")


def _linear_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth, t-dependent, non-trivial score (no model's exact one: the identities below must not care)."""
    return -x * (1.0 + t[:, None]) + 0.3 * torch.sin(x.flip(1))


def _dpm(sde, score, x_T: torch.Tensor, **options):
    return sample(sde, score, None, "dpm_solver", x_T=x_T, dtype=F64, return_info=True, **options)


def _start(sde, n: int, seed: int) -> torch.Tensor:
    return sde.prior_sampling((n, 2), torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("name", list(SDES))
def test_order_one_is_ddim(name: str) -> None:
    """DPM-Solver-1 and DPM-Solver++-1 (single- or multistep) are DDIM with eta = 0 on the same times."""
    sde = SDES[name]()
    times = torch.tensor([0.9, 0.55, 0.2, 0.03], dtype=F64)
    x_T = _start(sde, 8, 0)
    ddim = sample(sde, _linear_score, None, "ddim", times=times, x_T=x_T, dtype=F64)
    for algorithm in ALGORITHMS:
        for method in ("multistep", "singlestep"):
            x, info = _dpm(sde, _linear_score, x_T, times=times, order=1, algorithm=algorithm, method=method)
            assert info.nfe == 3
            torch.testing.assert_close(x, ddim, rtol=1e-12, atol=1e-12, msg=lambda m, a=algorithm, k=method: f"{a} "
                                       f"{k}: {m}")


# -- convergence orders on Gaussian data, whose probability-flow solution is closed form ---------------------------
MU, STD = (0.5, -1.0), 0.4
#: steps compared (error ratio over a factor 4 in steps): singlestep order 3 of DPM-Solver++ approaches its order
#: slowly (2.4-2.8 at 20 -> 80), so singlestep runs twice as many outer steps
STEPS = {"multistep": (20, 80), "singlestep": (40, 160)}


def _gaussian_flow_end(sde, x_T: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """x_t = alpha_t mu + c_t xi, c_t = sqrt(alpha_t^2 s^2 + sigma_t^2), solves the probability-flow ODE of
    N(mu, s^2 I) data exactly (xi fixed along the path), so x_eps follows from x_T in closed form."""
    mu = torch.tensor(MU, dtype=F64)
    T, e = torch.tensor(sde.T, dtype=F64), torch.tensor(eps, dtype=F64)

    def c(t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(sde.alpha(t) ** 2 * STD**2 + sde.sigma(t) ** 2)

    return sde.alpha(e) * mu + c(e) / c(T) * (x_T - sde.alpha(T) * mu)


#: observed-order bounds of order 3: the official multistep D2 weight phi_3 (half the Taylor one) converges at second
#: order (measured 2.07-2.45); multistep_taylor and singlestep at third (3.2-4.0, pre-asymptotically above 3: the
#: first-order start-up step makes multistep second order only in the limit, with a tiny constant)
ORDER3 = {"multistep": (1.9, 2.6), "multistep_taylor": (2.6, 4.3), "singlestep": (2.6, 4.3)}


@pytest.mark.parametrize("method", ["multistep", "multistep_taylor", "singlestep"])
@pytest.mark.parametrize("name", list(SDES))
def test_convergence_order_on_gaussian_data(name: str, method: str) -> None:
    """Error ratio over a 4x step refinement is 4^p with p the order: p within 0.2 of 1 and 2, within ORDER3 for 3;
    the Taylor-weighted multistep order 3 is 3-30x more accurate than the official one at 20 and 80 steps here."""
    sde = SDES[name]()
    gm = GaussianMixture([1.0], [MU], [STD])
    score = gm.score_fn(sde)
    x_T = _start(sde, 8, 0)
    exact = _gaussian_flow_end(sde, x_T)
    lo, hi = STEPS["singlestep" if method == "singlestep" else "multistep"]
    measured, bad = {}, []
    for algorithm in ALGORITHMS:
        for order in (1, 2, 3) if method != "multistep_taylor" else (3,):
            errors = []
            for steps in (lo, hi):
                x, info = _dpm(sde, score, x_T, steps=steps, order=order, algorithm=algorithm, method=method)
                assert info.nfe == (order * steps if method == "singlestep" else steps)
                errors.append(float((x - exact).norm(dim=1).mean()))
            p = math.log(errors[0] / errors[1]) / math.log(hi / lo)
            measured[f"{algorithm}-{order}"] = round(p, 2)
            if not (abs(p - order) < 0.2 if order < 3 else ORDER3[method][0] < p < ORDER3[method][1]):
                bad.append(f"{algorithm}-{order}")
    assert not bad, f"{name}/{method}: observed orders {measured}"


# -- the 2-D mixture: path error to a tight probability-flow solve --------------------------------------------------
@pytest.mark.parametrize(("name", "factor_2m", "factor_3m"), [("ve", 0.25, 0.09), ("vp", 0.3, 0.14),
                                                               ("subvp", 0.45, 0.2)])
def test_second_and_third_order_multistep_beat_ddim_at_20_steps(name: str, factor_2m: float, factor_3m: float) -> None:
    """At 20 NFE on the logSNR grid, DPM-Solver++(2M)'s and (3M)'s median path error is a fraction of DDIM's
    (measured: VE 0.13 / 0.043, VP 0.20 / 0.069, sub-VP 0.34 / 0.104; 0.1's Taylor-weighted 3M: 0.10, 0.14, 0.19)."""
    sde = SDES[name]()
    score = GaussianMixture.example_2d().score_fn(sde)
    x_T = _start(sde, 64, 3)
    ref = sample(sde, score, None, "ode", x_T=x_T, dtype=F64, rtol=1e-9, atol=1e-9, method="dopri8")

    def error(x: torch.Tensor) -> float:
        return float((x - ref).norm(dim=1).median())

    ddim = error(sample(sde, score, None, "ddim", x_T=x_T, dtype=F64, steps=20, grid="logSNR"))
    x2, info2 = _dpm(sde, score, x_T, steps=20, order=2)
    x3, info3 = _dpm(sde, score, x_T, steps=20, order=3)
    assert info2.nfe == info3.nfe == 20
    assert error(x2) < factor_2m * ddim, (error(x2), ddim)
    assert error(x3) < factor_3m * ddim, (error(x3), ddim)


# -- SDE-DPM-Solver++ ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SDES))
def test_sde_dpmsolver_1s_is_the_ddpm_posterior_step(name: str) -> None:
    """SDE-DPM-Solver++(1S) draws x_t ~ q(x_t | x_s, x0_hat): DDIM with eta = 1, noise for noise (same generator)."""
    sde = SDES[name]()
    times = torch.tensor([0.9, 0.55, 0.2, 0.03], dtype=F64)
    x_T = _start(sde, 8, 0)
    ddim = sample(sde, _linear_score, None, "ddim", times=times, x_T=x_T, dtype=F64, eta=1.0,
                  generator=torch.Generator().manual_seed(4))
    x, _ = _dpm(sde, _linear_score, x_T, times=times, order=1, algorithm="sde-dpmsolver++",
                generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(x, ddim, rtol=1e-12, atol=1e-12)


def test_sde_dpmsolver_2m_step_closed_form() -> None:
    """SDE-DPM-Solver++(2M) written out from alpha, sigma and lambda: x_t = sigma_t/sigma_s e^-h x_s + alpha_t (1 -
    e^-2h) (m_s + (m_s - m_prev) h / (2 h_prev)) + sigma_t sqrt(1 - e^-2h) z, one batch-first draw per step."""
    sde = SubVPSDE()
    times = torch.tensor([0.9, 0.5, 0.2, 0.05], dtype=F64)
    x_T = _start(sde, 8, 0)
    out, info = _dpm(sde, _linear_score, x_T, times=times, order=2, algorithm="sde-dpmsolver++",
                     lower_order_final=False, generator=torch.Generator().manual_seed(3))
    assert info.nfe == 3
    g, x, prev = torch.Generator().manual_seed(3), x_T, None
    for t, s in itertools.pairwise(times):
        tt = t.expand(8)
        m = sde.denoise(x, tt, _linear_score(x, tt))
        h = sde.lambda_t(s) - sde.lambda_t(t)
        d = m if prev is None else m + (m - prev[0]) * h / (2 * (sde.lambda_t(t) - sde.lambda_t(prev[1])))
        z = torch.randn((8, 2), generator=g, dtype=F64)
        x = (sde.sigma(s) / sde.sigma(t) * torch.exp(-h) * x + sde.alpha(s) * (1 - torch.exp(-2 * h)) * d
             + sde.sigma(s) * torch.sqrt(1 - torch.exp(-2 * h)) * z)
        prev = (m, t)
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


def test_sde_dpmsolver_2m_reproduces_the_mixture_and_is_reproducible() -> None:
    """200 steps of SDE-DPM-Solver++(2M) with the exact score meet the samplers' energy-distance criterion
    (tests/sampling/test_samplers_exact_score.py); a 1.5x score fails it; the draws come from the generator only.

    The control is 1.5x, not 1.3x: the stochastic sampler corrects part of a score error, and a 1.3x score measured
    ratios 4.0 and 10.3 on two seeds (1.5x: 12.3 and 22.5; the exact score 1.95 and 0.58)."""
    sde = VPSDE(N=1000)
    gm = GaussianMixture.example_2d()
    g = torch.Generator().manual_seed(1234)
    reference = gm.sample(2000, g)
    baseline = sum(energy_distance(gm.sample(2000, g), reference) for _ in range(4)) / 4
    options = {"steps": 200, "algorithm": "sde-dpmsolver++", "dtype": F64}

    def draw(score, seed: int) -> torch.Tensor:
        return sample(sde, score, (2000, 2), "dpm_solver", generator=torch.Generator().manual_seed(seed), **options)

    x = draw(gm.score_fn(sde), 5)
    assert energy_distance(x, reference) / baseline < 5.0
    proportions = torch.bincount(gm.responsibilities(x).argmax(1), minlength=3) / x.shape[0]
    torch.testing.assert_close(proportions.double(), gm.weights, atol=0.04, rtol=0)
    wrong = draw(lambda y, t: 1.5 * gm.score_fn(sde)(y, t), 5)
    assert energy_distance(wrong, reference) / baseline > 5.0  # the criterion can fail
    x_T = _start(sde, 16, 9)
    runs = [_dpm(sde, gm.score_fn(sde), x_T, steps=30, algorithm="sde-dpmsolver++",
                 generator=torch.Generator().manual_seed(s))[0] for s in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], runs[2])


# -- adaptive -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vp", "subvp"])
def test_adaptive_meets_a_tolerance_and_spends_less_when_looser(name: str) -> None:
    """DPM-Solver-12 and -23 with rtol 1e-3 land within 1e-3 of the tight ODE solve (measured 1.3e-4 / 3.1e-5 on VP,
    361 / 172 NFE); the default tolerances cost fewer calls; one error norm per batch makes the samples coupled."""
    sde = SDES[name]()
    score = GaussianMixture.example_2d().score_fn(sde)
    x_T = _start(sde, 64, 3)
    ref = sample(sde, score, None, "ode", x_T=x_T, dtype=F64, rtol=1e-9, atol=1e-9, method="dopri8")
    for order in (2, 3):
        x, tight = _dpm(sde, score, x_T, method="adaptive", order=order, rtol=1e-3, atol=1e-4)
        assert float((x - ref).norm(dim=1).median()) < 1e-3, order
        _, loose = _dpm(sde, score, x_T, method="adaptive", order=order)
        assert 0 < loose.nfe < tight.nfe, (order, loose.nfe, tight.nfe)
    assert SAMPLERS["dpm_solver"].is_coupled({"method": "adaptive"})
    assert not SAMPLERS["dpm_solver"].is_coupled({})


def test_adaptive_reports_accepted_steps_and_gives_up_instead_of_looping(monkeypatch: pytest.MonkeyPatch) -> None:
    sde = VPSDE()
    x_T = _start(sde, 4, 0)
    seen: list[float] = []
    _dpm(sde, _linear_score, x_T, method="adaptive", order=3, callback=lambda i, t, y, x0: seen.append(float(t)))
    assert seen and seen[-1] == 1e-3 and all(a > b for a, b in itertools.pairwise(seen))
    monkeypatch.setattr(dpm_solver, "_MAX_TRIES", 5)
    with pytest.raises(RuntimeError, match=r"did not reach t=0\.001 in 5 attempted steps"):
        _dpm(sde, _linear_score, x_T, method="adaptive", order=2, rtol=1e-6, atol=1e-8)


# -- options and counts ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_lower_order_final_makes_the_last_step_ddim_below_10_steps(algorithm: str) -> None:
    """Multistep order 3 with 8 steps: with lower_order_final the last step is first order (DDIM from the state the
    callback saw before it); without, it is not; from 10 steps on (the official code's threshold, diffusers' is 15)
    the option changes nothing."""
    sde = VPSDE()
    x_T = _start(sde, 8, 1)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    x, info = _dpm(sde, _linear_score, x_T, steps=8, order=3, algorithm=algorithm,
                   callback=lambda i, t, y, x0: seen.append((t, y)))
    assert info.nfe == 8 and len(seen) == 8 and torch.equal(seen[-1][1], x)
    last = sample(sde, _linear_score, None, "ddim", times=torch.stack([seen[-2][0], seen[-1][0]]), x_T=seen[-2][1],
                  dtype=F64)
    torch.testing.assert_close(x, last, rtol=1e-12, atol=1e-12)
    x_full, _ = _dpm(sde, _linear_score, x_T, steps=8, order=3, algorithm=algorithm, lower_order_final=False)
    assert not torch.allclose(x_full, x, rtol=0, atol=1e-8)
    same = [_dpm(sde, _linear_score, x_T, steps=10, order=3, algorithm=algorithm, lower_order_final=lof)[0]
            for lof in (True, False)]
    assert torch.equal(*same)
    assert dpm_solver.LOWER_ORDER_FINAL_BELOW == 10
    nine = [_dpm(sde, _linear_score, x_T, steps=9, order=3, algorithm=algorithm, lower_order_final=lof)[0]
            for lof in (True, False)]
    assert not torch.allclose(*nine, rtol=0, atol=1e-8)


def test_nfe_and_denoise() -> None:
    """NFE counted: multistep steps, singlestep order * steps; denoise adds one data prediction at eps."""
    sde = SubVPSDE()
    gm = GaussianMixture.example_2d()
    x_T = _start(sde, 4, 2)
    for method, order, nfe in [("multistep", 3, 7), ("singlestep", 2, 14), ("singlestep", 3, 21)]:
        assert _dpm(sde, _linear_score, x_T, steps=7, order=order, method=method)[1].nfe == nfe
    x, info = _dpm(sde, gm.score_fn(sde), x_T, steps=7, eps=1e-2)
    x_d, info_d = _dpm(sde, gm.score_fn(sde), x_T, steps=7, eps=1e-2, denoise=True)
    assert info_d.nfe == info.nfe + 1 and info_d.options["denoise"] is True
    t = torch.full((4,), 1e-2, dtype=F64)
    torch.testing.assert_close(x_d, sde.denoise(x, t, gm.score(x, t, sde)), rtol=1e-12, atol=1e-12)
    # with explicit times the final data prediction is at the last of them, not at eps
    times = torch.tensor([1.0, 0.5, 0.2, 0.05], dtype=F64)
    x, _ = _dpm(sde, gm.score_fn(sde), x_T, times=times)
    x_d, _ = _dpm(sde, gm.score_fn(sde), x_T, times=times, denoise=True)
    t = torch.full((4,), 0.05, dtype=F64)
    torch.testing.assert_close(x_d, sde.denoise(x, t, gm.score(x, t, sde)), rtol=1e-12, atol=1e-12)


def test_float32_state_follows_the_float64_run() -> None:
    sde = VPSDE()
    score = GaussianMixture.example_2d().score_fn(sde)
    x_T = _start(sde, 16, 6)
    x64, _ = _dpm(sde, score, x_T, steps=12, order=3, method="singlestep")
    x32 = sample(sde, score, None, "dpm_solver", x_T=x_T.float(), steps=12, order=3, method="singlestep")
    assert x32.dtype == torch.float32
    torch.testing.assert_close(x32.double(), x64, rtol=0, atol=1e-4)


def test_config_section_has_the_options() -> None:
    fields = SamplingConfig()
    assert (fields.order, fields.algorithm, fields.dpm_method) == (2, "dpmsolver++", "multistep")
    assert (fields.dpm_rtol, fields.dpm_atol, fields.lower_order_final) == (0.05, 0.0078, True)
    values = apply_overrides(get_preset("digits/vp_ddpmpp"), ["sampling.method=dpm_solver", "sampling.steps=20",
                                                              "sampling.dpm_method=singlestep", "sampling.order=3"])
    name, options = config_from_dict(values).sampling.sampler_call()
    assert name == "dpm_solver"
    assert {k: options[k] for k in ("steps", "method", "order", "rtol")} == {"steps": 20, "method": "singlestep",
                                                                             "order": 3, "rtol": 0.05}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"algorithm": "dpm++"}, "unknown algorithm 'dpm\\+\\+'; valid algorithms are: dpmsolver, dpmsolver\\+\\+, "
                                 "sde-dpmsolver\\+\\+"),
        ({"method": "heun"}, "unknown method 'heun'; valid methods are: singlestep, multistep, multistep_taylor, "
                             "adaptive"),
        ({"method": "multistep_taylor"}, "method 'multistep_taylor' is a third-order multistep variant: it needs "
                                         "order=3, got order=2"),
        ({"method": "adaptive", "nfe": 20}, "method 'adaptive' spends what its tolerances need: pass rtol/atol, not "
                                            "nfe=20"),
        ({"nfe": 20, "steps": 10}, "pass steps, times or nfe \\(a budget of network calls\\), not nfe=20 with steps"),
        ({"nfe": 2, "order": 3}, "nfe=2 is too small for dpm_solver multistep of order 3: its fewest steps cost 3"),
        ({"nfe": 0}, "nfe must be a positive integer, got 0"),
        ({"order": 4}, "order must be 1, 2 or 3, got 4"),
        ({"order": True}, "order must be 1, 2 or 3, got True"),
        ({"order": 3, "steps": 2}, "multistep order 3 needs at least 3 steps, got 2"),
        ({"order": 2, "times": torch.tensor([0.9])}, "times must be a 1-D tensor of at least 2"),
        ({"method": "adaptive", "times": torch.tensor([0.9, 0.1])}, "method 'adaptive' chooses its own times"),
        ({"method": "adaptive", "order": 1}, "method 'adaptive' needs order 2 \\(DPM-Solver-12\\) or 3"),
        ({"method": "adaptive", "atol": 0.0}, "method 'adaptive' needs atol > 0 and rtol >= 0, got atol=0.0"),
        ({"algorithm": "sde-dpmsolver++", "order": 3}, "algorithm 'sde-dpmsolver\\+\\+' takes order 1"),
        ({"algorithm": "sde-dpmsolver++", "method": "adaptive"}, "takes order 1 .*got order=2, method='adaptive'"),
        ({"grid": "cosine", "steps": 5}, "unknown time grid 'cosine'"),
        ({"eps": 0.0, "steps": 5}, "eps must lie in \\(0, T=1.0\\), got 0.0"),
        ({"eta": 1.0}, "unknown option\\(s\\) \\['eta'\\] for sampler 'dpm_solver'"),
    ],
)
def test_bad_options_are_one_clear_error(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample(VPSDE(), _linear_score, (2, 2), "dpm_solver", **options)


def test_phase_space_sde_refuses_only_the_stochastic_variant() -> None:
    """The deterministic solvers run on PSLD/CLD (tests/sampling/test_dpm_solver_phase_space.py); SDE-DPM-Solver++
    needs a scalar schedule."""
    with pytest.raises(ValueError, match=r"'sde-dpmsolver\+\+' needs a scalar noise schedule.*CLD has a matrix kernel"):
        sample(CLD(), lambda z, t: -z, (2, 1), "dpm_solver", steps=3, algorithm="sde-dpmsolver++")
