"""The entry point :func:`scoresde.solve_inverse`: both call forms, ``inpaint``/``colorize`` as thin calls of it (bit
for bit), shapes inferred from ``y``, a noiseless measurement met exactly, and one clear line for bad input."""

from __future__ import annotations

import pytest
import torch

import scoresde
from scoresde.inverse import INVERSE_METHODS, Blur, Dense, Downsample, Grey, Mask, gaussian_kernel
from scoresde.sdes import VPSDE
from scoresde.toy import GaussianMixture


def image_mixture(shape=(3, 2, 2)) -> GaussianMixture:
    d = int(torch.tensor(shape).prod())
    g = torch.Generator().manual_seed(0)
    return GaussianMixture([0.6, 0.4], torch.randn(2, d, generator=g, dtype=torch.float64), [0.5, 0.7])


def test_inpaint_and_colorize_are_solve_inverse_with_mask_and_grey() -> None:
    sde = VPSDE(N=30)
    gm = image_mixture()
    x = gm.sample(2, torch.Generator().manual_seed(1)).reshape(2, 3, 2, 2)
    mask = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    mask[..., 0, :] = 1.0
    for method, options in (("replacement", {}), ("smc", {"num_particles": 3}),
                            ("repaint", {"jump_length": 2, "resamplings": 2})):
        gen = torch.Generator
        a = scoresde.inpaint(sde, gm.score_fn(sde), x, mask, method=method, dtype=torch.float64,
                             generator=gen().manual_seed(2), **options)
        b = scoresde.solve_inverse(sde, gm.score_fn(sde), Mask(mask[0].expand(3, 2, 2)), x * mask, method=method,
                                   dtype=torch.float64, generator=gen().manual_seed(2), **options)
        assert torch.equal(a, b), method
        grey = x.mean(1, keepdim=True)
        c = scoresde.colorize(sde, gm.score_fn(sde), grey.expand(2, 3, 2, 2), method=method, dtype=torch.float64,
                              generator=gen().manual_seed(3), **options)
        d = scoresde.solve_inverse(sde, gm.score_fn(sde), Grey(), grey, method=method, dtype=torch.float64,
                                   generator=gen().manual_seed(3), **options)
        assert torch.equal(c, d), method
        torch.testing.assert_close(d.mean(1, keepdim=True), grey, atol=1e-12, rtol=0)


def test_model_first_form_shapes_and_noiseless_consistency() -> None:
    sde = VPSDE(N=30)
    gm = image_mixture((1, 4, 4))
    model = scoresde.as_model(sde, gm.score_fn(sde))
    x = gm.sample(3, torch.Generator().manual_seed(0)).reshape(3, 1, 4, 4)
    for A in (Downsample(2), Blur(gaussian_kernel(3, 0.7)),
              Dense(torch.randn(5, 16, generator=torch.Generator().manual_seed(1)), in_shape=(1, 4, 4))):
        A = A.bind((1, 4, 4))
        y = A(x)
        out, info = scoresde.solve_inverse(model, A, y, num_particles=2, dtype=torch.float64, return_info=True,
                                           generator=torch.Generator().manual_seed(0))
        assert out.shape == (3, 1, 4, 4) and info.method == "smc" and info.nfe == 31
        torch.testing.assert_close(A(out), y, atol=1e-9, rtol=0)  # noiseless: A x = y exactly
        noisy = scoresde.solve_inverse(model, A, y, sigma_y=0.05, method="smc", num_particles=2,
                                       generator=torch.Generator().manual_seed(0))
        assert noisy.shape == (3, 1, 4, 4) and noisy.dtype == torch.float32 and torch.isfinite(noisy).all()
    y = Downsample(2).bind((1, 4, 4))(x)
    shaped = scoresde.solve_inverse(model, Downsample(2), y, method="projection", dtype=torch.float64,
                                    generator=torch.Generator().manual_seed(0))  # shape inferred from y
    assert shaped.shape == (3, 1, 4, 4)
    assert "projection" in INVERSE_METHODS and INVERSE_METHODS.get("smc").options()["num_particles"] == 16


def test_bad_input_is_one_clear_line() -> None:
    sde = VPSDE(N=10)
    gm = image_mixture((4,))
    score = gm.score_fn(sde)
    A = Dense(torch.ones(2, 4))
    with pytest.raises(TypeError, match=r"operator must be a scoresde\.inverse\.LinearOperator"):
        scoresde.solve_inverse(sde, score, torch.ones(2, 4), torch.ones(3, 2))
    with pytest.raises(ValueError, match="sigma_y must be a finite number >= 0"):
        scoresde.solve_inverse(sde, score, A, torch.ones(3, 2), sigma_y=-0.1)
    with pytest.raises(ValueError, match=r"y has rows of shape \(3,\)"):
        scoresde.solve_inverse(sde, score, A, torch.ones(3, 3))
    with pytest.raises(ValueError, match="non-finite"):
        scoresde.solve_inverse(sde, score, A, torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="method 'replacement' assumes a noiseless measurement"):
        scoresde.solve_inverse(sde, score, A, torch.ones(3, 2), sigma_y=0.1, method="replacement")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['jump_length'\] for inverse-problem method 'smc'"):
        scoresde.solve_inverse(sde, score, A, torch.ones(3, 2), jump_length=3)
    with pytest.raises(ValueError, match="unknown inverse-problem method 'magic'"):
        scoresde.solve_inverse(sde, score, A, torch.ones(3, 2), method="magic")
    with pytest.raises(ValueError, match="batch dimension first"):
        scoresde.solve_inverse(sde, score, A, torch.ones(2))
