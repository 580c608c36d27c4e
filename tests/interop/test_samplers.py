"""Our DDIM and DPM-Solver++ on a diffusers-loaded DDPM model against diffusers' own ``DDIMScheduler`` and
``DPMSolverMultistepScheduler`` loops, from the same start noise.

Our samplers step on the model's SDE: the continuous VP schedule ``alpha(t)^2 = exp(-int_0^t beta)`` at ``t = k / (N -
1)``. diffusers' schedulers step on the product table ``alphas_cumprod[k] = prod_{j<=k} (1 - beta_j)``. The two
algorithms are compared on one schedule by giving the scheduler ours (``scheduler.alphas_cumprod``), with the model
read in continuous time (``load_diffusers(..., continuous=True)``), so that every conversion uses that schedule too;
the gap between the two schedules themselves is asserted separately (README: which spacings we reproduce).
"""

from __future__ import annotations

import pytest
import torch

import scoresde
from scoresde.checkpoint.diffusers import timestep_times

from .conftest import ddpm_unet, diffusers, relative

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")
N = 1000
SHAPE = (2, 3, 16, 16)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """``(diffusers UNet, our model)`` in float64: one random DDPM-layout network, loaded in continuous time."""
    folder = tmp_path_factory.mktemp("ddpm")
    unet = ddpm_unet()
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(folder)
    model = scoresde.load_diffusers(folder, continuous=True, dtype=torch.float64)
    return unet.double(), model


def _x_T() -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def _diffusers_loop(unet, scheduler, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        for k in scheduler.timesteps:
            x = scheduler.step(unet(x, k).sample, k, x).prev_sample
    return x


def _on_our_schedule(scheduler, model):
    k = torch.arange(N, dtype=torch.float64)
    scheduler.alphas_cumprod = model.sde.alpha(k / (N - 1)) ** 2
    return scheduler


@pytest.mark.parametrize(("spacing", "offset"), [("trailing", 0), ("leading", 1)])
def test_ddim_equals_ddim_scheduler(pair, spacing, offset):
    unet, model = pair
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=N, timestep_spacing=spacing, steps_offset=offset,
                                        set_alpha_to_one=True, clip_sample=False)
    _on_our_schedule(scheduler, model).set_timesteps(10)
    ref = _diffusers_loop(unet, scheduler, _x_T())
    # the last step to alpha = 1 (set_alpha_to_one) is our final denoising with the last evaluation: 10 NFE both
    x, info = scoresde.sample(model, SHAPE, sampler="ddim", times=timestep_times(scheduler.timesteps, model),
                              denoise=True, x_T=_x_T(), dtype=torch.float64, return_info=True)
    assert info.nfe == 10 and relative(x, ref) < 1e-6  # diffusers embeds the timestep in float32


@pytest.mark.parametrize(("spacing", "offset"), [("linspace", 0), ("leading", 0), ("trailing", 0)])
def test_dpm_solver_pp_2m_equals_dpm_solver_multistep_scheduler(pair, spacing, offset):
    unet, model = pair
    scheduler = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=N, timestep_spacing=spacing,
                                                      steps_offset=offset, solver_order=2,
                                                      algorithm_type="dpmsolver++", final_sigmas_type="zero")
    _on_our_schedule(scheduler, model).set_timesteps(8)
    ref = _diffusers_loop(unet, scheduler, _x_T())
    times = timestep_times(scheduler.timesteps, model)
    # diffusers lowers the order only on its extra last step to sigma = 0 (our denoising): lower_order_final=False.
    # eps = the last time: dpm_solver's denoise evaluates at eps, not at the last of explicit times
    x = scoresde.sample(model, SHAPE, sampler="dpm_solver", order=2, algorithm="dpmsolver++", method="multistep",
                        lower_order_final=False, times=times, eps=float(times[-1]), denoise=True, x_T=_x_T(),
                        dtype=torch.float64)
    assert relative(x, ref) < 1e-6  # diffusers keeps its sigmas and the sample in float32


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
    # on the table itself the 10-step DDIM samples differ at the percent level, not at rounding
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=N, timestep_spacing="trailing", set_alpha_to_one=True,
                                        clip_sample=False)
    scheduler.set_timesteps(10)
    ref = _diffusers_loop(unet, scheduler, _x_T())
    x = scoresde.sample(model, SHAPE, sampler="ddim", times=timestep_times(scheduler.timesteps, model), denoise=True,
                        x_T=_x_T(), dtype=torch.float64)
    assert 1e-3 < relative(x, ref) < 0.2


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
