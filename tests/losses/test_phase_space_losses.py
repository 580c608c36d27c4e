"""HSM and DSM losses of phase-space SDEs against closed forms for Gaussian data.

For ``x_0 ~ N(mu, v)`` per coordinate the phase-space marginal is Gaussian, ``z_t ~ N(Phi [mu; 0], C_t)`` with
``C_t = Phi diag(v, kappa M) Phi^T + noise_cov``, and its score ``s*(z) = -C_t^-1 (z - Phi [mu; 0])`` is exact. With
the kernel covariance ``Sigma_t = L L^T`` of the mode (HSM: starting at ``diag(0, kappa M)``, DSM: at ``0``) the
expected loss of ``s*`` per coordinate is ``sum_j [L^T (Sigma_t^-1 - C_t^-1) L]_jj = sum_j (1 - [L^T C_t^-1 L]_jj)``
over the kept blocks ``j``, because ``E[(s* - s_cond)(s* - s_cond)^T] = Sigma_t^-1 - C_t^-1``.
"""

from __future__ import annotations

import pytest
import torch

from scoresde.losses import score_from_eps, sde_loss
from scoresde.sdes import CLD, PSLD
from scoresde.sdes.linalg import apply_blocks
from tests.sampling.test_phase_space_samplers import _one_thread  # noqa: F401 (autouse: 2x2 batches, one thread)

F64 = torch.float64
MU, VAR = 0.7, 0.3
N_MC = 200_000


def _exact_score(sde, t: torch.Tensor):
    """Score of the Gaussian phase-space marginal at a single time ``t`` (shape ``(1,)``)."""
    P0 = torch.tensor([[VAR, 0.0], [0.0, 0.0]], dtype=F64) + sde.initial_cov
    C = sde.kernel_cov(t, P0)[0]
    mean = sde.transition(t)[0] @ torch.tensor([MU, 0.0], dtype=F64)
    prec = torch.linalg.inv(C)

    def score_fn(z: torch.Tensor, _t: torch.Tensor) -> torch.Tensor:
        return -apply_blocks(prec, z - mean[None])

    return score_fn, C


def _expected_loss(sde, t: torch.Tensor, C: torch.Tensor, blocks: str) -> float:
    L = sde.marginal_prob(torch.zeros(1, 2, dtype=F64), t)[1][0]
    per_block = 1.0 - torch.diagonal(L.T @ torch.linalg.inv(C) @ L)
    return float(per_block.sum() if blocks == "all" else per_block[-1])


@pytest.mark.parametrize("mode", ["hsm", "dsm"])
@pytest.mark.parametrize("blocks", ["all", "momentum"])
@pytest.mark.parametrize(("name", "t_value"), [("psld", 0.05), ("psld", 0.4), ("cld", 0.02), ("cld", 0.3)])
def test_loss_of_the_exact_score_matches_the_closed_form(name: str, t_value: float, mode: str, blocks: str) -> None:
    sde = (PSLD if name == "psld" else CLD)(score_matching=mode)
    t1 = torch.tensor([t_value], dtype=F64)
    score_fn, C = _exact_score(sde, t1)
    g = torch.Generator().manual_seed(11)
    x = MU + VAR**0.5 * torch.randn(N_MC, 1, generator=g, dtype=F64)
    noise = torch.randn(N_MC, 2, generator=g, dtype=F64)
    momentum = None if mode == "hsm" else sde.augment(x, g)[:, 1:]
    kw = {"t": t1.expand(N_MC), "noise": noise, "momentum": momentum, "blocks": blocks, "reduction": "none"}
    per_example = sde_loss(score_fn, sde, x, **kw)
    expected = 0.5 * _expected_loss(sde, t1, C, blocks)  # reduce_mean=False: 0.5 * sum
    stderr = float(per_example.std()) / N_MC**0.5
    assert abs(float(per_example.mean()) - expected) < 4 * stderr + 1e-12, (float(per_example.mean()), expected)
    # A slightly wrong score (a 10% too wide marginal) has a larger loss on the same draws.
    wrong = sde_loss(lambda z, t: 0.9 * score_fn(z, t), sde, x, **kw)
    diff = wrong - per_example
    assert float(diff.mean()) > 3 * float(diff.std()) / N_MC**0.5, (float(diff.mean()), float(diff.std()))


def test_hsm_has_a_smaller_loss_floor_than_dsm() -> None:
    """Marginalising the momentum removes variance: HSM's irreducible loss is below DSM's (Dockhorn et al. 2022)."""
    t1 = torch.tensor([0.05], dtype=F64)
    floors = {}
    for mode in ("hsm", "dsm"):
        sde = CLD(score_matching=mode)
        _, C = _exact_score(sde, t1)
        floors[mode] = _expected_loss(sde, t1, C, "momentum")
    assert 0 <= floors["hsm"] < floors["dsm"]


