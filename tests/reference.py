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
