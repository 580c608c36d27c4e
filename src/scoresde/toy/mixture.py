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

from ..numerics.checks import check_class_labels
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
        SDEs only (VE, VP, sub-VP); for PSLD/CLD use :class:`scoresde.toy.phase_space_mixture.PhaseSpaceMixture`.
        """
        _check_scalar(sde)

        def score_fn(x: Tensor, t: Tensor) -> Tensor:
            return self.score(x, t, sde)

        return score_fn

    # -- classes (components) and the noisy classifier ----------------------------------------------
    def log_joint(self, x: Tensor, t: Tensor | float | None = None, sde: ScalarSDE | None = None) -> Tensor:
        """``log w_k + log N(x; alpha mu_k, alpha^2 S_k + sigma^2 I)`` for every component ``k``, shape ``(B, K)``.

        The joint ``log p_t(x, y = k)`` of the perturbed point and its class (component); ``t``, ``sde`` as for
        :meth:`log_prob` (clean data without them). Its row-wise ``logsumexp`` is :meth:`log_prob`, its row-wise
        ``log_softmax`` is :meth:`log_posterior`.
        """
        alpha, sigma = self._alpha_sigma(t, sde, x)
        return self._components(x, alpha, sigma)[0]

    def log_posterior(self, x: Tensor, t: Tensor | float | None = None, sde: ScalarSDE | None = None) -> Tensor:
        """The exact noisy classifier ``log p_t(y = k | x_t)`` (the responsibilities at time ``t``), shape ``(B, K)``.

        Bayes' rule on the perturbed components: ``log_softmax_k(log w_k + log N(x; alpha mu_k, C_k))``. This is what a
        noise-conditional classifier (Song et al. 2021, App. I.1; Dhariwal & Nichol 2021) estimates; its gradient in
        ``x`` plus the unconditional score is :meth:`class_score` (Bayes: ``grad log p_t(x | y) = grad log p_t(x) +
        grad log p_t(y | x)``).
        """
        return torch.log_softmax(self.log_joint(x, t, sde), dim=1)

    def class_score(self, x: Tensor, labels: Tensor, t: Tensor | float | None = None,
                    sde: ScalarSDE | None = None) -> Tensor:
        """Exact class-conditional score ``grad_x log p_t(x | y) = -C_y^{-1} (x - alpha mu_y)`` of the component
        ``y = labels`` (int64, shape ``(B,)``, entries in ``[0, K)``), same shape and dtype as ``x``."""
        labels = self._check_labels(labels, x.shape[0])
        alpha, sigma = self._alpha_sigma(t, sde, x)
        prec_resid = self._components(x, alpha, sigma)[1]
        rows = torch.arange(x.shape[0], device=prec_resid.device)
        return (-prec_resid[rows, labels.to(prec_resid.device)]).reshape(x.shape).to(x.dtype)

    def _check_labels(self, labels: Tensor, batch: int) -> Tensor:
        return check_class_labels(labels, batch, self.num_components)

    def conditional_score_fn(self, sde: ScalarSDE):
        """The exact score of a class-conditional model: ``score_fn(x, t, class_labels=None)`` returns the class score
        (:meth:`class_score`) of rows whose label is in ``[0, K)``, and the unconditional score (:meth:`score`) for
        ``class_labels=None`` or rows labelled ``-1`` (the null label of classifier-free guidance). The oracle a
        class-conditional network with label dropout approximates (Ho & Salimans 2022)."""
        _check_scalar(sde)
        return _conditional_score(self.score, self.class_score, self.num_components, sde)

    def classifier_fn(self, sde: ScalarSDE):
        """The exact noise-conditional classifier ``classifier_fn(x, t, **cond) -> logits (B, K)`` (the log joint
        :meth:`log_joint`, whose softmax is :meth:`log_posterior`) of the perturbed mixture under ``sde``: what
        :func:`scoresde.guidance.classifier` needs. Conditioning keyword arguments are ignored (the classifier reads
        ``x`` and ``t`` only)."""
        _check_scalar(sde)

        def classifier_fn(x: Tensor, t: Tensor, **cond: object) -> Tensor:
            return self.log_joint(x, t, sde).to(x.dtype)

        classifier_fn.num_classes = self.num_components  # type: ignore[attr-defined]
        classifier_fn.sde = sde  # type: ignore[attr-defined]
        return classifier_fn

    # -- linear observations (inpainting, colorization) -----------------------------------------------
    def condition(self, A: Tensor, y: Tensor, basis: Tensor | None = None) -> ObservedMixture:
        """The exact law of ``x ~ self`` given the noiseless linear observation ``A x = y`` (``A`` of shape
        ``(m, d)`` and full row rank ``m < d``, ``y`` of shape ``(m,)``): again a Gaussian mixture, with reweighted
        components (Bishop 2006, §2.3.1-2.3.3, per component):

            ``w'_k ∝ w_k N(y; A mu_k, A S_k A^T)``,
            ``mu'_k = mu_k + S_k A^T (A S_k A^T)^{-1} (y - A mu_k)``,
            ``S'_k = S_k - S_k A^T (A S_k A^T)^{-1} A S_k``.

        ``S'_k`` is singular (the law lives on the affine set ``A x = y``), so the result is a proper
        :class:`GaussianMixture` in the ``d - m`` free coordinates ``u = N^T (x - x_p)`` (``N`` an orthonormal basis
        of the null space of ``A``, ``x_p = A^+ y``): see :class:`ObservedMixture`. Inpainting is ``A`` = rows of the
        identity (:meth:`condition_mask`); colorization is ``A`` = the channel mean. ``basis`` fixes ``N`` (shape
        ``(d, d - m)``, orthonormal columns with ``A N = 0``); by default it comes from the SVD of ``A`` (its signs and
        rotation within the null space are arbitrary).
        """
        A = torch.as_tensor(A, dtype=self.means.dtype)
        y = torch.as_tensor(y, dtype=self.means.dtype)
        if A.dim() != 2 or A.shape[1] != self.dim or not 1 <= A.shape[0] < self.dim:
            raise ValueError(f"A must have shape (m, d={self.dim}) with 1 <= m < {self.dim}, got {tuple(A.shape)}")
        if y.shape != (A.shape[0],):
            raise ValueError(f"y must have shape ({A.shape[0]},) (one observation), got {tuple(y.shape)}")
        _, S, Vh = torch.linalg.svd(A)
        if float(S.min()) <= 1e-10 * float(S.max()):
            raise ValueError(f"A must have full row rank; its singular values are {S.tolist()}")
        m = A.shape[0]
        null = Vh[m:].T  # (d, d - m) orthonormal basis of ker A
        if basis is not None:
            null = torch.as_tensor(basis, dtype=self.means.dtype)
            eye = torch.eye(self.dim - m, dtype=null.dtype)
            if null.shape != (self.dim, self.dim - m) or not torch.allclose(null.T @ null, eye, atol=1e-10) \
                    or not torch.allclose(A @ null, torch.zeros_like(A @ null), atol=1e-10):
                raise ValueError(f"basis must be ({self.dim}, {self.dim - m}) with orthonormal columns spanning the "
                                 "null space of A")
        x_p = torch.linalg.pinv(A) @ y
        weights, means, covs = self._linear_gaussian_update(A, y, 0.0)
        free_means = (means - x_p) @ null
        free_covs = null.T @ covs @ null
        free_covs = 0.5 * (free_covs + free_covs.transpose(-1, -2))
        return ObservedMixture(GaussianMixture(weights, free_means, free_covs, dtype=self.means.dtype), x_p, null)

    def _linear_gaussian_update(self, A: Tensor, y: Tensor, sigma_y: float) -> tuple[Tensor, Tensor, Tensor]:
        """Per component, the posterior given ``y = A x + sigma_y n`` (:meth:`condition_noisy`'s formulas; ``sigma_y =
        0`` is :meth:`condition`'s): normalised weights ``(K,)``, means ``(K, d)``, covariances ``(K, d, d)``."""
        obs_cov = A @ self.covs @ A.T + sigma_y**2 * torch.eye(A.shape[0], dtype=A.dtype)  # (K, m, m)
        resid = y - self.means @ A.T  # (K, m)
        chol = torch.linalg.cholesky(obs_cov)
        white = torch.linalg.solve_triangular(chol, resid[..., None], upper=False)[..., 0]
        log_w = (torch.log(self.weights) - 0.5 * (white**2).sum(-1)
                 - torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1))
        gain = self.covs @ A.T @ torch.cholesky_inverse(chol)  # (K, d, m)
        means = self.means + (gain @ resid[..., None])[..., 0]
        covs = self.covs - gain @ A @ self.covs
        weights = torch.softmax(log_w, dim=0).clamp_min(torch.finfo(self.means.dtype).tiny)
        return weights / weights.sum(), means, covs

    def condition_noisy(self, A: Tensor, y: Tensor, sigma_y: float) -> GaussianMixture:
        """The exact law of ``x ~ self`` given the noisy linear measurement ``y = A x + sigma_y n``, ``n ~ N(0, I)``
        (``A`` of shape ``(m, d)``, any rank; ``y`` of shape ``(m,)``; ``sigma_y > 0``): again a Gaussian mixture in
        ``d`` dimensions (Bishop 2006, §2.3.3, eqs. 2.115-2.116, per component, then Bayes over components):

            ``w'_k ∝ w_k N(y; A mu_k, A S_k A^T + sigma_y^2 I)``,
            ``mu'_k = mu_k + K_k (y - A mu_k)``, ``S'_k = S_k - K_k A S_k``, ``K_k = S_k A^T (A S_k A^T +
            sigma_y^2 I)^{-1}``.

        The oracle of :func:`scoresde.solve_inverse` with noisy measurements (``scoresde.inverse.dense_matrix(op)``
        gives ``A`` of an operator); for ``sigma_y = 0`` use :meth:`condition`."""
        A = torch.as_tensor(A, dtype=self.means.dtype)
        y = torch.as_tensor(y, dtype=self.means.dtype)
        if A.dim() != 2 or A.shape[1] != self.dim or A.shape[0] < 1:
            raise ValueError(f"A must have shape (m, d={self.dim}), got {tuple(A.shape)}")
        if y.shape != (A.shape[0],):
            raise ValueError(f"y must have shape ({A.shape[0]},) (one measurement), got {tuple(y.shape)}")
        if isinstance(sigma_y, bool) or not isinstance(sigma_y, int | float) or not 0 < sigma_y < math.inf:
            raise ValueError(f"sigma_y must be a positive number (use condition() for sigma_y = 0), got {sigma_y!r}")
        weights, means, covs = self._linear_gaussian_update(A, y, float(sigma_y))
        return GaussianMixture(weights, means, 0.5 * (covs + covs.transpose(-1, -2)), dtype=self.means.dtype)

    def condition_mask(self, mask: Tensor, x_obs: Tensor) -> ObservedMixture:
        """:meth:`condition` for inpainting: the coordinates where ``mask`` (shape ``(d,)``, 1 = observed) is 1 are
        observed with the values ``x_obs[mask == 1]`` (``x_obs`` of shape ``(d,)``); the free coordinates are the
        unobserved ones, in order."""
        mask = torch.as_tensor(mask).reshape(-1)
        if mask.shape != (self.dim,) or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask must hold {self.dim} entries, each 0 or 1; got shape {tuple(mask.shape)}")
        eye = torch.eye(self.dim, dtype=self.means.dtype)
        rows = mask.bool()
        return self.condition(eye[rows], torch.as_tensor(x_obs, dtype=self.means.dtype).reshape(-1)[rows],
                              basis=eye[~rows].T)

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
                         f"{type(sde).__name__} has a matrix kernel: use "
                         "scoresde.toy.phase_space_mixture.PhaseSpaceMixture")


