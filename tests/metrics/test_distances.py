"""FID, KID and IS against independent computations: a symmetric-eigenvalue Fréchet distance, a direct O(n²)
MMD² loop, hand-built logits with known Inception Scores, and torch-fidelity's own metric functions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from scoresde.metrics import distances, frechet_distance, inception_score, kernel_inception_distance


def _frechet_eigh(mu1, s1, mu2, s2):
    """``Tr (s1 s2)^(1/2) = Tr (s1^(1/2) s2 s1^(1/2))^(1/2)``: a symmetric PSD form through ``eigh`` only."""
    w, v = scipy.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = scipy.linalg.eigvalsh(root @ s2 @ root)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def _random_stats(rng, n, d, scale=1.0):
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * scale + rng.standard_normal(d)
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("n", [500, 40])  # 40 < d: rank-deficient covariances (the FID-on-few-samples case)
def test_frechet_matches_symmetric_eigen_form(n):
    rng = np.random.default_rng(0)
    d = 64
    mu1, s1 = _random_stats(rng, n, d)
    mu2, s2 = _random_stats(rng, n, d, scale=1.3)
    expected = _frechet_eigh(mu1, s1, mu2, s2)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_frechet_closed_forms_and_inputs():
    rng = np.random.default_rng(1)
    mu, s = _random_stats(rng, 300, 16)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-7)
    a, b = rng.uniform(0.5, 2.0, 16), rng.uniform(0.5, 2.0, 16)
    dmu = rng.standard_normal(16)
    expected = np.sum(dmu**2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # diagonal covariances commute
    got = frechet_distance(torch.tensor(dmu, dtype=torch.float32), np.diag(a), np.zeros(16),
                           torch.diag(torch.tensor(b)))
    assert got == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(mu, s, mu[:3], s)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu * np.nan, s, mu, s)


def test_frechet_offset_fallback(monkeypatch):
    """When sqrtm of the plain product is unusable, the product of the offset covariances is used (and said)."""
    rng = np.random.default_rng(2)
    mu1, s1 = _random_stats(rng, 20, 32)
    mu2, s2 = _random_stats(rng, 20, 32)
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def failing_first(a):
        calls.append(a)
        return real_sqrtm(a) * (np.nan if len(calls) == 1 else 1.0)

    monkeypatch.setattr(distances.scipy.linalg, "sqrtm", failing_first)
    offset = 1e-3
    with pytest.warns(RuntimeWarning, match="near-singular"):
        got = frechet_distance(mu1, s1, mu2, s2, offset=offset)
    eye = np.eye(32) * offset
    np.testing.assert_allclose(calls[1], (s1 + eye) @ (s2 + eye))
    expected = _frechet_eigh(mu1, s1 + eye, mu2, s2 + eye) - 2 * 32 * offset  # traces keep the plain covariances
    assert got == pytest.approx(expected, rel=1e-6)
    monkeypatch.setattr(distances.scipy.linalg, "sqrtm", lambda a: np.full(a.shape, np.nan))
    with pytest.raises(FloatingPointError, match="not real"), pytest.warns(RuntimeWarning):
        frechet_distance(mu1, s1, mu2, s2)


def _kid_loop(x, y, subsets, m, seed):
    rng = np.random.default_rng(seed)
    d = x.shape[1]

    def k(u, v):
        return (sum(ui * vi for ui, vi in zip(u, v, strict=True)) / d + 1.0) ** 3

    values = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / m**2
        values.append(xx + yy - 2 * xy)
    return np.mean(values), np.std(values)


def test_kid_matches_direct_loop():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 5))
    y = rng.standard_normal((35, 5)) * 1.2 + 0.3
    got = kernel_inception_distance(x, y, subsets=4, subset_size=12, generator=7)
    expected = _kid_loop(x, y, 4, 12, 7)
    assert got.mean == pytest.approx(expected[0], rel=1e-10)
    assert got.std == pytest.approx(expected[1], rel=1e-10)
    assert got == kernel_inception_distance(torch.tensor(x), torch.tensor(y), subsets=4, subset_size=12, generator=7)


def test_kid_sign_and_errors():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((300, 8)), rng.standard_normal((300, 8))
    same = kernel_inception_distance(x, y, subsets=20, subset_size=100)
    shifted = kernel_inception_distance(x, y + 1.0, subsets=20, subset_size=100)
    assert abs(same.mean) < 3 * same.std + 1e-3 and shifted.mean > 10 * abs(same.mean)
    with pytest.raises(ValueError, match="subset_size=400 exceeds"):
        kernel_inception_distance(x, y, subset_size=400)
    with pytest.raises(ValueError, match="dimensions differ"):
        kernel_inception_distance(x, y[:, :3], subset_size=10)


def test_inception_score_hand_built_logits():
    classes, splits = 7, 5
    uniform = np.zeros((70, classes))
    assert inception_score(uniform, splits) == pytest.approx((1.0, 0.0))
    confident = np.full((70, classes), -200.0)
    confident[np.arange(70), np.arange(70) % classes] = 200.0  # each split of 14 holds every class twice
    score = inception_score(torch.tensor(confident), splits)
    assert score.mean == pytest.approx(classes, rel=1e-9) and score.std == pytest.approx(0, abs=1e-9)
    one_class = np.full((70, classes), -200.0)
    one_class[:, 2] = 200.0  # confident but collapsed: p(y|x) = p(y)
    assert inception_score(one_class, splits).mean == pytest.approx(1.0)
    with pytest.raises(ValueError, match="splits"):
        inception_score(uniform, 71)


def test_metrics_agree_with_torch_fidelity():
    """Same numbers as torch-fidelity's own metric functions (IS without shuffling; KID on full-size subsets,
    where the subset order does not matter; FID from the same statistics)."""
    pytest.importorskip("torch_fidelity")
    from torch_fidelity.metric_fid import fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(5)
    logits = rng.standard_normal((103, 11)) * 3
    ref = isc_features_to_metric(torch.tensor(logits), splits=10, shuffle=False)
    assert inception_score(logits, 10) == pytest.approx(
        (ref["inception_score_mean"], ref["inception_score_std"]), rel=1e-10)
    x, y = rng.standard_normal((50, 6)), rng.standard_normal((50, 6)) + 0.2
    ref = kid_features_to_metric(torch.tensor(x), torch.tensor(y), kid_subsets=2, kid_subset_size=50,
                                 kid_kernel="poly", verbose=False, rng_seed=0)
    assert kernel_inception_distance(x, y, subsets=2, subset_size=50).mean == pytest.approx(
        ref["kernel_inception_distance_mean"], rel=1e-10)
    mu1, s1 = _random_stats(rng, 200, 10)
    mu2, s2 = _random_stats(rng, 200, 10)
    ref = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref["frechet_inception_distance"], rel=1e-8)
