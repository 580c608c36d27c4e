"""FP-Diffusion regulariser: exact mixture scores satisfy the score Fokker–Planck equation, wrong ones do not.

The exact score of a diffused Gaussian mixture solves ``d_t s = grad_x[1/2 g^2 div s + 1/2 g^2 |s|^2 - <f, s> - div f]``
for every scalar SDE, so its vector residual is finite-difference error only. A rescaled score ``1.2 s`` or the
score of the same mixture under another SDE violates it. (A mixture with other weights would not do: its
marginals are also an exact solution.)
"""

from __future__ import annotations

import pytest
import torch

from scoresde.losses import fp_loss, fp_regularizer, sde_loss
from scoresde.losses.fp_core import WEIGHTINGS, _divergence
from scoresde.losses.fpe import fpe_residual
from scoresde.sdes import CLD, PSLD, VESDE, VPSDE, RecipeSDE, SubVPSDE
from scoresde.sdes.linalg import apply_blocks
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

GM = GaussianMixture.example_2d()
SDES = {"ve": VESDE(), "vp": VPSDE(), "subvp": SubVPSDE()}


def _points(sde, B=128, seed=0, t_lo=0.05, t_hi=0.95):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(B, generator=g, dtype=torch.float64) * (t_hi - t_lo) + t_lo
    mean, std = sde.marginal_prob(GM.sample(B, generator=g), t)
    return mean + std[:, None] * torch.randn(mean.shape, generator=g, dtype=torch.float64), t


def _mlp_score(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)).to(dtype)
    return net, (lambda x, t: net(torch.cat([x, t[:, None]], dim=1)))


@pytest.mark.parametrize("name", list(SDES))
def test_exact_score_has_vanishing_residual_and_wrong_scores_do_not(name):
    sde = SDES[name]
    x, t = _points(sde)
    exact = GM.score_fn(sde)
    other_sde = VPSDE() if name == "ve" else VESDE()
    wrong = {"scaled": lambda x, t: 1.2 * exact(x, t), "other_sde": GM.score_fn(other_sde)}
    kw = dict(mode="vector", divergence="exact", normalize=False)
    fd = fp_regularizer(exact, sde, x, t, **kw).vector.item()
    ad = fp_regularizer(exact, sde, x, t, time_derivative="autograd", **kw).vector.item()
    assert fd < 1e-6  # mean squared residual: finite-difference error only
    assert ad < 1e-20  # exact time derivative: round-off only
    for fn in wrong.values():
        assert fp_regularizer(fn, sde, x, t, **kw).vector.item() > 1.0


def test_hutchinson_divergence_is_unbiased_and_exact_on_coordinate_probes():
    sde = VPSDE()
    x, t = _points(sde, B=4)
    n = 4000
    xr = x.repeat_interleave(n, 0).requires_grad_(True)
    tr = t.repeat_interleave(n, 0)
    s = GM.score(xr, tr, sde)
    exact = _divergence(None, xr, s, "exact", None)[0].reshape(4, n)[:, 0]
    probes = torch.randn((1, *xr.shape), generator=torch.Generator().manual_seed(1), dtype=xr.dtype)
    hutch = _divergence(None, xr, s, "hutchinson", probes)[0].detach().reshape(4, n)
    se = hutch.std(1) / n**0.5
    assert ((hutch.mean(1) - exact.detach()).abs() < 4 * se).all()
    # probes sqrt(D) e_j, j = 1..D: E[v v^T] = I holds exactly, so their mean is the trace.
    coord = 2**0.5 * torch.eye(2, dtype=x.dtype)[:, None, :].expand(2, 4 * n, 2)
    assert torch.allclose(_divergence(None, xr, s, "hutchinson", coord)[0], _divergence(None, xr, s, "exact", None)[0])


def test_scalar_term_for_vp_is_beta_half_of_div_norm_and_x_dot_s():
    sde = VPSDE()
    x, t = _points(sde, B=32)
    s = GM.score(x, t, sde)
    jac = torch.func.vmap(torch.func.jacrev(lambda xi, ti: GM.score(xi[None], ti[None], sde)[0]))(x, t)
    div = jac.diagonal(dim1=-2, dim2=-1).sum(-1)
    beta = sde.beta_0 + t * (sde.beta_1 - sde.beta_0)
    expected = torch.linalg.vector_norm(beta / 2 * (div + (s * s).sum(1) + (x * s).sum(1)))
    got = fp_regularizer(GM.score_fn(sde), sde, x, t, mode="scalar", divergence="exact")
    assert got.vector is None
    torch.testing.assert_close(got.scalar, expected)


