"""Our DDIM and DPM-Solver++ on a diffusers-loaded DDPM model against diffusers' own ``DDIMScheduler`` and
``DPMSolverMultistepScheduler`` loops, from the same start noise.

Default (discrete) reading: the model's SDE is :class:`~scoresde.sdes.DiscreteVPSDE`, the schedule of the DDPM table
``alphas_cumprod[k] = prod_{j<=k} (1 - beta_j)`` itself at the times ``t = k / (N - 1)`` the network is fed, so our
samplers reproduce diffusers' on the scheduler's *real* table (linear betas 1e-4..0.02, N = 1000) for the timestep
spacings that end above timestep 0. The continuous reading (``load_diffusers(..., continuous=True)``) steps on the
continuous VP schedule ``alpha(t)^2 = exp(-int_0^t beta)``: it agrees with a scheduler given that schedule
(``scheduler.alphas_cumprod`` replaced by ours), and the gap between the two schedules is asserted separately.
"""

from __future__ import annotations

import pytest
import torch

import scoresde
from scoresde.checkpoint.diffusers.translate import timestep_times

from .conftest import ddpm_unet, diffusers, relative

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")
N = 1000
SHAPE = (2, 3, 16, 16)


def _x_T(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(7), dtype=dtype)


def _diffusers_loop(unet, scheduler, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        for k in scheduler.timesteps:
            x = scheduler.step(unet(x, k).sample, k, x).prev_sample
    return x


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A pipeline folder of one random DDPM-layout network with diffusers' default DDPMScheduler."""
    path = tmp_path_factory.mktemp("ddpm")
    diffusers.DDPMPipeline(unet=ddpm_unet(), scheduler=diffusers.DDPMScheduler()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def table_pair(folder):
    """``(diffusers UNet, our model)`` in float64, the model read in discrete time (the default: DiscreteVPSDE)."""
    model = scoresde.load_diffusers(folder, dtype=torch.float64)
    assert type(model.sde) is scoresde.sdes.DiscreteVPSDE
    return diffusers.UNet2DModel.from_pretrained(folder / "unet").eval().double(), model


@pytest.fixture(scope="module")
def pair(folder):
    """``(diffusers UNet, our model)`` in float64, the model read in continuous time (``VPSDE`` fed ``999 t``)."""
    model = scoresde.load_diffusers(folder, continuous=True, dtype=torch.float64)
    assert type(model.sde) is scoresde.sdes.VPSDE
    return diffusers.UNet2DModel.from_pretrained(folder / "unet").eval().double(), model


def _our_schedule(model) -> torch.Tensor:
    """The continuous model's ``alpha(k / (N - 1))^2`` as an ``alphas_cumprod`` table for diffusers."""
    return model.sde.alpha(torch.arange(N, dtype=torch.float64) / (N - 1)) ** 2


def _ddim_scheduler(spacing: str, offset: int, table: torch.Tensor | None = None, steps: int = 10):
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=N, timestep_spacing=spacing, steps_offset=offset,
                                        set_alpha_to_one=True, clip_sample=False)
    if table is not None:
        scheduler.alphas_cumprod = table
    scheduler.set_timesteps(steps)
    return scheduler


def _dpm_scheduler(spacing: str, offset: int, table: torch.Tensor | None = None, steps: int = 8):
    scheduler = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=N, timestep_spacing=spacing,
                                                      steps_offset=offset, solver_order=2,
                                                      algorithm_type="dpmsolver++", final_sigmas_type="zero")
    if table is not None:
        scheduler.alphas_cumprod = table  # before set_timesteps, which computes the sigmas from it
    scheduler.set_timesteps(steps)
    return scheduler


