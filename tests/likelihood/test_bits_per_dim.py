"""``bits_per_dim`` against a model whose density is known in closed form.

For a Gaussian data law with its exact score (``tests/likelihood/gaussian.py``) the model density ``q_eps`` is
closed-form, so ``bpd = -log q_eps(y) / (D ln 2) - log2(hi - lo) + bits`` with ``y = lo + (hi - lo) u`` and
``u = (k + 1/2) / 2^bits`` (midpoint), ``(k + delta) / 2^bits`` (uniform) or ``k / (2^bits - 1)`` (none) is known for
every data range, bit depth, dequantisation and input type.
"""

from __future__ import annotations

import math

import pytest
import torch

from scoresde import bits_per_dim
from scoresde.sdes import VESDE, VPSDE, SubVPSDE
from tests.likelihood.gaussian import GaussianLaw

EPS = 1e-5
TOL_BITS = 2e-4  # ODE error at rtol = atol = 1e-6, in bits/dim (measured < 2e-5)
SOLVE = dict(trace="exact", rtol=1e-6, atol=1e-6, eps=EPS, dtype=torch.float64)
LAWS = {(0.0, 1.0): GaussianLaw(mean=0.5, std=0.25), (-1.0, 1.0): GaussianLaw(mean=0.0, std=0.5)}


def levels(bits: int, seed: int = 0, batch: int = 6) -> torch.Tensor:
    """Integer pixel levels of a batch of 1x2x2 images, spread over the whole range (both ends included)."""
    k = torch.randint(0, 2**bits, (batch, 1, 2, 2), generator=torch.Generator().manual_seed(seed))
    k[0, 0, 0, 0], k[1, 0, 0, 0] = 0, 2**bits - 1
    return k


def expected_bpd(sde, law: GaussianLaw, u: torch.Tensor, data_range: tuple[float, float], bits: int) -> torch.Tensor:
    lo, hi = data_range
    y = lo + (hi - lo) * u
    D = u[0].numel()
    return -law.model_log_prob(sde, y, EPS) / (D * math.log(2)) - math.log2(hi - lo) + bits


@pytest.mark.parametrize("data_range", [(0.0, 1.0), (-1.0, 1.0)])
@pytest.mark.parametrize("bits", [8, 5])
@pytest.mark.parametrize("dequantization", ["midpoint", "none", "uniform"])
def test_bits_per_dim_of_a_closed_form_model(data_range, bits: int, dequantization: str) -> None:
    sde, law, k = VPSDE(), LAWS[data_range], levels(bits)
    n_probes = 3 if dequantization == "uniform" else 1
    bpd, info = bits_per_dim(sde, law.score_fn(sde), k, bits=bits, data_range=data_range,
                             dequantization=dequantization, n_probes=n_probes,
                             generator=torch.Generator().manual_seed(1), **SOLVE, return_info=True)
    kf = k.double()
    if dequantization == "midpoint":
        per_draw = expected_bpd(sde, law, (kf + 0.5) / 2**bits, data_range, bits)[None]
    elif dequantization == "none":
        per_draw = expected_bpd(sde, law, kf / (2**bits - 1), data_range, bits)[None]
    else:  # the same draws: one U[0, 1) per value and probe, probe-major, first from the generator
        delta = torch.rand((n_probes * k.shape[0], *k.shape[1:]), generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)
        u = (kf.repeat(n_probes, 1, 1, 1) + delta) / 2**bits
        per_draw = expected_bpd(sde, law, u, data_range, bits).reshape(n_probes, -1)
    torch.testing.assert_close(bpd, per_draw.mean(0), rtol=0, atol=TOL_BITS)
    if dequantization == "uniform":
        torch.testing.assert_close(info.stderr, per_draw.std(0) / math.sqrt(n_probes), rtol=0.01, atol=1e-5)
    else:
        assert torch.equal(info.stderr, torch.zeros_like(bpd))
    assert info.nfe > 0 and bpd.shape == (k.shape[0],)


@pytest.mark.parametrize(("data_range", "bits", "offset"),
                         [((0.0, 1.0), 8, 8.0), ((-1.0, 1.0), 8, 7.0), ((0.0, 1.0), 5, 5.0), ((-1.0, 1.0), 5, 4.0),
                          ((0.0, 255.0), 8, 8.0 - math.log2(255.0))])
def test_offset_between_bits_and_nats(data_range, bits: int, offset: float) -> None:
    """``bpd + log p(y) / (D ln 2)`` is the constant ``bits - log2(hi - lo)`` (7 for 8-bit data in [-1, 1])."""
    sde = VESDE()
    law = GaussianLaw(mean=sum(data_range) / 2, std=(data_range[1] - data_range[0]) / 4)
    bpd, info = bits_per_dim(sde, law.score_fn(sde), levels(bits), bits=bits, data_range=data_range,
                             dequantization="midpoint", **SOLVE, return_info=True)
    logp = info.prior_logp + info.delta_logp
    torch.testing.assert_close(bpd + logp / (4 * math.log(2)), torch.full_like(bpd, offset), rtol=0, atol=1e-12)


