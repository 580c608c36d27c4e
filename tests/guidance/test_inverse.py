"""Inpainting and colorization: the replacement method equals Score SDE's PC inpainter/colorizer, its bias on a
mixture whose exact conditional is known, the SMC method's convergence to that conditional, and the contract
(observed entries returned exactly, every SDE, one clear error for bad input).

``original_pc_inpainter`` below re-implements the loop of Score SDE's ``controllable_generation.py`` (reverse-diffusion
predictor, Langevin corrector, replacement of the known part by a fresh forward draw after each update, and the
colorizer's channel rotation) directly from the paper's description, with its own predictor and corrector, sharing
only the SDE object and the score function with the library.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import scoresde
from scoresde.inverse import LinearKernel, decoupling_matrix
from scoresde.inverse.repaint import _repaint_schedule
from scoresde.sdes import CLD, PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture


def gaussian_data_score(sde):
    """Exact score of ``N(0, I)`` data perturbed by a scalar SDE: ``-x / (alpha^2 + sigma^2)``."""

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        var = sde.alpha(t) ** 2 + sde.sigma(t) ** 2
        return -x / var.reshape(-1, *([1] * (x.dim() - 1)))

    return score


def original_pc_inpainter(sde, score, data, mask, *, snr, eps, gen, rotate=None):
    """Score SDE's PC inpainter (``rotate=None``) or colorizer (``rotate=M``) with the reverse-diffusion predictor and
    the Langevin corrector, one generator, float64. Returns ``(x, x_mean)`` of the last update as the original
    computes them (its ``x_mean`` is assembled from the replaced noisy ``x``)."""
    if rotate is None:
        dec = enc = lambda v: v
    else:
        inv = torch.inverse(rotate)
        dec = lambda v: torch.einsum("bihw,ij->bjhw", v, rotate)  # noqa: E731
        enc = lambda v: torch.einsum("bihw,ij->bjhw", v, inv)  # noqa: E731
    B = data.shape[0]

    def replace(x, t):
        mean, std = sde.marginal_prob(dec(data), t)
        known = mean + torch.randn(x.shape, generator=gen, dtype=x.dtype) * std[:, None, None, None]
        x = enc(dec(x) * (1.0 - mask) + known * mask)
        return x, enc(dec(x) * (1.0 - mask) + mean * mask)

    def langevin(x, t):
        # VP: alpha_i = 1 - beta_i of the DDPM table (in x's precision: the original runs in float32 throughout)
        a = sde.alphas[(t * (sde.N - 1) / sde.T).long()].to(t) if hasattr(sde, "alphas") else torch.ones_like(t)
        grad = score(x, t)
        z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        gn = torch.linalg.norm(grad.reshape(B, -1), dim=-1).mean()
        zn = torch.linalg.norm(z.reshape(B, -1), dim=-1).mean()
        step = (snr * zn / gn) ** 2 * 2 * a
        x_mean = x + step[:, None, None, None] * grad
        return x_mean + torch.sqrt(step * 2)[:, None, None, None] * z

    def reverse_diffusion(x, t):
        f, G = sde.discretize(x, t)
        x_mean = x - (f - G[:, None, None, None] ** 2 * score(x, t))
        return x_mean + G[:, None, None, None] * torch.randn(x.shape, generator=gen, dtype=x.dtype)

    x = enc(dec(data) * mask + dec(sde.prior_sampling(data.shape, gen, dtype=data.dtype) * (1.0 - mask)))
    for t0 in torch.linspace(sde.T, eps, sde.N, dtype=torch.float64):
        t = torch.ones(B, dtype=torch.float64) * t0
        x, x_mean = replace(langevin(x, t), t)
        x, x_mean = replace(reverse_diffusion(x, t), t)
    return x, x_mean


@pytest.mark.parametrize("sde", [VESDE(sigma_max=5.0, N=30), VPSDE(N=40)], ids=["ve", "vp"])
def test_replacement_inpainter_is_the_original_algorithm(sde) -> None:
    data = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    mask[..., :2, :] = 1.0
    score = gaussian_data_score(sde)
    _x, x_mean = original_pc_inpainter(sde, score, data, mask, snr=0.16, eps=1e-3, gen=torch.Generator().manual_seed(7))
    ours = scoresde.inpaint(sde, score, data, mask, denoise=False, generator=torch.Generator().manual_seed(7),
                            dtype=torch.float64)
    hole = mask.expand_as(data) == 0
    assert torch.equal(ours[hole], x_mean[hole])  # bit for bit, the original's returned x_mean
    assert torch.equal(ours[~hole], data[~hole])  # and the observation exactly
    denoised = scoresde.inpaint(sde, score, data, mask, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert not torch.equal(denoised[hole], ours[hole]) and torch.equal(denoised[~hole], data[~hole])


def test_replacement_colorizer_is_the_original_algorithm() -> None:
    sde = VPSDE(N=40)
    M = decoupling_matrix(3)
    torch.testing.assert_close(M.T @ M, torch.eye(3, dtype=torch.float64))
    gray = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64).expand(2, 3, 3, 3)
    mask = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    score = gaussian_data_score(sde)
    _, x_mean = original_pc_inpainter(sde, score, gray.contiguous(), mask, snr=0.16, eps=1e-3,
                                      gen=torch.Generator().manual_seed(5), rotate=M)
    ours = scoresde.colorize(sde, score, gray, denoise=False, generator=torch.Generator().manual_seed(5),
                             dtype=torch.float64)
    rot = lambda v: torch.einsum("bihw,ij->bjhw", v, M)  # noqa: E731
    torch.testing.assert_close(rot(ours)[:, 1:], rot(x_mean)[:, 1:], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.mean(1), gray[:, 0], rtol=0, atol=1e-12)


def mixture_085() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    """A 4-D two-component mixture observed in its first two coordinates, where the exact conditional puts weights
    (0.85, 0.15) on the components."""
    gm = GaussianMixture([0.5, 0.5], [[0.6, 0.6, 2.0, 2.0], [-0.6, -0.6, -2.0, -2.0]], [0.6, 0.6])
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    y = torch.tensor([0.2602, 0.2602, 0.0, 0.0], dtype=torch.float64)
    return gm, mask, y


def test_replacement_is_biased_and_smc_is_not_on_the_085_mixture() -> None:
    gm, mask, y = mixture_085()
    exact = gm.condition_mask(mask, y)
    torch.testing.assert_close(exact.weights, torch.tensor([0.85, 0.15], dtype=torch.float64), atol=1e-3, rtol=0)
    sde, B = VPSDE(N=100), 300
    x_obs = y.expand(B, 4).clone()
    rep = scoresde.inpaint(sde, gm.score_fn(sde), x_obs, mask, corrector="none", dtype=torch.float64,
                           generator=torch.Generator().manual_seed(0))
    smc, info = scoresde.inpaint(sde, gm.score_fn(sde), x_obs, mask, method="smc", num_particles=16,
                                 dtype=torch.float64, generator=torch.Generator().manual_seed(0), return_info=True)
    f_rep, f_smc = exact.component_fractions(rep)[0], exact.component_fractions(smc)[0]
    assert f_rep < 0.65, f_rep  # measured 0.54 (the bias: the hole never learns which component y selects)
    assert abs(f_smc - 0.85) < 0.06, f_smc  # binomial std at B = 300: 0.02
    assert info.nfe == 101 and info.diagnostics["rows_per_call"] == B * 16
    assert torch.equal(smc[:, :2], x_obs[:, :2]) and torch.equal(rep[:, :2], x_obs[:, :2])


@pytest.mark.slow
def test_smc_error_shrinks_as_particles_grow() -> None:
    gm, mask, y = mixture_085()
    exact = gm.condition_mask(mask, y)
    sde, B = VPSDE(N=200), 1000
    errors = []
    for particles in (1, 8, 64):
        x = scoresde.inpaint(sde, gm.score_fn(sde), y.expand(B, 4).clone(), mask, method="smc",
                             num_particles=particles, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        errors.append(abs(float(exact.component_fractions(x)[0]) - 0.85))
    assert errors[0] > 0.2 and errors[2] < 0.03 and errors[1] < errors[0], errors


@pytest.mark.parametrize("method", ["replacement", "repaint", "smc"])
@pytest.mark.parametrize("name", ["ve", "subvp", "psld", "cld"])
def test_every_method_and_sde_returns_the_observation_exactly(method: str, name: str) -> None:
    gm, mask, _y = mixture_085()
    sde = {"ve": lambda: VESDE(sigma_max=5.0, N=12), "subvp": lambda: SubVPSDE(N=24), "psld": lambda: PSLD(N=12),
           "cld": lambda: CLD(N=12)}[name]()
    score = PhaseSpaceMixture(gm, sde).score_fn() if name in ("psld", "cld") else gm.score_fn(sde)
    options = {"repaint": {"jump_length": 3, "resamplings": 2}, "smc": {"num_particles": 4 if name != "cld" else 1}
               }.get(method, {})
    x_obs = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    x = scoresde.inpaint(sde, score, x_obs, mask.float(), method=method, generator=torch.Generator().manual_seed(3),
                         **options)
    assert x.shape == (5, 4) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x[:, :2], x_obs[:, :2])
    again = scoresde.inpaint(sde, score, x_obs, mask.float(), method=method,
                             generator=torch.Generator().manual_seed(3), **options)
    assert torch.equal(x, again)


def test_model_form_and_colorize_smc_keeps_the_grey_value() -> None:
    sde = VPSDE(N=40)
    gm = GaussianMixture([0.7, 0.3], [[1.0, 0.0, -1.0], [-1.0, 0.5, 2.0]], [0.4, 0.4])
    model = scoresde.as_model(sde, gm.score_fn(sde))
    gray = torch.full((4, 3), 0.2, dtype=torch.float64)
    x = scoresde.colorize(model, gray, method="smc", num_particles=4, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(1), torch.full((4,), 0.2, dtype=torch.float64), rtol=0, atol=1e-12)
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    out = scoresde.inpaint(model, gray, mask, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(out[:, [0, 2]], gray[:, [0, 2]])


def test_linear_kernel_matches_the_sdes() -> None:
    vp = VPSDE()
    k = LinearKernel(vp)
    t, s = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    psi, v = k.transition(t, s)
    torch.testing.assert_close(psi[0, 0], vp.alpha(t) / vp.alpha(s))
    torch.testing.assert_close(v[0, 0] + psi[0, 0] ** 2 * vp.sigma(s) ** 2, vp.sigma(t) ** 2)  # variances compose
    sub = SubVPSDE()
    psi_inv, v, _post = LinearKernel(sub).reverse(t, s)
    x, score = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    _, mean = sub.ancestral_step(x, t.expand(3), s.expand(3), score, torch.zeros_like(x))
    torch.testing.assert_close(psi_inv[0, 0] * (x + v[0, 0] * score), mean)  # generic exact-transition step
    psld = PSLD()
    kp = LinearKernel(psld)
    psi, v = kp.transition(t, s)
    torch.testing.assert_close(psi @ psld.kernel_cov(s[None])[0] @ psi.T + v, psld.kernel_cov(t[None])[0])
    assert kp.k == 2


def test_repaint_schedule() -> None:
    path = _repaint_schedule(10, 3, 2)
    assert path[0] == 0 and path[-1] == 10
    assert all(abs(b - a) == 1 for a, b in itertools.pairwise(path))
    downs = sum(b > a for a, b in itertools.pairwise(path))
    assert downs == 10 + 3 * 3  # three jump points (3, 6, 9), each revisited once after a 3-step jump
    assert _repaint_schedule(5, 10, 4) == list(range(6))


def test_bad_input_is_one_clear_error() -> None:
    sde = VPSDE(N=5)
    gm = GaussianMixture.example_2d()
    score = gm.score_fn(sde)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="does not broadcast"):
        scoresde.inpaint(sde, score, x, torch.ones(3))
    with pytest.raises(ValueError, match="only 0"):
        scoresde.inpaint(sde, score, x, torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="unknown inverse-problem method 'magic'"):
        scoresde.inpaint(sde, score, x, torch.ones(2), method="magic")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['num_particles'\]"):
        scoresde.inpaint(sde, score, x, torch.ones(2), num_particles=3)
    with pytest.raises(ValueError, match="C >= 2"):
        scoresde.colorize(sde, score, torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="num_particles"):
        scoresde.inpaint(sde, score, x, torch.ones(2), method="smc", num_particles=0)
    with pytest.raises(TypeError, match="mask must be a tensor"):
        scoresde.inpaint(sde, score, x, [1, 0])


def test_colorization_bias_and_smc_on_a_mixture_that_differs_in_colour() -> None:
    """Components 0.2 apart in grey and 4 std apart in colour; grey level 0.3614 makes the exact conditional
    (0.85, 0.15). Replacement ignores which component the grey value selects (measured 0.63 with 200 steps), SMC
    does not."""
    gm = GaussianMixture([0.5, 0.5], [[1.0, 0.2, -0.6], [-1.0, 0.4, 0.0]], [0.5, 0.5])
    exact = gm.condition(torch.full((1, 3), 1.0 / 3.0, dtype=torch.float64), torch.tensor([0.3614]))
    sde = VPSDE(N=100)
    gray = torch.full((300, 3), 0.3614, dtype=torch.float64)
    rep = scoresde.colorize(sde, gm.score_fn(sde), gray, corrector="none", dtype=torch.float64,
                            generator=torch.Generator().manual_seed(0))
    smc = scoresde.colorize(sde, gm.score_fn(sde), gray, method="smc", num_particles=16, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(0))
    assert float(exact.component_fractions(rep)[0]) < 0.72
    assert abs(float(exact.component_fractions(smc)[0]) - 0.85) < 0.06


@pytest.mark.parametrize("method", ["replacement", "repaint", "smc"])
def test_phase_space_colorization_of_images(method: str) -> None:
    """Image-shaped data (B, 3, 2, 2) on PSLD: the rotation acts on the position and momentum blocks alike, the grey
    value comes back exactly."""
    g = torch.Generator().manual_seed(0)
    gm = GaussianMixture([0.5, 0.5], torch.randn(2, 12, generator=g, dtype=torch.float64), [0.5, 0.7])
    sde = PSLD(N=10)
    pm = PhaseSpaceMixture(gm, sde)

    def score(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # states (B, 6, 2, 2) flatten to [x (12), m (12)]
        return pm.score(z.reshape(z.shape[0], -1), t).reshape(z.shape)

    gray = torch.rand(2, 1, 2, 2, generator=g, dtype=torch.float64).expand(2, 3, 2, 2)
    options = {"repaint": {"jump_length": 2, "resamplings": 2}, "smc": {"num_particles": 3}}.get(method, {})
    x = scoresde.colorize(sde, score, gray, method=method, dtype=torch.float64, generator=g, **options)
    assert x.shape == (2, 3, 2, 2) and torch.isfinite(x).all()
    torch.testing.assert_close(x.mean(1), gray[:, 0], rtol=0, atol=1e-12)


def test_linear_kernel_bridge() -> None:
    """``z_s | z_t, data``: the DDPM posterior in closed form for VP; for PSLD against a regression of simulated
    forward pairs ``z_s ~ N(Phi_s z_0, Sigma_s)``, ``z_t = Psi z_s + N(0, V)``."""
    t, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64)
    vp = VPSDE()
    phi_t, phi_s, gain, post = LinearKernel(vp).bridge(t, s)
    a = vp.alpha(t) / vp.alpha(s)
    torch.testing.assert_close(phi_t[0, 0], vp.alpha(t))
    torch.testing.assert_close(gain[0, 0], vp.sigma(s) ** 2 * a / vp.sigma(t) ** 2)
    torch.testing.assert_close(post[0, 0], vp.sigma(s) ** 2 * (vp.sigma(t) ** 2 - a**2 * vp.sigma(s) ** 2)
                               / vp.sigma(t) ** 2)
    psld = PSLD()
    k = LinearKernel(psld)
    phi_t, phi_s, gain, post = k.bridge(t, s)
    psi, v = k.transition(t, s)
    g = torch.Generator().manual_seed(0)
    n = 100000
    zs = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(k.cov(s)).T
    zt = zs @ psi.T + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(v).T
    slope = torch.linalg.lstsq(zt, zs).solution.T
    torch.testing.assert_close(slope, gain, atol=0.02, rtol=0.03)
    resid = zs - zt @ slope.T
    torch.testing.assert_close(resid.T @ resid / n, post, atol=5e-3, rtol=0.02)  # sampling std ~1e-3
    torch.testing.assert_close(phi_s, psld.transition(s[None])[0])
