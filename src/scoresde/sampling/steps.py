"""Predictor and corrector steps of the predictor–corrector sampler (Song et al. 2021, §4.2, App. G).

Each step is a small pure function. Predictors take the reverse SDE and move from ``t`` to ``t_next``;
correctors run Langevin MCMC at fixed ``t``. Both return ``(x, x_mean)``, where ``x_mean`` is the step without its
final noise (returned by the sampler when ``denoise=True``). All SDE-specific behaviour is read from the SDE
(``discretize``, ``ancestral_step``, ``langevin_alpha``, ``noise_std``), never from its class.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..sdes.base import SDE, ReverseSDE, ScoreFn, batch_broadcast, randn_like

Predictor = Callable[[ReverseSDE, Tensor, Tensor, Tensor, "torch.Generator | None"], tuple[Tensor, Tensor]]
Corrector = Callable[[SDE, ScoreFn, Tensor, Tensor, float, int, "torch.Generator | None"], tuple[Tensor, Tensor]]


def euler_maruyama(
    rsde: ReverseSDE, x: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Euler–Maruyama step of the reverse SDE (Song et al. 2021, eq. 6): ``x + f_rev dt + G sqrt(|dt|) z``.

    ``dt = t_next - t < 0``; with a probability-flow ``rsde`` it is an Euler step of the ODE (eq. 13).
    """
    dt = batch_broadcast(t_next - t, x)
    drift, diffusion = rsde.sde(x, t)
    x_mean = x + drift * dt
    return x_mean + batch_broadcast(diffusion, x) * torch.sqrt(-dt) * randn_like(x, generator), x_mean


def reverse_diffusion(
    rsde: ReverseSDE, x: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Reverse-diffusion step ``x - f_rev + G_rev z`` from the SDE's discretisation (Song et al. 2021, eq. 46)."""
    f, G = rsde.discretize(x, t)
    x_mean = x - f
    return x_mean + batch_broadcast(G, x) * randn_like(x, generator), x_mean


def ancestral_sampling(
    rsde: ReverseSDE, x: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Ancestral-sampling step (Song et al. 2021, eq. 47 for SMLD/DDPM), delegated to ``sde.ancestral_step``."""
    if rsde.probability_flow:
        raise ValueError("ancestral_sampling has no probability-flow form; use probability_flow=False "
                         "or another predictor (euler_maruyama, reverse_diffusion)")
    score = rsde.score_fn(x, t)
    return rsde.forward.ancestral_step(x, t, t_next, score, randn_like(x, generator))


def no_predictor(
    rsde: ReverseSDE, x: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """No predictor: the state is unchanged (corrector-only sampling, i.e. annealed Langevin dynamics)."""
    return x, x


def _langevin_chain(
    score_fn: ScoreFn,
    x: Tensor,
    t: Tensor,
    n_steps: int,
    generator: torch.Generator | None,
    step_size: Callable[[Tensor, Tensor], Tensor],
) -> tuple[Tensor, Tensor]:
    """``n_steps`` of ``x <- x + eps score + sqrt(2 eps) z`` with ``eps = step_size(score, z)`` (per example)."""
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        noise = randn_like(x, generator)
        eps = step_size(grad, noise)
        x_mean = x + batch_broadcast(eps, x) * grad
        x = x_mean + batch_broadcast(torch.sqrt(eps * 2), x) * noise
    return x, x_mean


def langevin(
    sde: SDE,
    score_fn: ScoreFn,
    x: Tensor,
    t: Tensor,
    snr: float,
    n_steps: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Langevin corrector with a signal-to-noise step rule (Song et al. 2021, Alg. 4 and 5).

    ``eps = 2 alpha_i (snr ||z|| / ||score||)^2`` (norms averaged over the batch), then
    ``x <- x + eps score + sqrt(2 eps) z``, repeated ``n_steps`` times.
    """
    alpha = sde.langevin_alpha(t)

    def step_size(grad: Tensor, noise: Tensor) -> Tensor:
        grad_norm = torch.linalg.norm(grad.reshape(grad.shape[0], -1), dim=-1).mean()
        noise_norm = torch.linalg.norm(noise.reshape(noise.shape[0], -1), dim=-1).mean()
        return (snr * noise_norm / grad_norm) ** 2 * 2 * alpha

    return _langevin_chain(score_fn, x, t, n_steps, generator, step_size)


def annealed_langevin(
    sde: SDE,
    score_fn: ScoreFn,
    x: Tensor,
    t: Tensor,
    snr: float,
    n_steps: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Annealed Langevin dynamics step (Song & Ermon 2019, Alg. 1): ``eps = 2 alpha_i (snr * sigma(t))^2``."""
    eps = (snr * sde.noise_std(t)) ** 2 * 2 * sde.langevin_alpha(t)
    return _langevin_chain(score_fn, x, t, n_steps, generator, lambda grad, noise: eps)


def no_corrector(
    sde: SDE,
    score_fn: ScoreFn,
    x: Tensor,
    t: Tensor,
    snr: float,
    n_steps: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """No corrector: the state is unchanged."""
    return x, x


PREDICTORS: dict[str, Predictor] = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral_sampling": ancestral_sampling,
    "none": no_predictor,
}
CORRECTORS: dict[str, Corrector] = {"langevin": langevin, "ald": annealed_langevin, "none": no_corrector}


def lookup(kind: str, name: str | Callable, table: dict[str, Callable]) -> Callable:
    """Resolve a predictor/corrector given by name (or pass a callable through); unknown names raise."""
    if callable(name):
        return name
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s are: {', '.join(sorted(table))}")
    return table[name]
