"""Every entry point takes both call forms through the one normaliser (``models.adapter.model_and_arguments``):
``f(sde, score_fn, ...)`` with a plain score function and ``f(model, ...)`` with a model adapter give the same numbers
bit for bit, and a value given both positionally and by keyword is refused in one line."""

from __future__ import annotations

import pytest
import torch

import scoresde
from scoresde.models import as_model
from scoresde.models.adapter import model_and_arguments
from scoresde.sdes import VPSDE
from scoresde.toy import GaussianMixture

GM = GaussianMixture.example_2d()
F64 = torch.float64


def _forms():
    sde = VPSDE(N=20)
    score = GM.score_fn(sde)
    return sde, score, as_model(sde, score)


def _g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_sample_log_likelihood_bits_per_dim_and_encode_agree_in_both_forms() -> None:
    sde, score, model = _forms()
    x = GM.sample(4, _g())
    a = scoresde.sample(sde, score, (4, 2), "ddim", steps=5, generator=_g(), dtype=F64)
    b = scoresde.sample(model, (4, 2), "ddim", steps=5, generator=_g(), dtype=F64)
    c = scoresde.sample(model, (4, 2), sampler="ddim", steps=5, generator=_g(), dtype=F64)
    assert torch.equal(a, b) and torch.equal(a, c)
    lla = scoresde.log_likelihood(sde, score, x, trace="exact")
    llb, info = scoresde.log_likelihood(model, x, trace="exact", return_info=True)
    assert isinstance(lla, torch.Tensor) and lla.shape == (4,) and torch.equal(lla, llb) and info.nfe > 0
    assert torch.equal(scoresde.log_likelihood(model, x=x, trace="exact"), lla)
    k = torch.randint(0, 256, (3, 2), generator=_g())
    bpa = scoresde.bits_per_dim(sde, score, k, dequantization="midpoint", trace="exact", dtype=F64)
    bpb = scoresde.bits_per_dim(model, k, dequantization="midpoint", trace="exact", dtype=F64)
    assert bpa.shape == (3,) and torch.equal(bpa, bpb)
    assert torch.equal(scoresde.encode(sde, score, x), scoresde.encode(model, x))


def test_inpaint_and_colorize_agree_in_both_forms() -> None:
    sde = VPSDE(N=100)  # the replacement method's Langevin corrector needs beta_max / N < 1
    score = GM.score_fn(sde)
    x = GM.sample(4, _g()).reshape(4, 2, 1, 1)
    mask = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1)
    img_score = lambda z, t: score(z.reshape(-1, 2), t).reshape(z.shape)  # noqa: E731
    img_model = as_model(sde, img_score)
    a = scoresde.inpaint(sde, img_score, x, mask, generator=_g(), dtype=F64)
    b = scoresde.inpaint(img_model, x, mask, generator=_g(), dtype=F64)
    c = scoresde.inpaint(img_model, x, mask=mask, generator=_g(), dtype=F64)
    assert torch.equal(a, b) and torch.equal(a, c)
    rgb = torch.rand(2, 3, 2, 2, generator=_g(), dtype=F64)
    gray = rgb.mean(1, keepdim=True).expand(-1, 3, -1, -1)  # the grey channel repeated, as colorize takes it
    rgb_model = as_model(sde, lambda z, t: -z)
    assert torch.equal(scoresde.colorize(sde, lambda z, t: -z, gray, generator=_g(), dtype=F64),
                       scoresde.colorize(rgb_model, gray, generator=_g(), dtype=F64))


def test_the_normaliser_shifts_the_model_first_form_and_refuses_a_value_given_twice() -> None:
    sde, score, model = _forms()
    # f(sde, score_fn, a1, a2) called as f(model, ...): Python bound a1 to score_fn, a2 to a1's slot
    assert model_and_arguments(model, "x", None, None)[1] == ("x", None)  # f(model, x)
    assert model_and_arguments(model, "x", None, "m")[1] == ("x", "m")  # f(model, x, a2=m)
    assert model_and_arguments(model, "x", "m", None)[1] == ("x", "m")  # f(model, x, m)
    assert model_and_arguments(model, None, "x", "m")[1] == ("x", "m")  # f(model, a1=x, a2=m)
    with pytest.raises(TypeError, match="given twice"):
        model_and_arguments(model, "x", "m", "y")  # f(model, x, m, a2=y)
    got, args = model_and_arguments(sde, score, "x")
    assert got.sde is sde and args == ("x",)
    with pytest.raises(TypeError, match=r"given twice: positionally \('ddim'\) and by keyword \('ode'\)"):
        scoresde.sample(model, (2, 2), "ddim", sampler="ode")