def _our_ddim(model, scheduler, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    # the last step to alpha = 1 (set_alpha_to_one) is our final denoising with the last evaluation: 10 NFE both
    x, info = scoresde.sample(model, SHAPE, sampler="ddim", times=timestep_times(scheduler.timesteps, model),
                              denoise=True, x_T=_x_T(dtype), dtype=dtype, return_info=True)
    assert info.nfe == len(scheduler.timesteps)
    return x


def _our_dpm_solver_pp_2m(model, scheduler, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    # diffusers lowers the order only on its extra last step to sigma = 0, which is our final data prediction at the
    # last time (denoise=True): lower_order_final=False
    return scoresde.sample(model, SHAPE, sampler="dpm_solver", order=2, algorithm="dpmsolver++", method="multistep",
                           lower_order_final=False, times=timestep_times(scheduler.timesteps, model), denoise=True,
                           x_T=_x_T(dtype), dtype=dtype)


@pytest.mark.parametrize(("spacing", "offset"), [("trailing", 0), ("leading", 1)])
def test_ddim_equals_ddim_scheduler_on_the_ddpm_table(table_pair, spacing, offset):
    """The scheduler untouched (its own float32 ``alphas_cumprod``). Measured 8.5e-8 (trailing), 1.4e-7 (leading)."""
    unet, model = table_pair
    scheduler = _ddim_scheduler(spacing, offset)
    # diffusers keeps a float32 table and embeds the timestep in float32
    assert relative(_our_ddim(model, scheduler), _diffusers_loop(unet, scheduler, _x_T())) < 1e-6


@pytest.mark.parametrize(("spacing", "offset"), [("linspace", 0), ("leading", 0), ("leading", 1), ("trailing", 0)])
def test_dpm_solver_pp_2m_equals_dpm_solver_multistep_scheduler_on_the_ddpm_table(table_pair, spacing, offset):
    """Measured 1.1e-7 (linspace), 1.8e-7 (leading), 9.6e-8 (leading + 1), 1.4e-7 (trailing)."""
    unet, model = table_pair
    scheduler = _dpm_scheduler(spacing, offset)
    assert relative(_our_dpm_solver_pp_2m(model, scheduler), _diffusers_loop(unet, scheduler, _x_T())) < 1e-6


def test_float32_end_to_end_on_the_ddpm_table(folder):
    """Everything in float32 (network, tables, samples) as a user runs it: measured 6.0e-7 (DDIM), 5.8e-7 (DPM++)."""
    model = scoresde.load_diffusers(folder)
    unet = diffusers.UNet2DModel.from_pretrained(folder / "unet").eval()
    ddim, dpm = _ddim_scheduler("trailing", 0), _dpm_scheduler("linspace", 0)
    f32 = torch.float32
    assert relative(_our_ddim(model, ddim, f32), _diffusers_loop(unet, ddim, _x_T(f32))) < 3e-6
    assert relative(_our_dpm_solver_pp_2m(model, dpm, f32), _diffusers_loop(unet, dpm, _x_T(f32))) < 3e-6


def test_the_ddim_spacings_that_end_at_timestep_0_are_refused(table_pair):
    """DDIM ``linspace`` and ``leading`` with ``steps_offset=0`` evaluate the network at timestep 0, i.e. ``t = 0``,
    where no scoresde sampler grid may end: ``timestep_times`` refuses them instead of approximating."""
    _, model = table_pair
    for spacing in ("linspace", "leading"):
        scheduler = _ddim_scheduler(spacing, 0)
        assert int(scheduler.timesteps[-1]) == 0
        with pytest.raises(ValueError, match=r"timesteps must be integers in \[1, 999\]"):
            timestep_times(scheduler.timesteps, model)


@pytest.mark.parametrize(("spacing", "offset"), [("trailing", 0), ("leading", 1)])
def test_continuous_reading_ddim_equals_ddim_scheduler_given_our_schedule(pair, spacing, offset):
    unet, model = pair
    scheduler = _ddim_scheduler(spacing, offset, _our_schedule(model))
    assert relative(_our_ddim(model, scheduler), _diffusers_loop(unet, scheduler, _x_T())) < 1e-6


@pytest.mark.parametrize(("spacing", "offset"), [("linspace", 0), ("leading", 0), ("trailing", 0)])
def test_continuous_reading_dpm_solver_pp_2m_equals_the_scheduler_given_our_schedule(pair, spacing, offset):
    unet, model = pair
    scheduler = _dpm_scheduler(spacing, offset, _our_schedule(model))
    assert relative(_our_dpm_solver_pp_2m(model, scheduler), _diffusers_loop(unet, scheduler, _x_T())) < 1e-6


def test_schedule_gap_between_the_continuous_vp_sde_and_the_ddpm_table(pair):
    """What separates our samplers from diffusers' on the linear table itself: at timestep k the VP SDE's
    ``alpha(k / 999)^2`` exceeds ``alphas_cumprod[k]`` by up to 7% (k = 999) and its sigma is 29% smaller at k = 1
    (the continuous time of timestep k is about that of k + 1); the half log-SNR differs by 0.35 at k = 1."""
    unet, model = pair
    k = torch.arange(N, dtype=torch.float64)
    ours = model.sde.alpha(k / (N - 1)) ** 2
    table = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, N, dtype=torch.float64), 0)
    ratio = ours / table - 1.0
    assert ratio[999].item() == pytest.approx(0.0700587, rel=1e-5) and int(ratio.abs().argmax()) == 999
    sigma_ratio = torch.sqrt((1.0 - ours[1]) / (1.0 - table[1])) - 1.0
    assert sigma_ratio.item() == pytest.approx(-0.2925396, rel=1e-5)
    # on the table itself the continuous reading's 10-step DDIM samples differ at the percent level, not at rounding
    scheduler = _ddim_scheduler("trailing", 0)
    assert 1e-3 < relative(_our_ddim(model, scheduler), _diffusers_loop(unet, scheduler, _x_T())) < 0.2


def test_timestep_times_bad_input(pair):
    _, model = pair
    assert torch.equal(timestep_times([999, 1], model), torch.tensor([1.0, 1 / 999], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"timesteps must be integers in \[1, 999\]"):
        timestep_times([100, 0], model)
    vesde = scoresde.models.ScoreModel(torch.nn.Identity(), scoresde.sdes.VESDE())
    with pytest.raises(ValueError, match="needs a model fed the timestep"):
        timestep_times([10], vesde)


def test_timestep_times_index_the_tables_at_the_timestep(pair):
    _, model = pair
    k = torch.arange(1, N, dtype=torch.float64)
    times = timestep_times(k, model)
    assert torch.equal(torch.floor(times * (N - 1)), k) and float((times * (N - 1) - k).abs().max()) < 1e-12


def test_ancestral_step_of_the_discrete_chain_equals_ddpm_scheduler_step(tmp_path):
    """The default (discrete) reading: one ``ancestral_sampling`` step of the ``pc`` sampler is one step of
    ``DDPMScheduler`` (Ho et al. Alg. 2, ``variance_type='fixed_large'``) with the same noise."""
    unet = ddpm_unet()
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path)
    model = scoresde.load_diffusers(tmp_path)
    scheduler = diffusers.DDPMScheduler(variance_type="fixed_large", clip_sample=False)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    for k in (999, 500, 37):
        t = timestep_times([k], model).float()
        with torch.no_grad():
            ref = scheduler.step(unet(x, k).sample, k, x, generator=torch.Generator().manual_seed(k)).prev_sample
            noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(k))
            ours, _ = model.sde.ancestral_step(x, t.expand(2), t.expand(2), model.score(x, t.expand(2)), noise)
        assert relative(ours, ref) < 1e-5
