"""The shared divergence engine on a random linear map with a known trace: exact, Hutchinson (Rademacher and
Gaussian, many probes) and forward mode agree; the weighted trace; the old names of both APIs."""

from __future__ import annotations

import math

import pytest
import torch

from scoresde.numerics import (
    ESTIMATORS,
    check_eps,
    divergence,
    draw_probes,
    draw_times,
    estimator_name,
    example_generators,
    sample_seed,
)

F64 = torch.float64
B, D = 4, 6


@pytest.fixture(scope="module")
def linear():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(B, D, D, generator=g, dtype=F64)  # one matrix per example
    x = torch.randn(B, D, generator=g, dtype=F64)

    def fn(z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bij,bj->bi", A, z)
    return A, x, fn


def test_exact_reverse_and_forward_give_the_trace(linear) -> None:
    A, x, fn = linear
    trace = torch.diagonal(A, dim1=-2, dim2=-1).sum(-1)
    for ad in ("reverse", "forward"):
        xr = x.clone().requires_grad_(True)
        div, out = divergence(fn, xr, None, "exact", ad=ad)
        torch.testing.assert_close(div, trace, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out, fn(x))
    w = torch.rand(B, D, generator=torch.Generator().manual_seed(1), dtype=F64)
    w[:, 2] = 0.0  # a coordinate without weight is skipped in reverse mode
    for ad in ("reverse", "forward"):
        div, _ = divergence(fn, x.clone().requires_grad_(True), None, "exact", ad=ad, weight=w)
        torch.testing.assert_close(div, (torch.diagonal(A, dim1=-2, dim2=-1) * w).sum(-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("estimator", ["hutchinson-rademacher", "hutchinson-gaussian", "hutchinson"])
def test_hutchinson_with_many_probes_is_unbiased_and_forward_mode_equals_reverse(linear, estimator) -> None:
    A, x, fn = linear
    trace = torch.diagonal(A, dim1=-2, dim2=-1).sum(-1)
    P = 1000
    probes = draw_probes(x, estimator, P, torch.Generator().manual_seed(2))
    assert probes.shape == (P, B, D)
    if estimator == "hutchinson-rademacher":
        assert set(probes.unique().tolist()) == {-1.0, 1.0}
    xr = x.clone().requires_grad_(True)
    rev, _ = divergence(fn, xr, fn(xr), estimator, probes, "reverse", create_graph=False)
    fwd, _ = divergence(fn, x, None, estimator, probes, "forward")
    torch.testing.assert_close(fwd, rev, rtol=1e-10, atol=1e-10)
    # Var(v^T A v) is 2 sum_{i != j} A_ij^2 (Rademacher, symmetrised) or 2 ||A_sym||_F^2 (Gaussian)
    sym = 0.5 * (A + A.transpose(-1, -2))
    var = 2 * (sym.square().sum((-1, -2)) - (torch.diagonal(sym, dim1=-2, dim2=-1).square().sum(-1)
                                               if estimator == "hutchinson-rademacher" else 0))
    se = (var / P).sqrt()
    assert ((rev - trace).abs() < 4 * se).all(), (rev - trace, se)


def test_the_estimate_is_differentiable_in_both_modes(linear) -> None:
    A, x, _ = linear
    scale = torch.tensor(1.5, dtype=F64, requires_grad=True)

    def fn(z):
        return scale * torch.einsum("bij,bj->bi", A, z)

    probes = draw_probes(x, "hutchinson-gaussian", 3, torch.Generator().manual_seed(3))
    grads = []
    for ad in ("reverse", "forward"):
        xr = x.clone().requires_grad_(True)
        div, _ = divergence(fn, xr, None, "hutchinson-gaussian", probes, ad)
        (g,) = torch.autograd.grad(div.sum(), scale)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0] != 0


def test_an_output_that_does_not_depend_on_x_has_zero_divergence() -> None:
    x = torch.randn(3, 2, dtype=F64, requires_grad=True)
    div, out = divergence(None, x, torch.zeros(3, 2, dtype=F64), "exact")
    assert torch.equal(div, torch.zeros(3, dtype=F64)) and torch.equal(out, torch.zeros(3, 2, dtype=F64))


def test_one_vocabulary() -> None:
    assert ESTIMATORS == ("hutchinson-rademacher", "hutchinson-gaussian", "exact")
    assert estimator_name("hutchinson") == "hutchinson-gaussian"  # the FP regulariser's historical name
    with pytest.raises(ValueError, match="unknown trace estimator 'hutchinson'; valid estimators are: hutchinson-r"):
        estimator_name("hutchinson", aliases=False, what="trace estimator")
    with pytest.raises(ValueError, match="reverse, forward"):
        divergence(None, torch.zeros(1, 1, requires_grad=True), None, "exact", ad="backward")
    with pytest.raises(ValueError, match="forward-mode divergence needs the map"):
        divergence(None, torch.zeros(1, 1), None, "exact", ad="forward")


def test_draw_times_is_the_reference_draw_and_check_eps_refuses_the_ends() -> None:
    class Sde:
        T = 2.0

    t = draw_times(5, Sde(), 1e-3, torch.Generator().manual_seed(4), dtype=F64)
    expected = torch.rand(5, generator=torch.Generator().manual_seed(4), dtype=F64) * (2.0 - 1e-3) + 1e-3
    assert torch.equal(t, expected)
    for eps in (0.0, 2.0, -1.0):
        with pytest.raises(ValueError, match=r"eps must lie in \(0, T=2.0\)"):
            check_eps(eps, Sde())


def test_example_generators_follow_sample_seed() -> None:
    gens = example_generators(3, [0, 5])
    assert torch.equal(torch.rand(2, generator=gens[1]),
                       torch.rand(2, generator=torch.Generator().manual_seed(sample_seed(3, 5))))
    assert sample_seed(3, 5) != sample_seed(3, 6) and math.isfinite(sample_seed(0, 0))
