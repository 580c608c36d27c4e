"""The exact noisy classifier ``log p_t(y = k | x_t)`` of a labelled Gaussian mixture (class = component), written
independently of :mod:`scoresde.toy` with ``torch.distributions``: under a linear SDE each component stays Gaussian, so
Bayes' rule on the perturbed components is exact.

* scalar SDEs: ``x_t | k ~ N(alpha mu_k, alpha^2 S_k + sigma^2 I)``;
* phase-space SDEs (state ``z = [x, m]``, coordinates ordered block by block): ``z_0 | k ~ N([mu_k, 0], diag(S_k, 0) +
  Sigma_0 (x) I)``, ``z_t | k ~ N((Phi (x) I) m_k, (Phi (x) I) C_k (Phi (x) I)^T + noise_cov (x) I)``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from scoresde.toy import GaussianMixture


def _posterior(log_w: Tensor, means: Tensor, covs: Tensor, x: Tensor) -> Tensor:
    """``log_softmax_k(log w_k + log N(x_b; means[b, k], covs[b, k]))`` for per-example moments."""
    logp = MultivariateNormal(means, covariance_matrix=covs).log_prob(x[:, None, :])  # (B, K)
    return torch.log_softmax(log_w[None] + logp, dim=1)


def exact_log_posterior(mixture: GaussianMixture, sde, x: Tensor, t: Tensor) -> Tensor:
    """``log p_t(k | x_t)``, shape ``(B, K)``, for a scalar SDE (``sde.alpha``, ``sde.sigma``) or a phase-space one
    (``sde.transition``, ``sde.noise_cov``, ``sde.initial_cov``); ``x`` is ``(B, d)`` or the state ``(B, k d)``."""
    x, t = x.double(), t.double()
    means, covs, d = mixture.means.double(), mixture.covs.double(), mixture.dim
    log_w = torch.log(mixture.weights.double())
    if hasattr(sde, "alpha"):
        a, s = sde.alpha(t)[:, None, None], sde.sigma(t)[:, None, None]
        m = a * means[None]
        c = a[..., None] ** 2 * covs[None] + s[..., None] ** 2 * torch.eye(d, dtype=torch.float64)
        return _posterior(log_w, m, c, x)
    k = sde.k
    eye = torch.eye(d, dtype=torch.float64)
    e1 = torch.zeros(k, k, dtype=torch.float64)
    e1[0, 0] = 1.0
    c0 = torch.stack([torch.kron(e1, S) + torch.kron(sde.initial_cov.double(), eye) for S in covs])  # (K, kd, kd)
    m0 = torch.cat([means, torch.zeros(means.shape[0], (k - 1) * d, dtype=torch.float64)], dim=1)  # (K, kd)
    phi = torch.stack([torch.kron(p, eye) for p in sde.transition(t).double()])  # (B, kd, kd)
    noise = torch.stack([torch.kron(q, eye) for q in sde.noise_cov(t).double()])
    m = torch.einsum("bij,kj->bki", phi, m0)
    c = phi[:, None] @ c0[None] @ phi[:, None].transpose(-1, -2) + noise[:, None]
    return _posterior(log_w, m, 0.5 * (c + c.transpose(-1, -2)), x)


def mean_kl(log_p: Tensor, log_q: Tensor) -> float:
    """Mean over rows of ``KL(p || q) = sum_k p_k (log p_k - log q_k)`` (nats)."""
    return float((log_p.exp() * (log_p - log_q.double())).sum(dim=1).mean())