def test_default_settings_reproduce_the_original_vp_formulas():
    """The original ``VPSDE.PDE(scalar_fp='both', wgt='ll', m=2).fp`` written out, with the same probe."""
    sde = VPSDE()
    _, score = _mlp_score()
    x, t = _points(sde, B=16, t_lo=0.01, t_hi=0.99)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    xx = x.clone().requires_grad_(True)
    s = score(xx, t)
    div = (torch.autograd.grad((s * v).sum(), xx, create_graph=True)[0] * v).sum(1)
    g2 = sde.sde(xx, t)[1] ** 2
    bracket = div + (s * s).sum(1) + (xx * s).sum(1)
    scalar = torch.linalg.norm(g2 / 2 * bracket, 2)
    rhs = g2[:, None] / 2 * torch.autograd.grad(bracket.sum(), xx, create_graph=True)[0]
    hs, hd = 1e-3, 5e-4
    up = hs**2 * score(xx, t + hd) + (hd**2 - hs**2) * score(xx, t) - hd**2 * score(xx, t - hs)
    dsdt = up / (hs * hd * (hd + hs))
    vector = (g2 * torch.linalg.norm(dsdt - rhs, 2, dim=1) ** 2).mean() / 2**2
    got = fp_regularizer(score, sde, x, t, weighting="ll", probes=v)
    torch.testing.assert_close(got.vector, vector, rtol=1e-9, atol=0)
    torch.testing.assert_close(got.scalar, scalar, rtol=1e-12, atol=0)


def test_one_sided_rule_near_the_ends_stays_finite():
    sde = VPSDE()
    x, _ = _points(sde, B=8)
    t = torch.full((8,), 2e-4, dtype=torch.float64)
    # The original's two-sided rule would evaluate the score at t - h_s < 0, where VP's std is NaN.
    assert torch.isnan(GM.score(x, t - 1e-3, sde)).all()
    _, score = _mlp_score()
    for times in (t, torch.full((8,), sde.T - 1e-4, dtype=torch.float64)):
        kw = dict(mode="vector", divergence="exact", t_min=1e-5)
        fd = fp_regularizer(GM.score_fn(sde), sde, x, times, **kw).vector
        assert torch.isfinite(fd)
        fd_net = fp_regularizer(score, sde, x, times, **kw).vector
        ad_net = fp_regularizer(score, sde, x, times, time_derivative="autograd", **kw).vector
        torch.testing.assert_close(fd_net, ad_net, rtol=1e-5, atol=0)
    # the one-sided rule stays inside [t_min, t_max] (a score that refuses times outside catches a violation)
    def guarded(x, tt):
        assert (tt >= 1e-5).all() and (tt <= sde.T).all()
        return score(x, tt)
    mixed = torch.tensor([1e-5, 5e-4, 0.5, 1.0 - 1e-4, 1.0, 0.3, 2e-3, 0.999], dtype=torch.float64)
    assert torch.isfinite(fp_regularizer(guarded, sde, x, mixed, t_min=1e-5).vector)


def test_autograd_time_derivative_agrees_with_finite_differences_and_trains():
    sde = SubVPSDE()
    net, score = _mlp_score()
    x, t = _points(sde, B=32, t_lo=0.01, t_hi=1.0)
    grads = []
    for td in ("finite_difference", "autograd"):
        terms = fp_regularizer(score, sde, x, t, time_derivative=td, probes=torch.ones_like(x), weighting="ll")
        net.zero_grad()
        (terms.vector + terms.scalar).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-8)
    assert grads[0].abs().sum() > 0


