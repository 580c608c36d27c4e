"""The toy MLP: shapes, time conditioning, and a clear error for the wrong input shape."""

from __future__ import annotations

import math

import pytest
import torch

from scoresde.nets.toy import ToyMLP, sinusoidal_time_embedding


def test_time_embedding_values() -> None:
    labels = torch.tensor([0.0, 500.0])
    emb = sinusoidal_time_embedding(labels, 8, max_period=1000.0)
    freqs = torch.tensor([1.0, 0.1, 0.01, 0.001])
    torch.testing.assert_close(emb[1], torch.cat([torch.sin(500 * freqs), torch.cos(500 * freqs)]), rtol=0, atol=1e-4)
    assert emb[0, :4].abs().max() == 0 and torch.equal(emb[0, 4:], torch.ones(4))
    assert math.isclose(float(emb[1, 3]), math.sin(0.5), rel_tol=1e-5)


def test_toy_mlp_depends_on_time_and_checks_shape() -> None:
    torch.manual_seed(0)
    net = ToyMLP(dim=3, hidden=16, depth=2)
    x = torch.randn(5, 3)
    a, b = net(x, torch.full((5,), 100.0)), net(x, torch.full((5,), 900.0))
    assert a.shape == (5, 3) and (a - b).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"expects inputs of shape \(B, 3\), got \(5, 2\)"):
        net(torch.randn(5, 2), torch.zeros(5))
    with pytest.raises(ValueError, match="even number >= 4, got 5"):
        sinusoidal_time_embedding(torch.zeros(2), 5)