def test_epsilon_to_score_round_trip_uses_the_training_mode() -> None:
    t = torch.tensor([0.01, 0.3, 0.9], dtype=F64)
    eps = torch.randn(3, 4, dtype=F64)
    for mode in ("hsm", "dsm"):
        sde = PSLD(score_matching=mode)
        L = sde.marginal_prob(torch.zeros(3, 2, dtype=F64), t)[1]
        score = score_from_eps(sde, eps, t)
        torch.testing.assert_close(apply_blocks(L.transpose(-1, -2), score), -eps)
        # Momentum-only networks (lower factor): the momentum score is -eps_m / L_mm.
        half = score_from_eps(sde, eps[:, 2:], t, blocks="momentum")
        torch.testing.assert_close(half[:, 2:], -eps[:, 2:] / L[:, 1, 1, None])
        assert (half[:, :2] == 0).all()
    hsm = score_from_eps(PSLD(score_matching="hsm"), eps, t)
    dsm = score_from_eps(PSLD(score_matching="dsm"), eps, t)
    assert not torch.allclose(hsm, dsm)


def test_loss_draws_and_validation() -> None:
    x = torch.randn(8, 3, 4, 4)
    hsm, dsm = PSLD(score_matching="hsm"), PSLD(score_matching="dsm")
    zero_score = lambda z, t: torch.zeros_like(z)  # noqa: E731
    a = sde_loss(zero_score, dsm, x, generator=torch.Generator().manual_seed(0))
    b = sde_loss(zero_score, dsm, x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == ()
    # With a zero score the loss is 0.5 * ||eps||^2: the momentum block alone is half of it.
    noise = torch.randn(8, 6, 4, 4)
    full = sde_loss(zero_score, hsm, x, noise=noise, reduction="none")
    mom = sde_loss(zero_score, hsm, x, noise=noise, blocks="momentum", reduction="none")
    torch.testing.assert_close(full, 0.5 * noise.flatten(1).square().sum(1))
    torch.testing.assert_close(mom, 0.5 * noise[:, 3:].flatten(1).square().sum(1))
    with pytest.raises(ValueError, match="all, momentum"):
        sde_loss(zero_score, hsm, x, blocks="position")
    with pytest.raises(ValueError, match="momentum must be None"):
        sde_loss(zero_score, hsm, x, momentum=torch.zeros_like(x))
    with pytest.raises(ValueError, match="momentum must have shape"):
        sde_loss(zero_score, dsm, x, momentum=torch.zeros(8, 1, 4, 4))
    with pytest.raises(ValueError, match=r"noise has shape \(8, 3, 4, 4\), the state z_0 .* has \(8, 6, 4, 4\)"):
        sde_loss(zero_score, hsm, x, noise=torch.zeros_like(x))
    with pytest.raises(ValueError, match="decomp_mode='lower'"):
        score_from_eps(PSLD(decomp_mode="upper"), torch.zeros(2, 1), torch.ones(2), blocks="momentum")


class _Net(torch.nn.Module):
    """``net(z, t, **cond)``: a linear map of the state (and of ``class_labels`` when given)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(n_in + 1, n_out)

    def forward(self, z: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        out = self.lin(torch.cat([z, t[:, None].to(z.dtype)], dim=1))
        return out if class_labels is None else out + class_labels[:, None].to(z.dtype)


@pytest.mark.parametrize("name", ["psld", "cld"])
@pytest.mark.parametrize("mode", ["hsm", "dsm"])
@pytest.mark.parametrize("blocks", ["all", "momentum"])
def test_sde_loss_on_phase_space_draws_t_then_momentum_then_noise(name: str, mode: str, blocks: str) -> None:
    """Same generator, same draws (t, then the DSM momentum, then noise): the loss replayed by hand, bit for bit."""
    sde = (PSLD if name == "psld" else CLD)(score_matching=mode)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    score = lambda z, t: net(torch.cat([z, t[:, None]], dim=1))  # noqa: E731
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    # the draw order, replayed by hand: t ~ U(eps, T), then (DSM) m_0 ~ N(0, Sigma_0), then the noise
    g = torch.Generator().manual_seed(2)
    t = torch.rand(32, generator=g) * (1 - 1e-5) + 1e-5
    z0 = sde.initial_state(x, None, g)
    noise = torch.randn(z0.shape, generator=g)
    replay = sde_loss(score, sde, x, t=t, noise=noise, momentum=None if mode == "hsm" else z0[:, 2:], blocks=blocks)
    assert torch.equal(replay, sde_loss(score, sde, x, blocks=blocks, generator=torch.Generator().manual_seed(2)))


def test_sde_loss_reads_the_blocks_of_a_momentum_only_model_and_refuses_likelihood_weighting() -> None:
    from scoresde.models import PhaseSpaceScoreModel

    sde = CLD()
    model = PhaseSpaceScoreModel(_Net(4, 2), sde, blocks="momentum")
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    own = sde_loss(model, sde, x, generator=g())
    assert torch.equal(own, sde_loss(model, sde, x, blocks="momentum", generator=g()))
    assert not torch.equal(own, sde_loss(model, sde, x, blocks="all", generator=g()))
    with pytest.raises(ValueError, match="likelihood_weighting=True is not defined for CLD"):
        sde_loss(model, sde, x, likelihood_weighting=True)
