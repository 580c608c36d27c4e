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
from scoresde.objectives.fp import _divergence
from scoresde.sdes import VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture

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
    exact = _divergence(s, xr, "exact", None).reshape(4, n)[:, 0]
    probes = torch.randn((1, *xr.shape), generator=torch.Generator().manual_seed(1), dtype=xr.dtype)
    hutch = _divergence(s, xr, "hutchinson", probes).detach().reshape(4, n)
    se = hutch.std(1) / n**0.5
    assert ((hutch.mean(1) - exact.detach()).abs() < 4 * se).all()
    # probes sqrt(D) e_j, j = 1..D: E[v v^T] = I holds exactly, so their mean is the trace.
    coord = 2**0.5 * torch.eye(2, dtype=x.dtype)[:, None, :].expand(2, 4 * n, 2)
    assert torch.allclose(_divergence(s, xr, "hutchinson", coord), _divergence(s, xr, "exact", None))


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
    from scoresde.training import load_config
    from scoresde.training.build import build_model, check_objective, compute_loss
    from scoresde.training.config import ConfigError

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
