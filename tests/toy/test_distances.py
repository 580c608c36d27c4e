"""The two-sample distances measure what they claim: zero on identical sets, symmetric, closed forms on Gaussians.

Energy distance of ``N(0, 1)`` and ``N(m, 1)``: ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with ``X - Y ~ N(-m, 2)``,
``E|N(mu, s^2)| = s sqrt(2/pi) exp(-mu^2 / 2 s^2) + mu (1 - 2 Phi(-mu / s))`` and ``E|X - X'| = 2 / sqrt(pi)``.
Sliced W2 of ``N(0, I)`` and ``N(m, I)`` in ``d`` dimensions: ``W2`` of a projection is ``|theta . m|``, so
``SW2 = (E (theta . m)^2)^(1/2) = |m| / sqrt(d)`` (``|m|`` in 1-D).
"""

from __future__ import annotations

import math

import pytest
import torch

from scoresde.toy import GaussianMixture, energy_distance, sliced_wasserstein


def normal(n: int, seed: int, d: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def expected_abs(mu: float, s: float) -> float:
    """``E|Z|`` for ``Z ~ N(mu, s^2)`` (the folded normal mean)."""
    phi = 0.5 * (1 + math.erf(-mu / s / math.sqrt(2)))
    return s * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * s**2)) + mu * (1 - 2 * phi)


def test_energy_distance_of_a_set_with_itself_is_zero_and_symmetric() -> None:
    gm = GaussianMixture.example_2d()
    x = gm.sample(500, torch.Generator().manual_seed(0))
    y = gm.sample(700, torch.Generator().manual_seed(1))
    assert abs(energy_distance(x, x)) < 1e-12
    assert abs(energy_distance(x, x.clone().float())) < 1e-6  # float32 copy: only rounding
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-10)
    assert energy_distance(x, y) > 0


def test_energy_distance_detects_a_shift() -> None:
    gm = GaussianMixture.example_2d()
    g = torch.Generator().manual_seed(2)
    ref, same = gm.sample(1000, g), gm.sample(1000, g)
    baseline = energy_distance(same, ref)
    shifted = gm.sample(1000, g) + torch.tensor([0.3, 0.0], dtype=torch.float64)
    assert energy_distance(shifted, ref) > 10 * baseline


@pytest.mark.parametrize("m", [0.5, 1.0, 2.0])
def test_energy_distance_of_two_gaussians_matches_the_closed_form(m: float) -> None:
    n, reps = 2000, 8
    exact = 2 * expected_abs(m, math.sqrt(2)) - 4 / math.sqrt(math.pi)
    # The V-statistic counts the n zero diagonal terms: E|X - X'| is underestimated by a factor (1 - 1/n).
    v_bias = 4 / math.sqrt(math.pi) / n
    estimate = sum(energy_distance(normal(n, 2 * r), normal(n, 2 * r + 1) + m) for r in range(reps)) / reps
    # Sampling error of one estimate: O(1/sqrt(n)), growing with m (std 0.017 at m=0.5, 0.056 at m=2 for n=2000).
    assert estimate == pytest.approx(exact + v_bias, abs=4 * (0.01 + 0.025 * m) / math.sqrt(reps))


@pytest.mark.parametrize("m", [0.5, -1.0, 2.0])
def test_sliced_wasserstein_of_shifted_1d_gaussians_is_the_shift(m: float) -> None:
    x, y = normal(20_000, 5), normal(20_000, 6) + m
    assert sliced_wasserstein(x, y, n_projections=8) == pytest.approx(abs(m), abs=0.03)
    # Unequal sizes go through the quantile interpolation.
    assert sliced_wasserstein(x, y[:15_000], n_projections=8) == pytest.approx(abs(m), abs=0.03)


def test_sliced_wasserstein_in_several_dimensions() -> None:
    d = 3
    m = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x, y = normal(5000, 7, d), normal(5000, 8, d) + m
    g = torch.Generator().manual_seed(0)
    sw = sliced_wasserstein(x, y, n_projections=500, generator=g)
    # Projection noise: cos^2 of a random direction has relative std 0.89 in 3-D, /sqrt(500), halved by the root.
    assert sw == pytest.approx(float(m.norm()) / math.sqrt(d), rel=0.08)


def test_sliced_wasserstein_basic_properties() -> None:
    x, y = normal(1000, 9, 2), normal(800, 10, 2)
    assert sliced_wasserstein(x, x) == 0.0
    a = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(1))
    b = sliced_wasserstein(y, x, generator=torch.Generator().manual_seed(1))
    assert a == pytest.approx(b, rel=1e-12)
    assert sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(1)) == a  # reproducible
    # Scale equivariance: W2 of (c X, c Y) is c W2(X, Y).
    c = sliced_wasserstein(3 * x, 3 * y, generator=torch.Generator().manual_seed(1))
    assert c == pytest.approx(3 * a, rel=1e-10)


@pytest.mark.parametrize("distance", [energy_distance, sliced_wasserstein])
def test_distances_refuse_mismatched_or_empty_sets(distance) -> None:
    with pytest.raises(ValueError, match="different dimensions: 2 and 3"):
        distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="non-empty"):
        distance(torch.zeros(0, 2), torch.zeros(5, 2))


def test_sliced_wasserstein_refuses_bad_projection_count() -> None:
    with pytest.raises(ValueError, match="n_projections must be a positive integer, got 0"):
        sliced_wasserstein(torch.zeros(5, 2), torch.zeros(5, 2), n_projections=0)
