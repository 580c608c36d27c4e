"""One set of losses for every SDE: conditioning reaches the model and follows the batch through min_time, a
model's SDE must be the loss's (8(q)), fp_loss(reduction="none") works (8(d)), and the numbers are those of the
code before the change (frozen)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scoresde.losses import ddpm_loss, fp_loss, fp_regularizer, sde_loss, smld_loss
from scoresde.models import ScoreModel
from scoresde.sdes import CLD, PSLD, VESDE, VPSDE, SubVPSDE

F64 = torch.float64
FROZEN = json.loads((Path(__file__).parent / "frozen_numbers.json").read_text())


def _mlp(n_in: int, n_out: int, seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(n_in + 1, 16), torch.nn.Tanh(), torch.nn.Linear(16, n_out)).double()
    return net, (lambda z, t: net(torch.cat([z, t[:, None]], dim=1)))


def _data(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


class _RowCheckingScore:
    """``score(x, t, class_labels)`` that asserts row ``j`` of ``class_labels`` names the row of ``x`` it came with
    (``class_labels`` are row indices into the table of the perturbed points the loss evaluates)."""

    def __init__(self, table: torch.Tensor, score) -> None:
        self.table, self.score, self.calls = table, score, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        assert class_labels.shape[0] == x.shape[0] == t.shape[0]
        torch.testing.assert_close(x.detach(), self.table[class_labels], rtol=0, atol=0)
        self.calls += 1
        return self.score(x, t)


@pytest.mark.parametrize("sde", [VPSDE(), PSLD(score_matching="dsm")], ids=["vp", "psld-dsm"])
def test_cond_reaches_the_model_and_is_sliced_with_the_batch_by_min_time(sde) -> None:
    k = 4 if sde.has_auxiliary else 2
    _, score = _mlp(k, k)
    x = _data()
    g = torch.Generator().manual_seed(2)
    t = torch.cat([torch.full((6,), 1e-3, dtype=F64), torch.rand(10, generator=g, dtype=F64) * 0.9 + 0.05])
    z0 = sde.initial_state(x, None, g)
    noise = torch.randn(z0.shape, generator=g, dtype=F64)
    mean, std = sde.marginal_prob(z0, t)
    table = mean + sde.apply_std(std, noise)  # the perturbed points, row b for label b
    checking = _RowCheckingScore(table, score)
    labels = torch.arange(16)
    momentum = z0[:, 2:] if sde.has_auxiliary else None
    draws = dict(t=t, noise=noise, momentum=momentum)
    loss = fp_loss(checking, sde, x, **draws, cond={"class_labels": labels}, min_time=0.01,
                   generator=torch.Generator().manual_seed(3))
    assert checking.calls > 3  # the DSM call, the divergence and the finite-difference calls
    torch.testing.assert_close(loss, fp_loss(score, sde, x, **draws, min_time=0.01,
                                             generator=torch.Generator().manual_seed(3)), rtol=0, atol=0)
    # sde_loss and fp_regularizer pass cond too; a cond whose rows do not match the batch is refused
    sde_loss(checking, sde, x, **draws, cond={"class_labels": labels})
    fp_regularizer(checking, sde, table[6:], t[6:], cond={"class_labels": labels[6:]},
                   generator=torch.Generator().manual_seed(4))
    with pytest.raises(ValueError, match="has 15 rows but the batch has 16"):
        sde_loss(checking, sde, x, **draws, cond={"class_labels": labels[1:]})


def test_discrete_losses_pass_cond_to_a_bare_network_and_to_model_net() -> None:
    seen = []

    def net(x, labels, class_labels=None):
        seen.append(class_labels)
        return 0.1 * x

    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([3, 1, 4, 1])
    ddpm_loss(net, VPSDE(N=100), x, cond={"class_labels": y})
    smld_loss(net, VESDE(N=10), x, cond={"class_labels": y})
    assert all(torch.equal(s, y) for s in seen) and len(seen) == 2
    ddpm_loss(net, VPSDE(N=100), x)  # no cond: net(x, labels), as before
    assert seen[-1] is None


class _TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x, noise_labels, class_labels=None):
        return self.lin(x) * noise_labels[:, None].float()


def test_a_model_under_another_sde_is_an_error_8q() -> None:
    """A VP-trained ScoreModel under a sub-VP loss used to perturb with one SDE and convert with the other."""
    model = ScoreModel(_TinyNet(), VPSDE())
    x = torch.randn(8, 2)
    sde_loss(model, model.sde, x)
    sde_loss(model, VPSDE(), x)  # an equal SDE object is the same diffusion
    for call in (lambda: sde_loss(model, SubVPSDE(), x), lambda: fp_loss(model, SubVPSDE(), x),
                 lambda: sde_loss(model.score, SubVPSDE(), x),
                 lambda: ddpm_loss(model, VPSDE(beta_max=10.0), x),
                 lambda: fp_regularizer(model, SubVPSDE(), x, torch.rand(8))):
        with pytest.raises(ValueError, match="differs from the SDE passed"):
            call()


@pytest.mark.parametrize("sde", [VPSDE(), PSLD()], ids=["vp", "psld"])
@pytest.mark.parametrize("min_time", [0.0, 0.3])
def test_fp_loss_reduction_none_gives_per_example_losses_8d(sde, min_time: float) -> None:
    k = 4 if sde.has_auxiliary else 2
    net, score = _mlp(k, k)
    x = _data()
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    mean = fp_loss(score, sde, x, min_time=min_time, generator=g())
    per_example = fp_loss(score, sde, x, min_time=min_time, reduction="none", generator=g())
    assert per_example.shape == (16,)
    torch.testing.assert_close(per_example.mean(), mean, rtol=1e-12, atol=0)
    grads = []
    for value in (mean, per_example.mean()):
        net.zero_grad()
        value.backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)
    dsm = sde_loss(score, sde, x, reduction="none", generator=g())
    assert (per_example >= dsm - 1e-12).all()  # both regulariser shares are >= 0
    terms = fp_regularizer(score, sde, torch.randn(5, k, dtype=F64), torch.rand(5, dtype=F64) * 0.9 + 0.05,
                           reduction="none", generator=g())
    assert terms.vector.shape == terms.scalar.shape == (5,)


def test_the_numbers_are_those_of_the_code_before_the_change() -> None:
    """Losses and likelihoods with fixed draws against values frozen from the code before the losses and the
    likelihood took phase space through the SDE (commit e04693a); ``tests/losses/frozen_numbers.json``."""
    from scoresde.likelihood import bits_per_dim, log_likelihood
    from scoresde.toy import GaussianMixture
    from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

    def check(key, value):
        expected = torch.tensor(FROZEN[key], dtype=F64)
        torch.testing.assert_close(value.detach().reshape(expected.shape), expected, rtol=1e-10, atol=1e-12)

    x = torch.randn(12, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    for name, cls in (("psld", PSLD), ("cld", CLD)):
        for mode in ("hsm", "dsm"):
            sde, (_, s) = cls(score_matching=mode), _mlp(4, 4)
            for blocks in ("all", "momentum"):
                check(f"loss/{name}/{mode}/{blocks}", sde_loss(s, sde, x, blocks=blocks, reduction="none",
                                                               generator=torch.Generator().manual_seed(2)))
            check(f"fp/{name}/{mode}", fp_loss(s, sde, x, min_time=0.3, generator=torch.Generator().manual_seed(3)))
    for name, cls in (("vp", VPSDE), ("subvp", SubVPSDE), ("ve", VESDE)):
        sde, (_, s) = cls(), _mlp(2, 2)
        for lw in (False, True):
            check(f"loss/{name}/{lw}", sde_loss(s, sde, x, likelihood_weighting=lw, reduction="none",
                                                generator=torch.Generator().manual_seed(4)))
        check(f"fp/{name}", fp_loss(s, sde, x, generator=torch.Generator().manual_seed(5)))
    gm, vp = GaussianMixture.example_2d(), VPSDE()
    check("ll/vp", log_likelihood(vp, gm.score_fn(vp), x, n_probes=2, generator=torch.Generator().manual_seed(6)))
    k = torch.randint(0, 256, (5, 2), generator=torch.Generator().manual_seed(7), dtype=torch.int64)
    check("bpd/vp", bits_per_dim(vp, gm.score_fn(vp), k, n_probes=2, dtype=F64,
                                 generator=torch.Generator().manual_seed(8)))
    for name, cls in (("psld", PSLD), ("cld", CLD)):
        sde = cls()
        pm = PhaseSpaceMixture(gm, sde)
        check(f"aug/{name}", log_likelihood(sde, pm.score, x[:6], n_probes=2,
                                            generator=torch.Generator().manual_seed(9)))
