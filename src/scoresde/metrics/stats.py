"""Feature statistics (mean and covariance in float64) and reference-statistics files with a content hash."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class FeatureStats:
    """Mean ``mu`` (``(d,)``) and unbiased covariance ``sigma`` (``(d, d)``) of ``num`` feature vectors, float64;
    optionally the float32 ``features`` themselves (``(num, d)``, what KID needs) and free-form ``meta``."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int
    meta: dict[str, Any] = field(default_factory=dict)
    features: np.ndarray | None = None

    @classmethod
    def from_features(cls, feats: np.ndarray | torch.Tensor, keep: bool = False, **meta: Any) -> FeatureStats:
        """Statistics of a feature matrix ``(n, d)`` (mean and ``np.cov`` with ``n - 1``, both in float64); with
        ``keep`` the features are stored too (float32)."""
        acc = StatsAccumulator()
        acc.update(feats)
        kept = np.asarray(feats.cpu() if isinstance(feats, torch.Tensor) else feats, dtype=np.float32) if keep else None
        return acc.stats(kept, **meta)

    def content_hash(self) -> str:
        """SHA-256 of the values (``num``, then ``mu`` and ``sigma`` as little-endian float64, then the features as
        little-endian float32 if present), so equal statistics have equal hashes whatever file they came from."""
        h = hashlib.sha256()
        h.update(str(int(self.num)).encode())
        h.update(np.ascontiguousarray(self.mu, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(self.sigma, dtype="<f8").tobytes())
        if self.features is not None:
            h.update(np.ascontiguousarray(self.features, dtype="<f4").tobytes())
        return h.hexdigest()


class StatsAccumulator:
    """Streaming mean and covariance over batches, merged with Chan et al.'s (1979) pairwise update
    ``M2 = M2_a + M2_b + delta delta^T n_a n_b / n`` in float64 (no ``E[xx^T] - mu mu^T`` cancellation)."""

    def __init__(self) -> None:
        self.num = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, feats: np.ndarray | torch.Tensor) -> None:
        """Add a batch of feature vectors of shape ``(n, d)``."""
        if isinstance(feats, torch.Tensor):
            feats = feats.detach().cpu().double().numpy()
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"features must have shape (n >= 1, d), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or infinite values")
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        m2_b = centred.T @ centred
        if self.mean is None:
            self.num, self.mean, self.m2 = len(x), mean_b, m2_b
            return
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"feature dimension changed from {self.mean.shape[0]} to {x.shape[1]}")
        n_a, n_b = self.num, len(x)
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)
        self.num = n

    def stats(self, features: np.ndarray | None = None, **meta: Any) -> FeatureStats:
        """The accumulated :class:`FeatureStats` (needs at least two vectors for the covariance)."""
        if self.num < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {self.num}")
        return FeatureStats(self.mean.copy(), self.m2 / (self.num - 1), self.num, dict(meta), features)


def save_reference_stats(path: str | Path, stats: FeatureStats) -> str:
    """Write ``stats`` to an ``.npz`` (``mu``, ``sigma``, ``num``, ``sha256``, ``meta`` as JSON and ``features`` if
    present) atomically and return the content hash (:meth:`FeatureStats.content_hash`)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"reference statistics are written as .npz, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = stats.content_hash()
    tmp = path.with_name(path.name + ".tmp.npz")
    extra = {} if stats.features is None else {"features": np.asarray(stats.features, dtype=np.float32)}
    np.savez(tmp, mu=stats.mu, sigma=stats.sigma, num=np.int64(stats.num), sha256=np.str_(digest),
             meta=np.str_(json.dumps(stats.meta, sort_keys=True)), **extra)
    os.replace(tmp, path)
    return digest


def load_reference_stats(path: str | Path) -> tuple[FeatureStats, str]:
    """Read a file written by :func:`save_reference_stats` and check its hash; returns ``(stats, sha256)``.

    Files with only ``mu`` and ``sigma`` (pytorch-fid / TTUR style) are accepted; their hash is computed (with
    ``num = 0`` when unknown). A stored hash that does not match the values raises ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no reference statistics at {path}; compute them with `scoresde fid-stats`")
    with np.load(path, allow_pickle=False) as f:
        if "mu" not in f or "sigma" not in f:
            raise ValueError(f"{path} holds no 'mu'/'sigma' arrays (keys: {sorted(f.keys())})")
        num = int(f["num"]) if "num" in f else 0
        meta = json.loads(str(f["meta"])) if "meta" in f else {}
        features = f["features"] if "features" in f else None
        stats = FeatureStats(f["mu"].astype(np.float64), f["sigma"].astype(np.float64), num, meta, features)
        stored = str(f["sha256"]) if "sha256" in f else None
    digest = stats.content_hash()
    if stored is not None and stored != digest:
        raise ValueError(f"{path}: content hash mismatch (stored {stored[:12]}…, values give {digest[:12]}…); "
                         "the file is corrupt or was edited")
    return stats, digest