@pytest.mark.parametrize("sde_cls", [VESDE, VPSDE, SubVPSDE])
def test_every_sde_gives_the_closed_form(sde_cls) -> None:
    sde, law, k = sde_cls(), LAWS[(-1.0, 1.0)], levels(8, seed=2)
    bpd = bits_per_dim(sde, law.score_fn(sde), k, data_range=(-1.0, 1.0), dequantization="midpoint", **SOLVE)
    expected = expected_bpd(sde, law, (k.double() + 0.5) / 256, (-1.0, 1.0), 8)
    torch.testing.assert_close(bpd, expected, rtol=0, atol=TOL_BITS)


@pytest.mark.parametrize("bits", [8, 5])
def test_integer_and_float_inputs_agree(bits: int) -> None:
    sde, law = VPSDE(), LAWS[(0.0, 1.0)]
    k = levels(bits, seed=3)
    inputs = [k, k.double() / (2**bits - 1), k.float() / (2**bits - 1)]
    if bits == 8:
        inputs.append(k.to(torch.uint8))
    results = [bits_per_dim(sde, law.score_fn(sde), x, bits=bits, dequantization="midpoint", **SOLVE)
               for x in inputs]
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], rtol=0, atol=1e-12)


def test_default_float32_model_input_is_close() -> None:
    sde, law, k = VPSDE(), LAWS[(-1.0, 1.0)], levels(8, seed=4)
    bpd = bits_per_dim(sde, law.score_fn(sde), k, data_range=(-1.0, 1.0), dequantization="midpoint",
                          trace="exact")
    assert bpd.dtype == torch.float32
    expected = expected_bpd(sde, law, (k.double() + 0.5) / 256, (-1.0, 1.0), 8)
    torch.testing.assert_close(bpd.double(), expected, rtol=0, atol=2e-3)


@pytest.mark.parametrize(
    ("trace", "dequantization", "n_probes", "kind"),
    [
        ("exact", "midpoint", 1, "zero"),
        ("exact", "none", 1, "zero"),
        ("exact", "uniform", 1, "nan"),
        ("hutchinson-rademacher", "midpoint", 1, "nan"),
        ("hutchinson-gaussian", "none", 1, "nan"),
        ("hutchinson-rademacher", "uniform", 2, "positive"),
        ("exact", "uniform", 2, "positive"),
    ],
)
def test_stderr_reflects_the_randomness(trace: str, dequantization: str, n_probes: int, kind: str) -> None:
    sde, law = VPSDE(), LAWS[(0.0, 1.0)]
    _, info = bits_per_dim(sde, law.score_fn(sde), levels(8, seed=5), dequantization=dequantization, trace=trace,
                           n_probes=n_probes, generator=torch.Generator().manual_seed(6), rtol=1e-4, atol=1e-4,
                               return_info=True)
    if kind == "zero":
        assert torch.equal(info.stderr, torch.zeros_like(info.stderr))
    elif kind == "nan":
        assert torch.isnan(info.stderr).all()
    else:
        assert torch.isfinite(info.stderr).all() and (info.stderr > 0).all()
    assert info.prior_logp.shape == info.delta_logp.shape == (6,) and info.latent.shape == (6, 1, 2, 2)


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (None, {"dequantization": "gaussian"}, r"unknown dequantization 'gaussian'; valid values are: uniform"),
        (None, {"bits": 0}, "bits must be a positive integer, got 0"),
        (None, {"bits": 2.5}, "bits must be a positive integer, got 2.5"),
        (None, {"data_range": (1.0, 0.0)}, r"hi > lo, got \(1.0, 0.0\)"),
        (None, {"data_range": (0.0, 0.0)}, r"hi > lo, got \(0.0, 0.0\)"),
        (None, {"n_probes": 0}, "n_probes must be a positive integer, got 0"),
        (None, {"trace": "hutch"}, "unknown trace estimator 'hutch'"),
        (torch.tensor([[0, 256]]), {}, r"levels must lie in \[0, 255\] for bits=8, got \[0, 256\]"),
        (torch.tensor([[-1, 3]]), {}, r"levels must lie in \[0, 255\] for bits=8, got \[-1, 3\]"),
        (torch.tensor([[0, 40]]), {"bits": 5}, r"levels must lie in \[0, 31\] for bits=5, got \[0, 40\]"),
        (torch.tensor([[0.0, 1.2]]), {}, r"levels must lie in \[0, 255\] for bits=8, got \[0, 306\]"),
        (torch.tensor([[0.0, 0.5 / 255]]), {}, r"levels k/255 in \[0, 1\] \(a value is 0.5 levels off"),
        (torch.tensor([[0.3, 0.7]]), {}, "pass the integer pixel values instead"),
        (torch.tensor([[0.0, float("nan")]]), {}, r"x has a non-finite entry nan at index \(0, 1\); it must be finite"),
    ],
)
def test_bad_inputs_are_refused(x, kwargs: dict, match: str) -> None:
    sde, law = VPSDE(), LAWS[(0.0, 1.0)]
    x = torch.tensor([[0, 255]]) if x is None else x
    with pytest.raises(ValueError, match=match):
        bits_per_dim(sde, law.score_fn(sde), x, **kwargs, return_info=True)
