"""DiscreteVPSDE: the DDPM table's own noise schedule (DPM-Solver's discrete ``NoiseScheduleVP`` on the times ``k / (N -
1)`` at which a discrete ScoreModel sees timestep ``k``).

The reference values are computed here independently: the DDPM table from its definition (Ho et al. 2020: linear
betas, cumulative products) and the interpolation with ``numpy.interp``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scoresde
from scoresde.checkpoint import load_checkpoint, save_checkpoint
from scoresde.config import build_score_model, build_sde
from scoresde.config.factory import default_dtype
from scoresde.models import as_model
from scoresde.sdes import VPSDE, DiscreteVPSDE, same_sde
from scoresde.toy import GaussianMixture
from tests.metrics.conftest import _one_thread  # noqa: F401 (autouse: one thread)

N = 1000
K = np.arange(N)
T_K = K / (N - 1)  # the time of timestep k


def _table64() -> np.ndarray:
    """``1/2 log alphas_cumprod`` of the linear DDPM chain (1e-4 .. 0.02, 1000 steps), in float64."""
    betas = np.linspace(1e-4, 0.02, N)
    return 0.5 * np.cumsum(np.log1p(-betas))


def _sde64() -> DiscreteVPSDE:
    """The schedule with its table built in float64 (as ``load_diffusers(..., dtype=torch.float64)`` does)."""
    with default_dtype(torch.float64):
        return DiscreteVPSDE(0.1, 20.0, N)


def test_schedule_is_the_ddpm_table_at_the_timesteps():
    sde = _sde64()
    t = torch.as_tensor(T_K)
    np.testing.assert_allclose(sde.log_alpha(t).numpy(), _table64(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sde.sigma(t).numpy(), np.sqrt(-np.expm1(2 * _table64())), rtol=1e-10)
    # float32 (the default): the tables are VPSDE's and diffusers' float32 ones, and alpha^2 is that table exactly
    f32 = DiscreteVPSDE()
    vp = VPSDE()
    assert torch.equal(f32.alphas_cumprod, vp.alphas_cumprod) and torch.equal(f32.discrete_betas, vp.discrete_betas)
    assert torch.equal((f32.alpha(t) ** 2).float(), vp.alphas_cumprod)
    # t = 0 is timestep 0, which already carries the first beta; the VP SDE's continuous schedule is another one
    assert float(sde.sigma(torch.zeros(1, dtype=torch.float64))) == pytest.approx(0.01, rel=1e-9)
    gap = sde.alpha(t[1:]) ** 2 / VPSDE().alpha(t[1:]) ** 2 - 1.0
    assert float(gap.abs().max()) == pytest.approx(0.0700587 / 1.0700587, rel=1e-4)  # the 7% of k = 999


def test_log_alpha_interpolates_linearly_and_extrapolates_the_end_segments():
    sde = _sde64()
    t = torch.rand(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.2 - 0.1
    table = _table64()
    ref = np.interp(t.numpy(), T_K, table)
    inside = (t >= 0) & (t <= 1)
    np.testing.assert_allclose(sde.log_alpha(t)[inside].numpy(), ref[inside.numpy()], rtol=1e-12, atol=1e-15)
    below, above = t < 0, t > 1
    slope0, slope1 = (table[1] - table[0]) * (N - 1), (table[-1] - table[-2]) * (N - 1)
    np.testing.assert_allclose(sde.log_alpha(t[below]).numpy(), table[0] + slope0 * t[below].numpy(), rtol=1e-12)
    np.testing.assert_allclose(sde.log_alpha(t[above]).numpy(), table[-1] + slope1 * (t[above].numpy() - 1),
                               rtol=1e-12)
    assert sde.log_alpha(t.float()).dtype == torch.float32


def test_t_from_lambda_inverts_lambda_t():
    sde = _sde64()
    t = torch.cat([torch.as_tensor(T_K), torch.rand(3000, generator=torch.Generator().manual_seed(1),
                                                    dtype=torch.float64)])
    lam = sde.lambda_t(t)
    assert bool((lam[1:N] < lam[: N - 1]).all())  # decreasing
    assert float((sde.t_from_lambda(lam) - t).abs().max()) < 1e-12
    # against numpy's inverse interpolation of log alpha = -1/2 log(1 + e^(-2 lambda))
    target = -0.5 * np.log1p(np.exp(-2 * lam.numpy()))
    ref = np.interp(target, _table64()[::-1], T_K[::-1])
    np.testing.assert_allclose(sde.t_from_lambda(lam).numpy(), ref, atol=1e-12)
    assert sde.t_from_lambda(torch.tensor(0.0, dtype=torch.float64)).shape == ()


def test_sde_drift_and_diffusion_have_the_schedule_as_marginals():
    """``beta(t) = -2 d log alpha / dt`` (piecewise constant) makes the VP SDE's variance ODE ``d sigma^2 / dt =
    beta (1 - sigma^2)`` hold for ``sigma(t)``, and the SDE's coefficients are the VP ones with that beta."""
    sde = _sde64()
    t = (torch.rand(64, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.998 + 0.001)
    t.requires_grad_(True)
    dlog_alpha, = torch.autograd.grad(sde.log_alpha(t).sum(), t)
    dvar, = torch.autograd.grad((sde.sigma(t) ** 2).sum(), t)
    t = t.detach()
    beta = sde.beta(t)
    torch.testing.assert_close(beta, -2.0 * dlog_alpha, rtol=1e-9, atol=0)
    torch.testing.assert_close(dvar, beta * (1.0 - sde.sigma(t) ** 2), rtol=1e-8, atol=0)
    # on segment k the chain's own rate: -(N - 1) log(1 - beta_{k+1})
    k = torch.floor(t * (N - 1)).long()
    betas = torch.linspace(1e-4, 0.02, N, dtype=torch.float64)
    torch.testing.assert_close(beta, -(N - 1) * torch.log1p(-betas[k + 1]), rtol=1e-9, atol=0)
    x = torch.randn(64, 3, dtype=torch.float64)
    drift, diffusion = sde.sde(x, t)
    torch.testing.assert_close(drift, -0.5 * beta[:, None] * x)
    torch.testing.assert_close(diffusion, beta.sqrt())
    mean, std = sde.marginal_prob(x, t)
    torch.testing.assert_close(mean, sde.alpha(t)[:, None] * x)
    torch.testing.assert_close(std, sde.sigma(t))


def test_with_steps_keeps_the_schedule_and_rebuilds_the_chain_on_it():
    sde = DiscreteVPSDE()
    coarse = sde.with_steps(10)
    t = torch.rand(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(coarse.log_alpha(t), sde.log_alpha(t)) and coarse.num_train_timesteps == N
    grid = torch.linspace(0, 1, 10, dtype=torch.float64)
    torch.testing.assert_close(coarse.alphas_cumprod.double(), sde.alpha(grid) ** 2, rtol=1e-6, atol=0)
    torch.testing.assert_close(torch.cumprod(1.0 - coarse.discrete_betas.double(), 0), sde.alpha(grid) ** 2,
                               rtol=1e-5, atol=0)
    assert same_sde(sde, coarse) and coarse.describe()["num_train_timesteps"] == N
    # back at N: the training chain itself
    again = coarse.with_steps(N)
    assert torch.equal(again.alphas_cumprod, sde.alphas_cumprod) and torch.equal(again.discrete_betas,
                                                                                 sde.discrete_betas)
    # the chain of a few steps is always defined (VPSDE needs beta_max / N < 1 there)
    coarse.require_discrete_chain("test")
    assert float(coarse.discrete_betas.max()) < 1.0


def test_describe_and_same_sde():
    sde = DiscreteVPSDE()
    assert sde.describe() == {"class": "DiscreteVPSDE", "num_train_timesteps": 1000, "_N": 1000, "_T": 1.0,
                              "prior_mean": 0.0, "beta_0": 0.1, "beta_1": 20.0}
    assert same_sde(sde, DiscreteVPSDE()) and not same_sde(sde, VPSDE())
    assert not same_sde(sde, DiscreteVPSDE(N=500)) and not same_sde(sde, DiscreteVPSDE(beta_max=19.0))


def test_the_config_records_it_and_a_checkpoint_round_trips_it(tmp_path):
    config = {"model": {"name": "ddpm", "nf": 32, "ch_mult": [1], "num_res_blocks": 1, "attn_resolutions": [],
                        "dropout": 0.0, "beta_min": 0.1, "beta_max": 20.0, "num_scales": 1000},
              "data": {"image_size": 8, "num_channels": 3, "centered": True},
              "training": {"sde": "discrete_vpsde", "continuous": False}}
    assert same_sde(build_sde(config), DiscreteVPSDE())
    model = build_score_model(config)
    save_checkpoint(tmp_path / "ckpt", model.net, config)
    back = load_checkpoint(tmp_path / "ckpt", use_ema=False)
    assert type(back.sde) is DiscreteVPSDE and back.sde.describe() == model.sde.describe()
    assert (back.continuous, back.label_type, back.output_type) == (False, "timestep", "eps")


def test_ddim_on_it_is_ddim_on_the_ddpm_table():
    """Our DDIM at the times of timesteps [999, 899, ..., 99] on the exact score of a mixture equals a DDIM written
    on ``alphas_cumprod`` itself (Song, Meng & Ermon 2021, eq. 12, ending with the data prediction)."""
    sde = _sde64()
    mixture = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.2]], [0.3, 0.5])
    steps = list(range(999, 0, -100))
    abar = np.exp(2 * _table64())
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref = x.clone()
    for i, k in enumerate(steps):
        t = torch.full((16,), k / (N - 1), dtype=torch.float64)
        eps = -np.sqrt(1 - abar[k]) * mixture.score(ref, t, sde)
        x0 = (ref - np.sqrt(1 - abar[k]) * eps) / np.sqrt(abar[k])
        ref = x0 if i == len(steps) - 1 else np.sqrt(abar[steps[i + 1]]) * x0 + np.sqrt(1 - abar[steps[i + 1]]) * eps
    times = torch.tensor(steps, dtype=torch.float64) / (N - 1)
    ours = scoresde.sample(as_model(sde, mixture.score_fn(sde)), (16, 2), sampler="ddim", times=times, denoise=True,
                           x_T=x, dtype=torch.float64)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_a_discrete_model_on_it_converts_with_the_schedule():
    """``ScoreModel(continuous=False)`` on DiscreteVPSDE: the network sees ``t (N - 1)``; the conversions use the table
    at the timesteps and its interpolation between them (where a floor index would jump a whole step)."""
    sde = _sde64()
    model = scoresde.models.ScoreModel(lambda x, labels: x * 0 + labels[:, None], sde, continuous=False)
    assert (model.label_type, model.output_type) == ("timestep", "eps")
    k = torch.tensor([0, 1, 500, 999])
    alpha, sigma = model.alpha_sigma(k.double() / (N - 1))
    torch.testing.assert_close(alpha, sde.sqrt_alphas_cumprod[k], rtol=1e-14, atol=0)
    torch.testing.assert_close(sigma, sde.sqrt_1m_alphas_cumprod[k], rtol=1e-12, atol=0)
    t = torch.tensor([0.5 / (N - 1), 0.001], dtype=torch.float64)  # between timesteps 0 and 1
    alpha, sigma = model.alpha_sigma(t)
    ref = np.interp(t.numpy(), T_K, _table64())
    np.testing.assert_allclose(sigma.numpy(), np.sqrt(-np.expm1(2 * ref)), rtol=1e-10)
    # at the label t (N - 1) = 0.999: sigma 0.01482 (almost timestep 1's 0.01483), not timestep 0's 0.01
    assert float(sigma[1]) == pytest.approx(0.014825, rel=1e-4)
    x = torch.zeros(2, 3, dtype=torch.float64)
    torch.testing.assert_close(model.score(x, t), -(t * (N - 1))[:, None].expand(2, 3) / sigma[:, None])


def test_bad_input():
    with pytest.raises(ValueError, match=r"beta_max / N < 1 .* got 20.0 / 10"):
        DiscreteVPSDE(0.1, 20.0, N=10)
    with pytest.raises(ValueError, match="N >= 2 timesteps, got N=1"):
        DiscreteVPSDE(N=1)
    with pytest.raises(ValueError, match="beta_min must be a positive finite number"):
        DiscreteVPSDE(beta_min=0.0)
