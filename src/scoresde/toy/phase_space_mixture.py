"""Exact phase-space densities and scores of a Gaussian mixture under a linear recipe SDE (PSLD, CLD).

The data law is ``z_0 = [x_0, m_0]`` with ``x_0 ~ sum_k w_k N(mu_k, S_k)`` and the auxiliary blocks drawn from the
SDE's initial covariance ``Sigma_0`` independently of ``x_0``. The kernel is linear-Gaussian
(``z_t = Phi(t) z_0 + noise``, Pandey & Mandt 2023, §3), so given component ``k``

    ``z_t ~ N((Phi x I_d) [mu_k; 0], (Phi x I_d) C_k (Phi x I_d)^T + noise_cov(t) x I_d)``,
    ``C_k = e_1 e_1^T x S_k + Sigma_0 x I_d``,

with ``x`` the Kronecker product in the state layout (block ``j``, coordinate ``c`` at index ``j d + c``). The score
of the mixture is ``-sum_k r_k(z) Cov_k^-1 (z - mean_k)``. This is the oracle of the phase-space tests.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..sdes.linalg import unique_times
from ..sdes.recipe import RecipeSDE
from .mixture import GaussianMixture, _conditional_score


class PhaseSpaceMixture:
    """The phase-space law of :class:`GaussianMixture` data ``x_0`` and auxiliary blocks ``~ N(0, Sigma_0)``.

    Args:
        mixture: the data mixture (``d`` dimensions; states are ``(B, k d)``).
        sde: the recipe SDE (its ``initial_cov`` is the law of the auxiliary blocks; its score-matching mode is
            irrelevant here: the true marginal does not depend on how a network would be trained).
    """

    def __init__(self, mixture: GaussianMixture, sde: RecipeSDE) -> None:
        self.mixture, self.sde = mixture, sde
        d, k = mixture.dim, sde.k
        dtype = mixture.means.dtype
        eye = torch.eye(d, dtype=dtype)
        e1 = torch.zeros(k, k, dtype=dtype)
        e1[0, 0] = 1.0
        self._init_covs = torch.stack([torch.kron(e1, S) + torch.kron(sde.initial_cov.to(dtype), eye)
                                       for S in mixture.covs])  # (K, kd, kd)
        self._init_means = torch.cat([mixture.means, mixture.means.new_zeros(mixture.num_components, (k - 1) * d)],
                                     dim=1)  # (K, kd)
        self._eye = eye

    def _moments(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Per-example, per-component means ``(B, K, kd)`` and covariances ``(B, K, kd, kd)`` of ``z_t``."""
        if t.dim() == 0:
            t = t.reshape(1)
        t = t.to(torch.float64)
        nonzero = t > 0
        phi = self.sde.transition(t)
        noise = torch.where(nonzero[:, None, None], self.sde.noise_cov(t), torch.zeros_like(phi))
        big_phi, big_noise = self._kron_eye(phi), self._kron_eye(noise)  # (B, kd, kd)
        means = torch.einsum("bij,kj->bki", big_phi, self._init_means)
        covs = big_phi[:, None] @ self._init_covs[None] @ big_phi[:, None].transpose(-1, -2) + big_noise[:, None]
        return means, covs

    def _kron_eye(self, m: Tensor) -> Tensor:
        """Batched ``m_b x I_d`` for ``m`` of shape ``(B, k, k)``."""
        B, k, d = m.shape[0], m.shape[1], self._eye.shape[0]
        return (m[:, :, None, :, None] * self._eye[None, None, :, None, :]).reshape(B, k * d, k * d)

    def _terms(self, z: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        zf = z.reshape(z.shape[0], -1).to(torch.float64)
        kd = self._init_means.shape[1]
        if zf.shape[1] != kd:
            raise ValueError(f"z has {zf.shape[1]} dimensions per example, the phase-space mixture has {kd}")
        t = torch.as_tensor(t, dtype=torch.float64)
        if t.dim() == 0:
            t = t.expand(z.shape[0])
        t_unique, inverse = unique_times(t)
        means, covs = self._moments(t_unique)
        means, chol = means[inverse], torch.linalg.cholesky(covs)[inverse]
        resid = zf[:, None, :] - means  # (B, K, kd)
        white = torch.linalg.solve_triangular(chol, resid[..., None], upper=False)[..., 0]
        log_comp = (torch.log(self.mixture.weights)[None] - 0.5 * (white**2).sum(-1)
                    - torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1) - 0.5 * kd * math.log(2 * math.pi))
        prec_resid = torch.cholesky_solve(resid[..., None], chol)[..., 0]
        return log_comp, prec_resid

    def log_prob(self, z: Tensor, t: Tensor | float) -> Tensor:
        """Exact ``log p_t(z)`` of the phase-space marginal (nats, shape ``(B,)``); ``t = 0`` is the initial law."""
        return torch.logsumexp(self._terms(z, t)[0], dim=1)

    def score(self, z: Tensor, t: Tensor | float) -> Tensor:
        """Exact score ``grad_z log p_t(z)`` of the full state, same shape and dtype as ``z``."""
        log_comp, prec_resid = self._terms(z, t)
        resp = torch.softmax(log_comp, dim=1)
        return (-(resp[..., None] * prec_resid).sum(1)).reshape(z.shape).to(z.dtype)

    def log_joint(self, z: Tensor, t: Tensor | float) -> Tensor:
        """``log w_k + log N(z; mean_k(t), Cov_k(t))`` per component, shape ``(B, K)``: ``log p_t(z, y = k)``."""
        return self._terms(z, t)[0]

    def log_posterior(self, z: Tensor, t: Tensor | float) -> Tensor:
        """The exact noisy classifier ``log p_t(y = k | z_t)`` on the phase-space state (responsibilities at ``t``),
        shape ``(B, K)``: what a state-conditioned classifier (PSLD's) estimates."""
        return torch.log_softmax(self._terms(z, t)[0], dim=1)

    def class_score(self, z: Tensor, labels: Tensor, t: Tensor | float) -> Tensor:
        """Exact class-conditional score ``grad_z log p_t(z | y) = -Cov_y^-1 (z - mean_y)`` of the full state for the
        components ``labels`` (int64 ``(B,)`` in ``[0, K)``), same shape and dtype as ``z``."""
        labels = self.mixture._check_labels(labels, z.shape[0])
        prec_resid = self._terms(z, t)[1]
        rows = torch.arange(z.shape[0])
        return (-prec_resid[rows, labels.cpu()]).reshape(z.shape).to(z.dtype)

    def conditional_score_fn(self):
        """``score_fn(z, t, class_labels=None)`` of an exact class-conditional phase-space model: class scores for
        labels in ``[0, K)``, the mixture score for ``None`` or the null label ``-1`` (classifier-free guidance)."""
        return _conditional_score(self.score, self.class_score, self.mixture.num_components, None)

    def classifier_fn(self):
        """The exact noise-conditional classifier on the state, ``classifier_fn(z, t, **cond) -> logits (B, K)`` (the
        log joint; conditioning keyword arguments are ignored), with ``.sde`` and ``.num_classes``."""

        def classifier_fn(z: Tensor, t: Tensor, **cond: object) -> Tensor:
            return self.log_joint(z, t).to(z.dtype)

        classifier_fn.num_classes = self.mixture.num_components  # type: ignore[attr-defined]
        classifier_fn.sde = self.sde  # type: ignore[attr-defined]
        return classifier_fn

    def score_fn(self):
        """``score_fn(z, t)`` for samplers and likelihoods."""
        return self.score

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` states ``z_0 = [x_0, m_0]`` (shape ``(n, k d)``) from the initial phase-space law."""
        x = self.mixture.sample(n, generator)
        return self.sde.augment(x, generator)
