"""Sample-quality scores computed from Inception features: FID, KID and the Inception Score.

All three work in float64 NumPy on features that were already extracted (see :mod:`scoresde.metrics.inception`),
so they are independent of the network and testable on hand-built inputs.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.special
import torch


class MeanStd(NamedTuple):
    """A score averaged over subsets or splits, with the standard deviation across them."""

    mean: float
    std: float


def _as_float64(x: np.ndarray | torch.Tensor, name: str, ndim: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
    *,
    offset: float = 1e-6,
    imag_tol: float = 1e-3,
) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (Heusel et al. 2017, FID; Dowson &
    Landau 1982): ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``.

    The matrix square root is scipy's ``sqrtm`` (as in TTUR, pytorch-fid and torch-fidelity). When the product is
    near singular (fewer samples than feature dimensions) and ``sqrtm`` returns non-finite values or an imaginary
    part larger than ``imag_tol``, it is recomputed on ``(sigma1 + offset I)(sigma2 + offset I)`` and a warning
    says so. A small imaginary part (rounding) is dropped.

    Args:
        mu1, mu2: mean feature vectors, shape ``(d,)``.
        sigma1, sigma2: feature covariances, shape ``(d, d)``.
        offset: diagonal offset used only when the plain product fails (1e-6 in TTUR/pytorch-fid).
        imag_tol: largest tolerated ``max |Im|`` of the square root's diagonal.

    Returns:
        The squared Fréchet distance (what is reported as FID), a Python float.
    """
    mu1, mu2 = _as_float64(mu1, "mu1", 1), _as_float64(mu2, "mu2", 1)
    sigma1, sigma2 = _as_float64(sigma1, "sigma1", 2), _as_float64(sigma2, "sigma2", 2)
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, "
                         f"sigma2 {sigma2.shape}")
    with warnings.catch_warnings():  # scipy warns on singular products; usability is checked right below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not _usable(covmean, imag_tol):
        warnings.warn(f"Fréchet distance: sqrtm of a near-singular product; adding {offset:g} to the covariance "
                      "diagonals", RuntimeWarning, stacklevel=2)
        eye = np.eye(d) * offset
        covmean = scipy.linalg.sqrtm((sigma1 + eye) @ (sigma2 + eye))
        if not _usable(covmean, imag_tol):
            raise FloatingPointError("Fréchet distance: the matrix square root is not real even with the offset "
                                     f"{offset:g}; max |Im| = {np.abs(np.imag(covmean)).max():.3g}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(np.real(covmean)))


def _usable(covmean: np.ndarray, imag_tol: float) -> bool:
    if not np.isfinite(covmean).all():
        return False
    return not (np.iscomplexobj(covmean) and np.abs(np.diagonal(covmean).imag).max() > imag_tol)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """Polynomial kernel matrix ``k(x, y) = (gamma <x, y> + coef0)^degree`` with ``gamma = 1/d`` by default
    (Bińkowski et al. 2018, KID)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased estimator of the squared MMD (Gretton et al. 2012, eq. 3) from kernel matrices of two sets of
    ``m`` points: off-diagonal means of ``k_xx`` and ``k_yy`` minus twice the mean of ``k_xy``."""
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.mean())


def kernel_inception_distance(
    feats1: np.ndarray | torch.Tensor,
    feats2: np.ndarray | torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    generator: np.random.Generator | int = 0,
) -> MeanStd:
    """Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD² with the polynomial kernel
    ``(<x, y>/d + 1)^3``, averaged over ``subsets`` random subsets of ``subset_size`` points drawn without
    replacement from each set (torch-fidelity's protocol and defaults).

    Args:
        feats1, feats2: feature sets of shape ``(n1, d)`` and ``(n2, d)`` (both at least ``subset_size``).
        subsets, subset_size: number and size of the subsets.
        degree, gamma, coef0: kernel parameters (``gamma=None`` means ``1/d``).
        generator: NumPy generator or integer seed for the subset draws (deterministic by default).

    Returns:
        ``MeanStd(mean, std)`` of the per-subset MMD² estimates.
    """
    x = _as_float64(feats1, "feats1", 2)
    y = _as_float64(feats2, "feats2", 2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    if subset_size > min(len(x), len(y)):
        raise ValueError(f"subset_size={subset_size} exceeds the smaller set ({min(len(x), len(y))} points); "
                         "lower it or provide more samples")
    rng = np.random.default_rng(generator)
    values = np.empty(subsets)
    for s in range(subsets):
        a = x[rng.choice(len(x), subset_size, replace=False)]
        b = y[rng.choice(len(y), subset_size, replace=False)]
        k_aa, k_bb, k_ab = (polynomial_kernel(u, v, degree, gamma, coef0) for u, v in ((a, a), (b, b), (a, b)))
        values[s] = mmd2_unbiased(k_aa, k_bb, k_ab)
    return MeanStd(float(values.mean()), float(values.std()))


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = 10) -> MeanStd:
    """Inception Score (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` with ``p(y|x) = softmax(logits)``
    and ``p(y)`` the mean prediction of a split, computed on ``splits`` consecutive splits with boundaries
    ``k n // splits`` (as torch-fidelity; samples are not shuffled, they are already i.i.d.).

    Args:
        logits: classifier logits of shape ``(n, classes)`` (torch-fidelity's ``logits_unbiased`` for Inception).
        splits: number of splits (10 in the literature).

    Returns:
        ``MeanStd(mean, std)`` over splits. Uniform predictions give 1; confident predictions spread evenly over
        ``C`` classes give ``C``.
    """
    z = _as_float64(logits, "logits", 2)
    if not 1 <= splits <= len(z):
        raise ValueError(f"splits must lie in [1, {len(z)}] (number of samples), got {splits}")
    log_p = z - scipy.special.logsumexp(z, axis=1, keepdims=True)
    n = len(log_p)
    scores = []
    for k in range(splits):
        part = log_p[k * n // splits:(k + 1) * n // splits]
        log_py = scipy.special.logsumexp(part, axis=0) - np.log(len(part))
        kl = (np.exp(part) * (part - log_py)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return MeanStd(float(np.mean(scores)), float(np.std(scores)))