def test_weightings_and_normalisation():
    sde = VESDE()
    _, score = _mlp_score()
    x, _ = _points(sde, B=8)
    t = torch.full((8,), 0.4, dtype=torch.float64)
    g = sde.sde(x, t)[1][0]
    v = torch.randn((1, *x.shape), generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    val = {w: fp_regularizer(score, sde, x, t, mode="vector", weighting=w, probes=v).vector
           for w in ("constant", "convention", "ll")}
    torch.testing.assert_close(val["convention"], g * val["constant"])
    torch.testing.assert_close(val["ll"], g**2 * val["constant"])
    raw = fp_regularizer(score, sde, x, t, mode="vector", weighting="constant", m=3, normalize=False, probes=v)
    norm = fp_regularizer(score, sde, x, t, mode="vector", weighting="constant", m=3, probes=v)
    torch.testing.assert_close(norm.vector, raw.vector / 2**3)
    assert fp_regularizer(score, sde, x, t, mode="vector", probes=v).scalar is None


@pytest.mark.parametrize(("option", "value", "valid"), [
    ("mode", "True", "both, scalar, vector"),
    ("weighting", "likelihood", "constant, convention, ll"),
    ("divergence", "approx", "hutchinson, exact"),
    ("time_derivative", "exact", "finite_difference, autograd"),
    ("divergence_ad", "backward", "reverse, forward"),
])
def test_unknown_option_names_list_the_valid_ones(option, value, valid):
    sde = VPSDE()
    x, t = _points(sde, B=2)
    with pytest.raises(ValueError, match=valid):
        fp_regularizer(GM.score_fn(sde), sde, x, t, **{option: value})
    if option in ("mode", "weighting"):
        with pytest.raises(ValueError, match=valid):
            fp_loss(GM.score_fn(sde), sde, x, **{option: value})


def test_fp_loss_combines_terms_like_the_original():
    sde = VPSDE()
    _, score = _mlp_score()
    batch = GM.sample(16, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(5)
    t = torch.rand(16, generator=g, dtype=batch.dtype) * (1 - 1e-5) + 1e-5
    z = torch.randn(batch.shape, generator=g, dtype=batch.dtype)
    v = torch.randn((1, *batch.shape), generator=g, dtype=batch.dtype)
    mean, std = sde.marginal_prob(batch, t)
    terms = fp_regularizer(score, sde, mean + std[:, None] * z, t, weighting="ll", probes=v, t_min=1e-5)
    dsm = sde_loss(score, sde, batch, t=t, noise=z, likelihood_weighting=True)
    draws = dict(t=t, noise=z, probes=v)
    torch.testing.assert_close(fp_loss(score, sde, batch, **draws), dsm + 0.15 * terms.vector + 0.01 * terms.scalar)
    torch.testing.assert_close(fp_loss(score, sde, batch, mode="vector", alpha=0.3, **draws), dsm + 0.3 * terms.vector)
    torch.testing.assert_close(fp_loss(score, sde, batch, mode="scalar", beta=0.2, **draws), dsm + 0.2 * terms.scalar)
    torch.testing.assert_close(fp_loss(score, sde, batch, alpha=0.0, beta=0.0, **draws), dsm)
    with torch.no_grad():  # the Trainer's held-out loss: derivatives are still taken inside
        torch.testing.assert_close(fp_loss(score, sde, batch, **draws), dsm + 0.15 * terms.vector + 0.01 * terms.scalar)
    # drawing from a generator is the same as replaying its draws in the order times, noise, probes
    torch.testing.assert_close(fp_loss(score, sde, batch, generator=torch.Generator().manual_seed(5)),
                               fp_loss(score, sde, batch, **draws))


def test_trainer_option_adds_the_regulariser_to_the_training_loss():
    from scoresde.config import ConfigError, load_config
    from scoresde.training.build import build_model, check_objective, compute_loss

    small = ["model.hidden=16", "model.depth=1", "training.batch_size=8"]
    cfg = load_config("toy/checkerboard", small)
    assert (cfg.training.fp_alpha, cfg.training.fp_beta) == (0.0, 0.0)  # off by default: plain DSM
    fp_cfg = load_config("toy/checkerboard", [*small, "training.fp_alpha=0.15", "training.fp_beta=0.01",
                                              "training.fp_mode=both", "training.fp_weighting=ll", "training.fp_m=2"])
    model = build_model(fp_cfg)
    check_objective(fp_cfg, model)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=g)
    draws = dict(t=torch.rand(8, generator=g) * 0.9 + 0.05, noise=torch.randn(8, 2, generator=g),
                 probes=torch.randn(1, 8, 2, generator=g))
    expected = fp_loss(model, model.sde, x, alpha=0.15, beta=0.01, reduce_mean=cfg.training.reduce_mean,
                       likelihood_weighting=cfg.training.likelihood_weighting, eps=cfg.training.eps, **draws)
    torch.testing.assert_close(compute_loss(fp_cfg, model, x, **draws), expected)
    plain = {k: draws[k] for k in ("t", "noise")}
    torch.testing.assert_close(compute_loss(cfg, model, x, **plain),
                               sde_loss(model, model.sde, x, reduce_mean=True, eps=cfg.training.eps, **plain))
    assert compute_loss(fp_cfg, model, x, **draws) > compute_loss(cfg, model, x, **plain)  # both terms are >= 0
    with pytest.raises(ConfigError, match="both, scalar, vector"):
        load_config("toy/checkerboard", [*small, "training.fp_mode=scalar_only"])
    discrete = load_config("toy/checkerboard", [*small, "training.fp_alpha=0.15", "training.continuous=false"])
    with pytest.raises(ValueError, match="continuous"):
        check_objective(discrete, model)


# ---- forward-mode Hutchinson -------------------------------------------------------------------------------------

def _ps_mlp_score(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)).double()
    return net, (lambda z, t: net(torch.cat([z, t[:, None]], dim=1)))


