"""Sequential Monte Carlo on the noised observation path (``method="smc"`` of :func:`scoresde.inpaint` /
:func:`scoresde.colorize`): asymptotically exact as ``num_particles`` grows, with exact scores and fine steps.

Papers: Z. Dou and Y. Song, "Diffusion Posterior Sampling for Linear Inverse Problem Solving: A Filtering Perspective",
ICLR 2024 (FPS-SMC: the observation noised along its own forward path makes the reverse chain a state-space model,
filtered by SMC); G. Cardoso, Y. Janati El Idrissi, S. Le Corff, E. Moulines, "Monte Carlo guided Denoising Diffusion
models for Bayesian linear inverse problems" (MCGdiff), ICLR 2024, of which this is the noiseless case. Not yet the
twisted proposal of TDS (L. Wu, B. L. Trippe, C. A. Naesseth, D. M. Blei, J. P. Cunningham, NeurIPS 2023).

The observed coordinates follow one forward-noised path ``y_t`` of the observation, drawn from ``T`` down with the
forward chain's bridge ``y_s ~ q(y_s | y_t, y_0)`` (:meth:`~scoresde.inverse.kernels.LinearKernel.bridge`). Because
they diffuse independently of the rest, ``p(x_0 | y_{0:T}) = p(x_0 | y_0)``, and the reverse chain conditioned on that
path is filtered with sequential importance resampling:

* proposal: the reverse Gaussian kernel ``N(Psi^-1 (z_t + V score), P)`` (:meth:`~scoresde.inverse.kernels.
  LinearKernel.reverse`) on the unobserved coordinates, the observed ones set to ``y_s``;
* weight: the density of that kernel at the observed path, ``N(y_s; mean_obs, P)`` on the observed coordinates;
* resampling: multinomial (:mod:`scoresde.inverse.resampling`) whenever the effective sample size of a filter falls
  below ``ess_threshold * num_particles``; at the end, one particle per sample is drawn by its weights.

On the benchmark mixture (exact weight 0.85; ``benchmarks/RESULTS.md``, inpainting table) VP with 200 steps returns
0.814 at 8 particles and 0.844 at 64.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.adapter import DiffusionModel, slice_cond
from ..numerics.checks import check_count
from ..numerics.grids import time_steps
from ..numerics.times import check_eps
from ..sampling.common import counting
from ..sdes.linalg import apply_blocks, sym_sqrt
from .kernels import LinearKernel, default_grid
from .observation import Observation
from .resampling import ess, multinomial

__all__ = ["run_smc"]


def run_smc(
    model: DiffusionModel, obs: Observation, z: Tensor, *,
    steps: int | None = None,
    num_particles: int = 16,
    ess_threshold: float = 0.5,
    grid: str | None = None,
    eps: float = 1e-3,
    denoise: bool = True,
    cond: dict[str, Any], generator: torch.Generator | None, progress: bool,
) -> tuple[Tensor, int, dict[str, Any]]:
    """Sequential importance resampling along the reverse chain conditioned on a forward-noised observation path
    (module docstring). ``steps`` intervals of ``grid`` (:func:`~scoresde.inverse.kernels.default_grid`);
    ``num_particles`` per returned sample; multinomial resampling whenever the effective sample size falls below
    ``ess_threshold * num_particles``; one particle drawn by the final weights is returned.

    ``z`` is a prior draw of the state ``(B, k C, ...)`` (particle 0 of each sample starts there). Returns ``(data,
    nfe, diagnostics)`` with ``resampled`` (steps that resampled), ``final_ess`` (per sample) and ``rows_per_call``
    (``B * num_particles``)."""
    sde = model.sde
    check_eps(eps, sde)
    n = sde.N if steps is None else steps
    check_count("steps", n)
    check_count("num_particles", num_particles)
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must lie in [0, 1] (a fraction of num_particles), got {ess_threshold!r}")
    kernel = LinearKernel(sde)
    B, P = z.shape[0], num_particles
    ts = time_steps(sde, n, grid=default_grid(sde, grid), eps=eps)
    # The observation path (one per sample), drawn along with the sampler from T down: y_T ~ p_T(. | y_0), then the
    # forward chain's bridge y_s ~ q(y_s | y_t, y_0) (the same Markov path law as noising y_0 upward, without storing
    # the path). z_0 is the initial state of the observation (its momentum drawn in DSM mode).
    z0 = sde.initial_state(obs.y, generator=generator)
    mean_T, std_T = sde.marginal_prob(z0, ts[0].to(z).expand(B))
    y_t = mean_T + sde.apply_std(std_T, torch.randn(mean_T.shape, generator=generator, dtype=z.dtype,
                                                      device=z.device))
    rows = torch.arange(B, device=z.device).repeat_interleave(P)
    particle_cond = slice_cond(cond, rows)
    counted = counting(model, particle_cond)
    x = z
    if P > 1:  # particle 0 of each sample starts at the given prior draw, the others at fresh ones
        more = sde.prior_sampling((B * (P - 1), *z.shape[1:]), generator, dtype=z.dtype, device=z.device)
        x = torch.cat([z[:, None], more.reshape(B, P - 1, *z.shape[1:])], dim=1).reshape(B * P, *z.shape[1:])
    pobs = obs.select(rows)
    m = pobs.state_mask
    x = pobs.merge(x, y_t[rows])
    log_w = torch.zeros(B, P, dtype=torch.float64, device=z.device)
    resampled = 0
    with torch.no_grad():
        for i in tqdm(range(n), disable=not progress, desc="SMC"):
            t = ts[i].to(z).expand(B * P)
            psi_inv, v, post = kernel.reverse(ts[i], ts[i + 1])
            phi_t, phi_s, gain, _ = kernel.bridge(ts[i], ts[i + 1])
            y_t = (apply_blocks(phi_s, z0) + apply_blocks(gain, y_t - apply_blocks(phi_t, z0))
                   + apply_blocks(sym_sqrt(post), torch.randn(y_t.shape, generator=generator, dtype=z.dtype,
                                                              device=z.device)))
            score = counted.score(x, t)
            mean = apply_blocks(psi_inv, x + apply_blocks(v, score))
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            proposal = mean + apply_blocks(sym_sqrt(post), noise)
            target = y_t[rows]
            resid = (target - pobs.state_to_basis(mean)) * m  # observed coordinates only
            log_w = log_w + _block_logpdf(resid, post, m, kernel.k).reshape(B, P)
            x = pobs.merge(proposal, target)
            if i < n - 1:
                low = ess(log_w) < ess_threshold * P
                if bool(low.any()):
                    resampled += 1
                    pick = multinomial(log_w, generator)  # (B, P)
                    pick = torch.where(low[:, None], pick, torch.arange(P, device=z.device)[None])
                    index = (torch.arange(B, device=z.device)[:, None] * P + pick).reshape(-1)
                    x = x[index]
                    log_w = torch.where(low[:, None], torch.zeros_like(log_w), log_w)
        if denoise:
            t = ts[-1].to(z).expand(B * P)
            x = sde.denoise(x, t, counted.score(x, t))
    final_ess = ess(log_w)
    choice = multinomial(log_w, generator, draws=1)[:, 0]
    out = sde.data_part(x).reshape(B, P, *sde.data_part(x).shape[1:])[torch.arange(B, device=z.device), choice]
    return out, counted.calls, {"resampled": resampled, "final_ess": final_ess, "rows_per_call": B * P}


def _block_logpdf(resid: Tensor, cov: Tensor, mask: Tensor, k: int) -> Tensor:
    """``sum over observed coordinates of log N(r_c; 0, cov)`` with ``r_c`` the ``k``-vector of coordinate ``c`` across
    the ``k`` channel blocks (all blocks of a coordinate are observed together), per row, float64."""
    r = resid.reshape(resid.shape[0], k, -1).to(torch.float64)
    count = mask.reshape(mask.shape[0], k, -1)[:, 0].to(torch.float64).sum(1)
    prec = torch.linalg.inv(cov).to(r)
    quad = torch.einsum("bin,ij,bjn->b", r, prec, r)
    return -0.5 * quad - 0.5 * count * (k * math.log(2 * math.pi) + torch.logdet(cov).to(r))