def _conditional_score(score, class_score, num_classes: int, sde: object):
    """``score_fn(x, t, class_labels=None)``: class scores for labels in ``[0, K)``, the mixture score for ``None`` or
    the null label ``-1`` (shared by the data-space and phase-space mixtures)."""

    def score_fn(x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        uncond = score(x, t, sde) if sde is not None else score(x, t)
        if class_labels is None:
            return uncond
        if not isinstance(class_labels, Tensor) or class_labels.shape != (x.shape[0],):
            raise ValueError(f"class_labels must be a tensor of shape ({x.shape[0]},), got "
                             f"{tuple(getattr(class_labels, 'shape', ()))}")
        if class_labels.numel() and (int(class_labels.min()) < -1 or int(class_labels.max()) >= num_classes):
            raise ValueError(f"class_labels must lie in [-1, {num_classes}) (-1: the null label), got entries in "
                             f"[{int(class_labels.min())}, {int(class_labels.max())}]")
        null = class_labels < 0
        safe = class_labels.clamp_min(0)
        cond = class_score(x, safe, t, sde) if sde is not None else class_score(x, safe, t)
        return torch.where(null.reshape(-1, *([1] * (x.dim() - 1))), uncond, cond)

    score_fn.num_classes = num_classes  # type: ignore[attr-defined]
    return score_fn


class ObservedMixture:
    """A Gaussian mixture conditioned on a noiseless linear observation ``A x = y``: ``x = x_p + N u`` with
    ``u ~ free`` (a :class:`GaussianMixture` in the ``d - m`` free coordinates), ``x_p = A^+ y`` and ``N`` an
    orthonormal basis of the null space of ``A`` (from :meth:`GaussianMixture.condition`).

    ``free.weights`` are the reweighted component weights ``w'_k`` (the numbers a conditional sampler must
    reproduce); :meth:`sample` draws ``x`` in the data space, :meth:`free_coordinates` maps samples back to ``u``
    (to compare a sampler's output with :attr:`free` by energy distance or responsibilities).
    """

    def __init__(self, free: GaussianMixture, offset: Tensor, basis: Tensor) -> None:
        self.free, self.offset, self.basis = free, offset, basis

    @property
    def weights(self) -> Tensor:
        """Component weights ``w'_k`` of the conditional law, shape ``(K,)``."""
        return self.free.weights

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws ``x = x_p + N u`` of the conditional law, shape ``(n, d)``."""
        return self.offset + self.free.sample(n, generator) @ self.basis.T

    def free_coordinates(self, x: Tensor) -> Tensor:
        """``u = N^T (x - x_p)`` of data-space points ``x`` (shape ``(n, d)`` or ``(n, ...)`` with ``d`` entries)."""
        return (x.reshape(x.shape[0], -1).to(self.offset.dtype) - self.offset) @ self.basis

    def component_fractions(self, x: Tensor) -> Tensor:
        """Mean responsibilities of the conditional components over the samples ``x`` (shape ``(K,)``): compare with
        :attr:`weights` (for well separated components, the fraction of samples in each component)."""
        return self.free.responsibilities(self.free_coordinates(x)).mean(0)
