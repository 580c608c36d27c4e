"""PSLD and CLD samplers (EM, PC with Langevin, ancestral, probability-flow ODE, SSCS) reproduce a Gaussian mixture
when given its exact phase-space score; SSCS's split and time grids.

Oracle and criterion shared with ``test_samplers_exact_score.py``: energy distance of the returned data half to an
independent set of true samples at most ``FACTOR`` times the true-vs-true baseline, and the mixture weights
recovered.
"""

from __future__ import annotations

import pytest
import torch

from scoresde import sample
from scoresde.numerics.grids import time_steps
from scoresde.sampling.sscs import TIME_GRIDS
from scoresde.sdes import CLD, PSLD, VPSDE
from scoresde.sdes.linalg import apply_blocks
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture
from tests.sampling.test_samplers_exact_score import N_SAMPLES, oracle  # noqa: F401 (shared fixture)
from tests.sampling.test_samplers_exact_score import _check as check_samples

N_STEPS = 500
F64 = torch.float64
SDE_FACTORIES = {
    "psld": lambda **kw: PSLD(N=N_STEPS, **kw),
    "cld": lambda **kw: CLD(N=N_STEPS, **kw),
    "cld-linear-beta": lambda **kw: CLD(beta_min=1.0, beta_max=7.0, N=N_STEPS, **kw),
}
CASES = {
    "em": ("pc", {"predictor": "euler_maruyama", "corrector": "none"}),
    "em-quadratic": ("pc", {"predictor": "euler_maruyama", "corrector": "none", "grid": "quadratic"}),
    "em+langevin": ("pc", {"predictor": "euler_maruyama", "corrector": "langevin"}),
    "ancestral": ("pc", {"predictor": "ancestral_sampling", "corrector": "none"}),
    "reverse-diffusion+ald": ("pc", {"predictor": "reverse_diffusion", "corrector": "ald"}),
    "ode": ("ode", {"denoise": True}),
    "sscs-uniform-100": ("sscs", {"steps": 100, "grid": "uniform"}),
    "sscs-quadratic-50": ("sscs", {"steps": 50, "grid": "quadratic"}),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Batches of 2x2 and 4x4 matrices: threads only add overhead (and the test machine's cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check(x: torch.Tensor, reference: dict, what: str) -> None:
    assert x.shape == (N_SAMPLES, 2), f"{what}: sample returned shape {tuple(x.shape)}, not the data shape"
    check_samples(x, reference, what)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("sde_name", ["psld", "cld"])
def test_sampler_reproduces_the_mixture(oracle: dict, sde_name: str, case: str) -> None:  # noqa: F811 (the fixture)
    sde = SDE_FACTORIES[sde_name]()
    sampler, options = CASES[case]
    score = PhaseSpaceMixture(oracle["gm"], sde).score
    x, info = sample(sde, score, (N_SAMPLES, 2), sampler, generator=torch.Generator().manual_seed(7), dtype=F64,
                     return_info=True, **options)
    if sampler == "sscs":
        assert info.nfe == options["steps"] + 1  # one per step plus the final denoising
    _check(x, oracle, f"{sde_name}/{case}")


@pytest.mark.parametrize("grid", TIME_GRIDS)
def test_sscs_with_time_varying_beta_and_dsm_kernel(oracle: dict, grid: str) -> None:  # noqa: F811 (the fixture)
    """A linear beta(t) (the half steps integrate beta over their own interval) and the DSM-mode kernel (the
    marginal score does not depend on the training mode; the final denoising uses the DSM covariance)."""
    sde = SDE_FACTORIES["cld-linear-beta"](score_matching="dsm")
    x = sample(sde, PhaseSpaceMixture(oracle["gm"], sde).score, (N_SAMPLES, 2), "sscs",
               generator=torch.Generator().manual_seed(8), dtype=F64, steps=100, grid=grid)
    _check(x, oracle, f"cld-linear-beta/dsm/sscs-{grid}")


def test_criterion_rejects_a_wrong_score(oracle: dict) -> None:  # noqa: F811 (the fixture)
    """Negative control: the exact score of a mixture whose weights differ by 0.1 must fail the check."""
    gm = oracle["gm"]
    sde = SDE_FACTORIES["psld"]()
    wrong = PhaseSpaceMixture(GaussianMixture([0.4, 0.4, 0.2], gm.means, gm.covs), sde)
    x = sample(sde, wrong.score, (N_SAMPLES, 2), "sscs",
               generator=torch.Generator().manual_seed(7), dtype=F64, steps=100)
    with pytest.raises(AssertionError):
        _check(x, oracle, "wrong score")


def test_sscs_linear_half_steps_compose() -> None:
    """Two linear half steps t -> t_mid -> s equal one step t -> s in law (mean map and covariance): the second
    half step is taken at the right time even for a time-varying beta."""
    sde = CLD(beta_min=1.0, beta_max=7.0)
    t, mid, s = (torch.tensor([v], dtype=F64) for v in (0.9, 0.6, 0.3))
    phi = lambda a, b: sde.transition(a, b, reverse_linear=True)[0]  # noqa: E731
    cov = lambda a, b: sde.noise_cov(a, b, reverse_linear=True)[0]  # noqa: E731
    torch.testing.assert_close(phi(mid, s) @ phi(t, mid), phi(t, s))
    torch.testing.assert_close(phi(mid, s) @ cov(t, mid) @ phi(mid, s).T + cov(mid, s), cov(t, s))
    z = torch.randn(3, 4, dtype=F64)
    torch.testing.assert_close(sde.reverse_linear_step(z, t.expand(3), s.expand(3), torch.zeros_like(z)),
                               apply_blocks(phi(t, s), z))


def test_sscs_keeps_the_stationary_law_exactly() -> None:
    """Data ``N(0, S)``: the score is ``-S^-1 z``, the score part vanishes and SSCS is exact for any step count."""
    sde = PSLD()
    S_inv = sde.stationary_prec
    z = sample(sde, lambda z, t: -apply_blocks(S_inv, z), (50_000, 1), "sscs",
               generator=torch.Generator().manual_seed(0),
               dtype=F64, steps=3, denoise=False)
    assert z.shape == (50_000, 1)
    assert float(z.var()) == pytest.approx(1.0, rel=0.03)


def test_time_grids() -> None:
    u = time_steps(PSLD(), 4, grid="uniform", eps=1e-3)
    q = time_steps(PSLD(), 4, grid="quadratic", eps=1e-3)
    for g in (u, q):
        assert g[0] == 1.0 and g[-1] == pytest.approx(1e-3) and (g.diff() < 0).all()
    torch.testing.assert_close(u.diff(), torch.full((4,), -(1 - 1e-3) / 4, dtype=F64))
    assert -q.diff()[-1] < -u.diff()[-1] < -q.diff()[0]  # quadratic: small steps near eps, large near T
    torch.testing.assert_close(q, 1e-3 + (1 - 1e-3) * torch.linspace(1, 0, 5, dtype=F64) ** 2)
    with pytest.raises(ValueError, match="unknown time grid 'cosine'; valid time grids are: uniform"):
        time_steps(PSLD(), 4, grid="cosine")
    with pytest.raises(ValueError, match="unknown time grid 'logsnr'; valid time grids are: uniform"):
        sample(PSLD(), lambda z, t: z, (2, 1), "sscs", grid="logsnr")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        time_steps(PSLD(), 0)


def test_sscs_rejects_an_sde_without_a_split() -> None:
    with pytest.raises(ValueError, match=r"linear/score split .*: the phase-space SDEs PSLD and CLD .*VPSDE has "
                                         r"none \(use dpm_solver"):
        sample(VPSDE(), lambda x, t: -x, (2, 1), "sscs")


def test_pc_quadratic_grid_steps_through_the_quadratic_times_and_refuses_reverse_diffusion() -> None:
    from scoresde.sdes import VPSDE

    seen = []

    def score(x, t):
        seen.append(float(t[0]))
        return -x

    sample(VPSDE(N=5), score, (3, 2), "pc", predictor="euler_maruyama", corrector="none", grid="quadratic", eps=1e-3)
    quadratic = time_steps(VPSDE(), 4, grid="quadratic", eps=1e-3)
    torch.testing.assert_close(torch.tensor(seen, dtype=F64), quadratic, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="reverse_diffusion uses the SDE's uniform N-step discretisation"):
        sample(VPSDE(N=5), score, (3, 2), "pc", predictor="reverse_diffusion", grid="quadratic")
    with pytest.raises(ValueError, match="unknown time grid 'cubic'"):
        sample(VPSDE(N=5), score, (3, 2), "pc", grid="cubic")
