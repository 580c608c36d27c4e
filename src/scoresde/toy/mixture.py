"""Gaussian mixtures: data with exact log-densities and exact scores under every scalar linear SDE.

If ``x_0 ~ sum_k w_k N(mu_k, S_k)`` and ``x_t = alpha(t) x_0 + sigma(t) eps``, then
``x_t ~ sum_k w_k N(alpha mu_k, alpha^2 S_k + sigma^2 I)`` exactly, so the perturbed score
``grad log p_t(x) = -sum_k r_k(x) C_k^{-1} (x - alpha mu_k)`` (``r_k`` the posterior responsibilities) is known in
closed form. This makes the mixture both a teaching tool and the oracle that samplers and likelihoods are
tested against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..sdes.scalar import ScalarSDE


class GaussianMixture:
    """A mixture ``sum_k w_k N(mu_k, S_k)`` in ``d`` dimensions.

    Args:
        weights: mixture weights, shape ``(K,)``, positive, summing to 1 (within 1e-6).
        means: component means, shape ``(K, d)``.
        covs: component covariances, shape ``(K, d, d)`` symmetric positive definite, or ``(K,)`` standard
            deviations of isotropic components.
        dtype: floating dtype of all internal tensors (float64 by default: the oracle should not be the
            limiting precision of a test).
    """

    def __init__(
        self,
        weights: Sequence[float] | Tensor,
        means: Sequence[Sequence[float]] | Tensor,
        covs: Sequence | Tensor,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        w = torch.as_tensor(weights, dtype=dtype)
        mu = torch.as_tensor(means, dtype=dtype)
        cov = torch.as_tensor(covs, dtype=dtype)
        if w.dim() != 1 or not (w > 0).all() or abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must be a positive 1-D vector summing to 1, got {w.tolist()}")
        if mu.dim() != 2 or mu.shape[0] != w.shape[0]:
            raise ValueError(f"means must have shape (K={w.shape[0]}, d), got {tuple(mu.shape)}")
        K, d = mu.shape
        if cov.dim() == 1:
            if cov.shape[0] != K or not (cov > 0).all():
                raise ValueError(f"isotropic covs must be {K} positive standard deviations, got {cov.tolist()}")
            cov = cov[:, None, None] ** 2 * torch.eye(d, dtype=dtype)
        if cov.shape != (K, d, d):
            raise ValueError(f"covs must have shape (K={K}, d={d}, d={d}) or (K,), got {tuple(cov.shape)}")
        if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
            raise ValueError("means and covs must be finite")
        asym = (cov - cov.transpose(-1, -2)).abs().amax(dim=(-1, -2))
        if not torch.allclose(cov, cov.transpose(-1, -2)):
            k = int(asym.argmax())
            raise ValueError(f"covs must be symmetric; component {k} has max |S - S^T| = {float(asym[k]):.3g}")
        self._eigvals, self._eigvecs = torch.linalg.eigh(cov)  # S_k = U_k diag(lam_k) U_k^T
        if not (self._eigvals > 0).all():
            k = int(self._eigvals.min(dim=1).values.argmin())
            raise ValueError(f"covs must be positive definite; component {k} has smallest eigenvalue "
                             f"{float(self._eigvals[k].min()):.3g}")
        self._chol = torch.linalg.cholesky(cov)
        self.weights, self.means, self.covs = w / w.sum(), mu, cov
        self._on_device: dict[torch.device, tuple[Tensor, ...]] = {}

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the data."""
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        """Number of components ``K``."""
        return self.means.shape[0]

    def mean(self) -> Tensor:
        """Mean of the mixture ``sum_k w_k mu_k``."""
        return self.weights @ self.means

    # -- sampling ---------------------------------------------------------------------------------
    def sample(
        self, n: int, generator: torch.Generator | None = None, return_labels: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Draw ``n`` samples ``x = mu_k + L_k eps`` with ``k ~ Cat(w)``, ``L_k L_k^T = S_k``, ``eps ~ N(0, I)``.

        Returns shape ``(n, d)``, and the labels ``k`` too with ``return_labels=True``.
        """
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        x = self.means[labels] + (self._chol[labels] @ eps[:, :, None])[..., 0]
        return (x, labels) if return_labels else x

    # -- densities of the perturbed marginal ------------------------------------------------------
    def _components(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Per-example, per-component log-density terms and precision-times-residuals at ``(alpha, sigma)``.

        The perturbed covariance ``alpha^2 S_k + sigma^2 I`` shares the eigenvectors ``U_k`` of ``S_k`` (eigenvalues
        ``alpha^2 lam_k + sigma^2``), so no per-example factorisation is needed: ``O(B K d^2)`` work.
        """
        xf = x.reshape(x.shape[0], -1).to(self.means.dtype)
        if xf.shape[1] != self.dim:
            raise ValueError(f"x has {xf.shape[1]} dimensions per example, the mixture has {self.dim}")
        log_w, means, eigvals, eigvecs = self._params(xf.device)
        a = alpha.to(xf).reshape(-1, 1, 1)
        s2 = (sigma.to(xf) ** 2).reshape(-1, 1, 1)
        var = a**2 * eigvals[None] + s2  # (B, K, d): eigenvalues of the perturbed covariances
        resid = xf[:, None, :] - a * means[None]  # (B, K, d)
        rotated = torch.einsum("bkd,kde->bke", resid, eigvecs)  # U_k^T (x - alpha mu_k)
        log_comp = (
            log_w[None]
            - 0.5 * (rotated**2 / var).sum(-1)
            - 0.5 * torch.log(var).sum(-1)
            - 0.5 * self.dim * math.log(2 * math.pi)
        )
        prec_resid = torch.einsum("bke,kde->bkd", rotated / var, eigvecs)  # C_k^{-1} (x - alpha mu_k)
        return log_comp, prec_resid

    def _params(self, device: torch.device) -> tuple[Tensor, ...]:
        """``(log w, mu, lam, U)`` on ``device`` (cached), so the oracle follows its input to an accelerator."""
        if device not in self._on_device:
            params = (torch.log(self.weights), self.means, self._eigvals, self._eigvecs)
            self._on_device[device] = tuple(p.to(device) for p in params)
        return self._on_device[device]

    def _alpha_sigma(
        self, t: Tensor | float | None, sde: ScalarSDE | None, x: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per-example ``(alpha(t), sigma(t))``; ``(1, 0)`` for the clean mixture (no ``sde``)."""
        batch = x.shape[0]
        if sde is None:
            if t is not None:
                raise ValueError("t was given without an sde: the perturbed marginal needs both (pass sde=...)")
            one = torch.ones(batch, dtype=self.means.dtype, device=x.device)
            return one, torch.zeros_like(one)
        if t is None:
            raise ValueError("t is required when an SDE is given")
        _check_scalar(sde)
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be a scalar or have shape (B={batch},), got {tuple(t.shape)}")
        return sde.alpha(t).to(self.means.dtype), sde.sigma(t).to(self.means.dtype)

    def log_prob(self, x: Tensor, t: Tensor | float | None = None, sde: ScalarSDE | None = None) -> Tensor:
        """Exact ``log p_t(x) = log sum_k w_k N(x; alpha mu_k, alpha^2 S_k + sigma^2 I)`` (nats, shape ``(B,)``).

        ``t`` (a scalar or one forward time per example) and ``sde`` give the perturbed marginal; without them it
        is the clean mixture density ``log p_0``.
        """
        alpha, sigma = self._alpha_sigma(t, sde, x)
        return torch.logsumexp(self._components(x, alpha, sigma)[0], dim=1)

    def score(self, x: Tensor, t: Tensor | float | None = None, sde: ScalarSDE | None = None) -> Tensor:
        """Exact score ``grad_x log p_t(x) = -sum_k r_k C_k^{-1} (x - alpha mu_k)``, same shape as ``x``.

        ``r_k`` are the responsibilities under ``p_t`` and ``C_k = alpha^2 S_k + sigma^2 I``; ``t``, ``sde`` as for
        :meth:`log_prob`.
        """
        alpha, sigma = self._alpha_sigma(t, sde, x)
        log_comp, prec_resid = self._components(x, alpha, sigma)
        resp = torch.softmax(log_comp, dim=1)  # (B, K)
        return (-(resp[..., None] * prec_resid).sum(1)).reshape(x.shape).to(x.dtype)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities ``p(k | x) = w_k N(x; mu_k, S_k) / p_0(x)`` (Bayes), shape ``(B, K)``."""
        alpha, sigma = self._alpha_sigma(None, None, x)
        return torch.softmax(self._components(x, alpha, sigma)[0], dim=1)

    def score_fn(self, sde: ScalarSDE):
        """The exact ``score_fn(x, t)`` of the perturbed marginals under ``sde``, for samplers and likelihoods.

        ``x`` may have any shape ``(B, ...)`` with ``prod(...) = d``; the score is returned in ``x``'s dtype. Scalar
        SDEs only (VE, VP, sub-VP); for PSLD/CLD use :class:`scoresde.toy.phase_space.PhaseSpaceMixture`.
        """
        _check_scalar(sde)

        def score_fn(x: Tensor, t: Tensor) -> Tensor:
            return self.score(x, t, sde)

        return score_fn

    # -- ready-made examples ----------------------------------------------------------------------
    @classmethod
    def example_2d(cls, dtype: torch.dtype = torch.float64) -> GaussianMixture:
        """A 2-D mixture of three unequal, anisotropic, well separated components (the test oracle)."""
        return cls(
            weights=[0.5, 0.3, 0.2],
            means=[[-2.0, 0.0], [2.0, 1.0], [0.5, -2.5]],
            covs=[
                [[0.30, 0.10], [0.10, 0.20]],
                [[0.15, -0.05], [-0.05, 0.25]],
                [[0.10, 0.00], [0.00, 0.10]],
            ],
            dtype=dtype,
        )


def _check_scalar(sde: object) -> None:
    """The mixture's closed forms need a scalar kernel ``x_t = alpha_t x_0 + sigma_t eps``."""
    if not (callable(getattr(sde, "alpha", None)) and callable(getattr(sde, "sigma", None))):
        raise ValueError(f"GaussianMixture needs a scalar SDE (VE, VP, sub-VP: x_t = alpha_t x_0 + sigma_t eps); "
                         f"{type(sde).__name__} has a matrix kernel: use scoresde.toy.phase_space.PhaseSpaceMixture")
