"""Access to the Score SDE reference fixtures in ``../shared/reference`` (see its README).

Tests that need them call :func:`require_reference`, which skips with a clear reason when the folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"


def require_reference(name: str) -> Path:
    """Return the path of fixture ``name``; skip the calling test if ``../shared/reference`` is missing."""
    path = REFERENCE_DIR / name
    if not path.exists():
        pytest.skip(f"reference fixture {path} not found (../shared/reference is absent on this machine)")
    return path


def load_reference(name: str) -> dict:
    """Load a fixture ``.pt`` file without executing code from it (``weights_only=True``)."""
    return torch.load(require_reference(name), map_location="cpu", weights_only=True)


def per_sample_close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> tuple[bool, float]:
    """The reference README §5 tolerance: ``max|a-b| <= rel * max(1, max|b|)`` for each batch element.

    Returns whether it holds and the worst ratio ``max|a-b| / max(1, max|b|)`` over the batch.
    """
    a = a.detach().to(torch.float64).flatten(1)
    b = b.detach().to(torch.float64).flatten(1)
    scale = b.abs().amax(dim=1).clamp_min(1.0)
    ratio = ((a - b).abs().amax(dim=1) / scale).max().item()
    return ratio <= rel, ratio


def assert_ulp_close(actual: torch.Tensor, expected: torch.Tensor, ulps: int = 4, what: str = "") -> None:
    """Equal dtype and values within ``ulps`` units in the last place of ``expected``.

    Tables built from ``exp``/``sqrt``/``cumprod`` reproduce the reference op for op, but the vectorised
    transcendental kernels of numpy and torch differ by an ulp between CPU generations (AVX2 vs AVX-512): the
    reference README's "bit-identical" holds on the machine that made the fixtures, not on every machine.
    A few ulps still catch any wrong formula, order or dtype.
    """
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    spacing = torch.finfo(expected.dtype).eps * expected.abs().clamp_min(torch.finfo(expected.dtype).tiny)
    worst = ((actual - expected).abs() / spacing).max().item()
    assert worst <= ulps, f"{what}: differs by {worst:.1f} ulp (allowed {ulps})"