@pytest.mark.parametrize("name", ["vp", "psld"])
@pytest.mark.parametrize("divergence", ["hutchinson", "exact"])
def test_forward_mode_products_equal_reverse_mode_in_value_and_parameter_gradient(name, divergence):
    if name == "vp":
        sde, (net, score) = VPSDE(), _mlp_score()
        x, t = _points(sde, B=16, t_lo=0.01, t_hi=0.99)
    else:
        sde, (net, score) = PSLD(), _ps_mlp_score()
        g = torch.Generator().manual_seed(0)
        x, t = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.rand(16, generator=g, dtype=torch.float64)
    v = torch.randn((3, *x.shape), generator=torch.Generator().manual_seed(4), dtype=x.dtype)
    out = {}
    for ad in ("reverse", "forward"):
        terms = fp_regularizer(score, sde, x, t, weighting="ll", divergence=divergence, n_probes=3, probes=v,
                               divergence_ad=ad)
        net.zero_grad()
        (terms.vector + terms.scalar).backward()
        out[ad] = (terms.vector.detach(), terms.scalar.detach(),
                   torch.cat([p.grad.flatten() for p in net.parameters()]))
    for a, b in zip(out["reverse"], out["forward"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert out["forward"][2].abs().sum() > 0


# ---- phase space -------------------------------------------------------------------------------------------------

def _ps_points(sde, B=128, seed=0, t_lo=0.05, t_hi=0.95):
    """States z_t drawn from the true phase-space marginal: z_0 from the initial law, then the kernel from z_0."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(B, generator=g, dtype=torch.float64) * (t_hi - t_lo) + t_lo
    z0 = PhaseSpaceMixture(GM, sde).sample(B, g).double()
    cov = sde.kernel_cov(t, torch.zeros(2, 2, dtype=torch.float64))
    noise = torch.randn(z0.shape, generator=g, dtype=torch.float64)
    return apply_blocks(sde.transition(t), z0) + apply_blocks(torch.linalg.cholesky(cov), noise), t


@pytest.mark.parametrize("sde", [PSLD(), CLD()], ids=["psld", "cld"])
def test_exact_phase_space_score_solves_the_score_fpe_and_a_rescaled_one_does_not(sde):
    z, t = _ps_points(sde)
    exact = PhaseSpaceMixture(GM, sde).score
    wrong = lambda z, t: 1.2 * exact(z, t)  # noqa: E731
    kw = dict(mode="vector", divergence="exact", normalize=False)
    assert fp_regularizer(exact, sde, z, t, **kw).vector.item() < 1e-5  # 3e-7 measured: finite differences only
    assert fp_regularizer(wrong, sde, z, t, **kw).vector.item() > 100  # 470 measured
    # Hutchinson: one probe's noise in grad B (~40 per example here) averages out in the unbiased metric
    x0 = GM.sample(64, generator=torch.Generator().manual_seed(0)).double()
    grid = torch.linspace(0.05, 0.95, 5)
    good = fpe_residual(exact, sde, x0, t_grid=grid, generator=torch.Generator().manual_seed(2))
    bad = fpe_residual(wrong, sde, x0, t_grid=grid, generator=torch.Generator().manual_seed(2))
    assert abs(good.mean) < 3 * good.stderr + 1e-3  # -0.002 ± 0.36 (PSLD), -0.009 ± 0.38 (CLD)
    assert bad.mean > 50 and bad.mean > 10 * bad.stderr  # 142 ± 9
    # the exact time derivative (forward mode through the matrix-exponential kernel): no finite-difference error
    assert fp_regularizer(exact, sde, z, t, time_derivative="autograd", **kw).vector.item() < 1e-20  # 3e-26
    assert fp_regularizer(wrong, sde, z, t, time_derivative="autograd", **kw).vector.item() > 100


def test_phase_space_formula_with_sigma_g2_identity_is_the_scalar_one():
    """The recipe with k = 1, D = 1/2, Q = 0, S = 1 is VP; its per-channel path gives VP's scalar-path values."""
    vp = VPSDE()
    recipe = RecipeSDE([[0.5]], [[0.0]], [[1.0]], beta_min=vp.beta_0, beta_max=vp.beta_1)
    _, score = _mlp_score()
    x, t = _points(vp, B=16, t_lo=0.01, t_hi=0.99)
    v = torch.randn((2, *x.shape), generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    for weighting in WEIGHTINGS:
        a = fp_regularizer(score, vp, x, t, weighting=weighting, probes=v)
        b = fp_regularizer(score, recipe, x, t, weighting=weighting, probes=v)
        torch.testing.assert_close(b.vector, a.vector, rtol=1e-10, atol=0)
        torch.testing.assert_close(b.scalar, a.scalar, rtol=1e-10, atol=0)


def _phase_space_loss(model, sde, batch, **kw):
    """HSM/DSM on phase space as the FP tests use it: every block of the residual unless told."""
    return sde_loss(model, sde, batch, **{"blocks": "all", **kw})


def _phase_space_fp_loss(model, sde, batch, **kw):
    """fp_loss on phase space with the unweighted HSM/DSM base loss and every block unless told."""
    return fp_loss(model, sde, batch, **{"blocks": "all", "likelihood_weighting": False, **kw})


@pytest.mark.parametrize("score_matching", ["hsm", "dsm"])
def test_phase_space_fp_loss_adds_the_regulariser_at_the_same_state(score_matching):
    sde = PSLD(score_matching=score_matching)
    net, score = _ps_mlp_score()
    batch = GM.sample(16, generator=torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(5)
    t = torch.rand(16, generator=g, dtype=batch.dtype) * (1 - 1e-5) + 1e-5
    z0 = sde.initial_state(batch, None, g)
    noise = torch.randn(z0.shape, generator=g, dtype=batch.dtype)
    v = torch.randn((1, *z0.shape), generator=g, dtype=batch.dtype)
    draws = dict(t=t, noise=noise, probes=v)
    if score_matching == "dsm":
        draws["momentum"] = z0[:, 2:]
    mean, L = sde.marginal_prob(z0, t)
    terms = fp_regularizer(score, sde, mean + apply_blocks(L, noise), t, weighting="ll", probes=v, t_min=1e-5)
    base = _phase_space_loss(score, sde, batch, **{k: draws[k] for k in draws if k != "probes"})
    kw = dict(alpha=0.15, beta=0.01, mode="both", weighting="ll", m=2, blocks="all", reduce_mean=False, eps=1e-5)
    loss = _phase_space_fp_loss(score, sde, batch, **kw, **draws)
    torch.testing.assert_close(loss, base + 0.15 * terms.vector + 0.01 * terms.scalar)
    assert terms.vector > 0 and terms.scalar > 0
    # the generator's draws in the order t, (DSM momentum), noise, probes are the same as replaying them
    replayed = _phase_space_fp_loss(score, sde, batch, **kw, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(replayed, loss)
    torch.testing.assert_close(_phase_space_fp_loss(score, sde, batch, **{**kw, "alpha": 0.0, "beta": 0.0}, **draws),
                               base)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    with pytest.raises(ValueError, match="blocks='all'"):
        _phase_space_fp_loss(score, sde, batch, **{**kw, "blocks": "momentum"}, **draws)
    # fp_loss with its own defaults on phase space (HSM/DSM unweighted by default) is the same computation
    assert torch.equal(fp_loss(score, sde, batch, **{k: v for k, v in kw.items() if k != "blocks"}, **draws), loss)
    with pytest.raises(ValueError, match="likelihood_weighting=True is not defined"):
        fp_loss(score, sde, batch, likelihood_weighting=True, **draws)


# ---- the metric --------------------------------------------------------------------------------------------------

def test_fpe_residual_vanishes_for_the_exact_score_and_not_for_a_dsm_trained_one():
    sde = VPSDE()
    x0 = GM.sample(128, generator=torch.Generator().manual_seed(0)).double()
    exact = fpe_residual(GM.score_fn(sde), sde, x0, n_times=6, divergence="exact",
                         generator=torch.Generator().manual_seed(1))
    assert exact.times.tolist() == pytest.approx(torch.linspace(1e-3, 1.0, 6).tolist())
    assert exact.per_time.shape == (6,) and exact.per_example.shape == (128,)
    assert 0 <= exact.mean < 1e-6  # finite-difference error only
    net, score = _mlp_score()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(2)
    for _ in range(200):
        opt.zero_grad()
        sde_loss(score, sde, GM.sample(256, generator=g).double(), reduce_mean=True, generator=g).backward()
        opt.step()
    trained = fpe_residual(score, sde, x0, n_times=6, divergence="exact", generator=torch.Generator().manual_seed(1))
    assert trained.mean > 1e3 * max(exact.mean, 1e-12) and trained.mean > 10 * trained.stderr
    # Hutchinson (unbiased, two probe sets) agrees with the exact divergence within its error; draws do not
    # depend on the batch size
    h1 = fpe_residual(score, sde, x0, n_times=6, n_probes=4, generator=torch.Generator().manual_seed(1))
    h2 = fpe_residual(score, sde, x0, n_times=6, n_probes=4, batch_size=50, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(h1.per_example, h2.per_example, rtol=1e-9, atol=1e-12)
    assert abs(h1.mean - trained.mean) < 4 * h1.stderr + 0.5 * trained.mean
    with pytest.raises(ValueError, match="t_grid"):
        fpe_residual(score, sde, x0, t_grid=torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="reverse, forward"):
        fpe_residual(score, sde, x0, divergence_ad="backward")


def test_phase_space_fp_loss_takes_the_trainers_draws_for_a_phase_space_preset():
    """What ``compute_loss`` would call for a PSLD run with ``training.fp_alpha``/``fp_beta`` set."""
    from scoresde.config import load_config
    from scoresde.training.build import build_model, compute_loss

    cfg = load_config("toy/gaussian_mixture_psld", ["model.hidden=16", "model.depth=1", "training.batch_size=8"])
    model = build_model(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=g)
    draws = dict(t=torch.rand(8, generator=g) * 0.9 + 0.05, noise=torch.randn(8, 4, generator=g))
    t = cfg.training
    kw = dict(mode="both", weighting="ll", m=2, blocks=model.blocks, reduce_mean=t.reduce_mean, eps=t.eps)
    torch.testing.assert_close(_phase_space_fp_loss(model, model.sde, x, alpha=0.0, beta=0.0, **kw, **draws),
                               compute_loss(cfg, model, x, **draws))
    torch.manual_seed(3)  # the probes come from the global stream, as the trainer's dropout does
    loss = _phase_space_fp_loss(model, model.sde, x, alpha=0.15, beta=0.01, **kw, **draws)
    assert loss > compute_loss(cfg, model, x, **draws)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.net.parameters() if p.grad is not None)


def test_phase_space_fp_loss_min_time_regularises_only_later_times():
    sde = CLD()
    _, score = _ps_mlp_score()
    batch = GM.sample(16, generator=torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(1)
    t = torch.cat([torch.full((8,), 1e-4), torch.rand(8, generator=g, dtype=torch.float64) * 0.9 + 0.05]).double()
    noise = torch.randn(16, 4, generator=g, dtype=torch.float64)
    v = torch.randn(1, 16, 4, generator=g, dtype=torch.float64)
    kw = dict(alpha=0.15, beta=0.01, mode="both", weighting="ll", m=2, blocks="all", reduce_mean=False, eps=1e-5)
    base = _phase_space_loss(score, sde, batch, t=t, noise=noise)
    late = _phase_space_fp_loss(score, sde, batch[8:], **kw, t=t[8:], noise=noise[8:], probes=v[:, 8:])
    late_base = _phase_space_loss(score, sde, batch[8:], t=t[8:], noise=noise[8:])
    got = _phase_space_fp_loss(score, sde, batch, **kw, t=t, noise=noise, probes=v, min_time=0.01)
    torch.testing.assert_close(got - base, late - late_base)  # the same regulariser, on the late half only
    early_only = _phase_space_fp_loss(score, sde, batch[:8], **kw, t=t[:8], noise=noise[:8], min_time=0.01)
    torch.testing.assert_close(early_only, _phase_space_loss(score, sde, batch[:8], t=t[:8], noise=noise[:8]))
    with pytest.raises(ValueError, match="min_time"):
        _phase_space_fp_loss(score, sde, batch, **kw, min_time=-1.0)
