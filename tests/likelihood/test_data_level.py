"""``log_likelihood`` and ``bits_per_dim`` take data for every SDE: on phase space they return the entropy-corrected
augmented bound (exact for the exact mixture score), conditioning reaches the model, and ``data_nll``'s per-example
seeding gives the same value whatever the batch (fix 8(m))."""

from __future__ import annotations

import json

import pytest
import torch

from scoresde import bits_per_dim, log_likelihood
from scoresde.likelihood import data_nll
from scoresde.likelihood.ode import Draws, repeat_rows
from scoresde.numerics import example_generators, sample_seed
from scoresde.sdes import CLD, PSLD, VPSDE
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

GM = GaussianMixture.example_2d()
F64 = torch.float64


def _points(n: int, seed: int = 0) -> torch.Tensor:
    return GM.sample(n, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sde_cls", [PSLD, CLD], ids=["psld", "cld"])
def test_phase_space_log_likelihood_of_data_is_the_augmented_bound(sde_cls) -> None:
    sde = sde_cls()
    pm = PhaseSpaceMixture(GM, sde)
    x = _points(6)
    logp, info = log_likelihood(sde, pm.score, x, n_probes=2, generator=torch.Generator().manual_seed(1),
                                return_info=True)
    assert info.bound is True and info.latent.shape == (6, 4) and info.stderr.shape == (6,)
    torch.testing.assert_close(logp, info.joint_logp - info.auxiliary_logp)
    # the momentum term is log q(m_0) of the draws: replay them (per-row momentum, then probe) from the same seed
    assert torch.isfinite(info.auxiliary_logp).all() and (info.auxiliary_logp != 0).all()
    _, single = log_likelihood(sde, pm.score, x[:2], trace="exact", rtol=1e-4, atol=1e-4, return_info=True)
    assert torch.isnan(single.stderr).all()  # one random momentum draw: no spread to report
    # with the exact trace the bound is log p(x) for the exact score, up to the eps bias and the solver
    exact = log_likelihood(sde, pm.score, x[:3], trace="exact", n_probes=2, rtol=1e-6, atol=1e-6,
                              generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(exact, GM.log_prob(x[:3]), atol=1.5e-2, rtol=0)


def test_phase_space_bits_per_dim_takes_data_and_is_the_bound_in_bits() -> None:
    sde = PSLD()
    gm = GaussianMixture([1.0], [[0.5, 0.4]], [0.2])
    pm = PhaseSpaceMixture(gm, sde)
    k = torch.tensor([[120, 100], [140, 90], [128, 128]], dtype=torch.uint8)
    opts = {"trace": "exact", "rtol": 1e-6, "atol": 1e-6, "dtype": F64, "dequantization": "midpoint"}
    bpd, info = bits_per_dim(sde, pm.score, k, n_probes=2, generator=torch.Generator().manual_seed(0), **opts,
                             return_info=True)
    assert info.bound is True and torch.isfinite(info.stderr).all()
    y = (k.double() + 0.5) / 256
    bound = log_likelihood(sde, pm.score, y, n_probes=2, generator=torch.Generator().manual_seed(0),
                           **{key: v for key, v in opts.items() if key not in ("dtype", "dequantization")})
    torch.testing.assert_close(bpd, -bound / (2 * torch.log(torch.tensor(2.0, dtype=F64))) + 8)  # same draws
    torch.testing.assert_close(bpd, -gm.log_prob(y) / (2 * torch.log(torch.tensor(2.0, dtype=F64))) + 8,
                               atol=2e-2, rtol=0)


def test_scalar_sde_info_is_an_exact_likelihood() -> None:
    sde = VPSDE()
    x = _points(8)
    logp, info = log_likelihood(sde, GM.score_fn(sde), x, trace="exact", return_info=True)
    assert info.bound is False and torch.equal(info.joint_logp, logp)
    assert torch.equal(info.auxiliary_logp, torch.zeros(8, dtype=F64))
    # x_is_state is a no-op where the state is the data
    assert torch.equal(log_likelihood(sde, GM.score_fn(sde), x, trace="exact", x_is_state=True), logp)


def test_states_need_x_is_state_and_then_get_their_exact_likelihood() -> None:
    sde = PSLD()
    pm = PhaseSpaceMixture(GM, sde)
    z = sde.augment(_points(6), torch.Generator().manual_seed(2))
    logp, info = log_likelihood(sde, pm.score, z, trace="exact", x_is_state=True, rtol=1e-6, atol=1e-6,
                                return_info=True)
    assert info.bound is False and info.latent.shape == z.shape
    torch.testing.assert_close(logp, pm.log_prob(z, 1e-5), atol=5e-3, rtol=0)
    with pytest.raises(ValueError, match="pass x_is_state=True"):
        log_likelihood(sde, pm.score, z, trace="exact", return_info=True)


def test_forward_mode_divergence_gives_the_same_likelihood() -> None:
    sde = VPSDE()
    x = _points(16)
    rev = log_likelihood(sde, GM.score_fn(sde), x, generator=torch.Generator().manual_seed(3))
    fwd = log_likelihood(sde, GM.score_fn(sde), x, divergence_ad="forward",
                            generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(fwd, rev, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="reverse, forward"):
        log_likelihood(sde, GM.score_fn(sde), x, divergence_ad="backward", return_info=True)


@pytest.mark.parametrize("sde_cls", [VPSDE, PSLD], ids=["vp", "psld"])
def test_cond_reaches_the_model_row_by_row(sde_cls) -> None:
    """The score receives ``class_labels`` with the rows of the states it is evaluated on (probe-major copies)."""
    sde = sde_cls()
    exact = PhaseSpaceMixture(GM, sde).score if sde.has_auxiliary else GM.score_fn(sde)
    x = _points(5)
    labels = torch.arange(5)
    seen = []

    def score(z: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        assert class_labels.shape[0] == z.shape[0]
        seen.append(class_labels.clone())
        return exact(z, t)

    logp = log_likelihood(sde, score, x, n_probes=2, cond={"class_labels": labels},
                             generator=torch.Generator().manual_seed(4))
    assert seen and all(torch.equal(s, labels.repeat(2)) for s in seen)  # row p B + b carries label b
    plain = log_likelihood(sde, exact, x, n_probes=2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(logp, plain)
    with pytest.raises(ValueError, match=r"cond\['class_labels'\] has 4 rows but the batch has 5"):
        log_likelihood(sde, score, x, cond={"class_labels": labels[:4]}, return_info=True)


# ---- the per-example seeding convention (fix 8(m)) ---------------------------------------------------------------

def test_per_example_draws_do_not_depend_on_the_batch() -> None:
    """Example i's dequantisation, momentum and probe come from its own (seed, i) stream, whatever the batch."""
    sde = PSLD()
    x = _points(7)

    def draws(indices):
        rows = repeat_rows(x[indices], 3)
        d = Draws(example_generators(11, indices), len(indices))
        u = d.rows(lambda r, g: torch.rand(r.shape, generator=g, dtype=r.dtype), rows)
        z = d.rows(lambda r, g: sde.augment(r, g), rows)
        return u.reshape(3, len(indices), 2), z.reshape(3, len(indices), 4)

    u_all, z_all = draws(list(range(7)))
    u_part, z_part = draws([2, 5])
    assert torch.equal(u_part, u_all[:, [2, 5]]) and torch.equal(z_part, z_all[:, [2, 5]])
    g = torch.Generator().manual_seed(sample_seed(11, 5))
    assert torch.equal(u_all[:, 5], torch.rand((3, 2), generator=g, dtype=F64))


@pytest.mark.parametrize(("sde_cls", "n"), [(VPSDE, 16), (PSLD, 6)], ids=["vp", "psld"])
def test_data_nll_with_a_seed_is_the_same_whatever_the_batch_size(sde_cls, n: int) -> None:
    sde = sde_cls()
    score = PhaseSpaceMixture(GM, sde).score if sde.has_auxiliary else GM.score_fn(sde)
    x = _points(n, seed=3)
    kw = {"centered": False, "n_probes": 2, "seed": 7}
    runs = {}
    for batch_size in (1, 3, 16):
        parts = [data_nll(sde, score, x[i:i + batch_size], indices=range(i, min(n, i + batch_size)), **kw)[0]
                 for i in range(0, n, batch_size)]
        runs[batch_size] = torch.cat(parts)
    # the same draws: the values agree up to the adaptive solver's batch-wide error control (~1e-4 nats)
    for batch_size in (1, 3):
        torch.testing.assert_close(runs[batch_size], runs[16], rtol=0, atol=2e-3)
    # ... while another seed (other probes and momenta) moves them by far more than that
    other = data_nll(sde, score, x, **{**kw, "seed": 8}, indices=range(n))[0]
    assert float((other - runs[16]).abs().max()) > 2e-2
    # the default indices are range(len(batch)); a seed and a generator together are refused
    torch.testing.assert_close(data_nll(sde, score, x, **kw)[0], runs[16], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="either seed"):
        data_nll(sde, score, x, **kw, generator=torch.Generator())
    with pytest.raises(ValueError, match="one example per row"):
        data_nll(sde, score, x, **kw, indices=range(2))


def test_cli_likelihood_and_eval_bpd_agree_on_the_same_points(tmp_path) -> None:
    """``scoresde likelihood`` and ``eval --metrics bpd`` on the same 6 points with the same seed: one number (they
    used to seed the probes differently: 2.71 against 2.55 nats/dim on a 16-point run)."""
    from scoresde.cli import main
    from tests.evaluation.test_eval_fpe import TOY_PSLD, _train

    workdir = tmp_path / "psld"
    _train(workdir, "toy/gaussian_mixture_psld", TOY_PSLD)
    assert main(["likelihood", "--workdir", str(workdir), "--num", "6", "--batch-size", "6", "--n-probes", "2",
                 "--seed", "3", "--quiet"]) == 0
    cli = json.loads(next((workdir / "eval").glob("likelihood_test_step_*.json")).read_text())
    assert main(["eval", "--workdir", str(workdir), "--metrics", "bpd", "--bpd-num", "6", "--bpd-batch-size", "6",
                 "--bpd-probes", "2", "--seed", "3", "--quiet"]) == 0
    ev = json.loads((workdir / "eval" / "metrics.json").read_text())["metrics"]["bpd"]
    assert ev["bound"] is True and ev["unit"] == cli["unit"] == "nats/dim"
    assert ev["value"] == pytest.approx(cli["value"], rel=1e-6)  # float32 values, averaged in float32 by the CLI
    assert main(["eval", "--workdir", str(workdir), "--metrics", "bpd", "--bpd-num", "6", "--bpd-batch-size", "2",
                 "--bpd-probes", "2", "--seed", "3", "--tag", "small", "--quiet"]) == 0
    small = json.loads((workdir / "eval" / "small" / "metrics.json").read_text())["metrics"]["bpd"]
    assert small["value"] == pytest.approx(cli["value"], abs=2e-3)
