"""Feature statistics: streaming float64 mean/covariance and reference-statistics files with a content hash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scoresde.metrics import FeatureStats, StatsAccumulator, load_reference_stats, save_reference_stats


def test_streaming_statistics_equal_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((257, 9)) * 1e-3 + 1e3  # large mean, small spread: the cancellation-prone case
    acc = StatsAccumulator()
    for chunk in np.array_split(x, [1, 50, 51, 200]):
        acc.update(torch.tensor(chunk, dtype=torch.float64))
    stats = acc.stats()
    assert stats.num == 257
    np.testing.assert_allclose(stats.mu, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(stats.sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-15)
    whole = FeatureStats.from_features(x)
    np.testing.assert_allclose(whole.sigma, stats.sigma, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.from_features(x[:1])
    with pytest.raises(ValueError, match="dimension changed"):
        acc.update(x[:, :3])


def test_reference_stats_round_trip_and_hash(tmp_path):
    rng = np.random.default_rng(1)
    stats = FeatureStats.from_features(rng.standard_normal((30, 4)), dataset="toy", split="train")
    path = tmp_path / "ref" / "stats.npz"
    digest = save_reference_stats(path, stats)
    loaded, digest2 = load_reference_stats(path)
    assert digest2 == digest == stats.content_hash() and len(digest) == 64
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.num == 30 and loaded.meta == {"dataset": "toy", "split": "train"}
    with np.load(path) as f:
        tampered = dict(f)
    tampered["mu"] = tampered["mu"] + 1e-12
    np.savez(tmp_path / "bad.npz", **tampered)
    with pytest.raises(ValueError, match="hash mismatch"):
        load_reference_stats(tmp_path / "bad.npz")
    np.savez(tmp_path / "plain.npz", mu=stats.mu, sigma=stats.sigma)  # pytorch-fid style: no hash, no count
    plain, plain_digest = load_reference_stats(tmp_path / "plain.npz")
    assert plain.num == 0 and plain_digest != digest
    with_feats = FeatureStats.from_features(rng.standard_normal((30, 4)), keep=True)
    save_reference_stats(tmp_path / "feats.npz", with_feats)
    loaded, _ = load_reference_stats(tmp_path / "feats.npz")
    assert loaded.features.dtype == np.float32 and loaded.features.shape == (30, 4)
    with np.load(tmp_path / "feats.npz") as f:
        tampered = dict(f)
    tampered["features"][0, 0] += 1
    np.savez(tmp_path / "bad_feats.npz", **tampered)
    with pytest.raises(ValueError, match="hash mismatch"):
        load_reference_stats(tmp_path / "bad_feats.npz")
    with pytest.raises(FileNotFoundError, match="fid-stats"):
        load_reference_stats(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"\.npz"):
        save_reference_stats(tmp_path / "stats.npy", stats)
