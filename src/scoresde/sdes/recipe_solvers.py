"""The solver steps of the linear recipe SDE (:class:`~scoresde.sdes.RecipeSDE`: PSLD, CLD) in matrix form, mixed into
the class as :class:`RecipeSolverSteps`: the phase-space DDIM step (gDDIM, Zhang et al. 2023) and its probability-flow
propagator, the matrix half log-SNR ``lambda_t`` with its derivative and inverse (the ``logSNR``/``karras`` grids), the
exponential-integrator coefficients that ``sampling/dpm_solver.py`` applies (DPM-Solver(++), Lu et al. 2022, in matrix
form), and the split of the reverse SDE that SSCS integrates (Dockhorn et al. 2022, §3.3).

Every method reads only the kernel of the host class (``transition``, ``noise_cov``, ``kernel_cov``, ``kernel_factor``,
``factor``, ``beta``, ``beta_integral``, ``A``, ``D``, ``stationary_prec``, ``k``, ``T``); the kernel, prior, Tweedie
and exact ancestral step live with the class in ``recipe.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .linalg import apply_blocks, sym_sqrt

#: the deterministic DDIM flows of phase-space SDEs (:meth:`RecipeSolverSteps.ddim_step`)
DDIM_FLOWS = ("kernel", "probability_flow")


class RecipeSolverSteps:
    """Solver steps of :class:`~scoresde.sdes.RecipeSDE` (a mixin: see the module docstring for what it reads)."""

    def flow_propagator(self, t: Tensor, s: Tensor, *, rtol: float = 1e-10, atol: float = 1e-12) -> Tensor:
        """``U(s, t) = K_s K_t^-1`` for ``K' = (F + 1/2 G G^T Sigma^-1) K``, ``F = -beta A``, ``G G^T = 2 beta D``,
        ``Sigma`` the kernel covariance (float64, ``k x k``).

        ``z_tau = Phi_tau z_0 + K_tau eps`` with a fixed ``eps`` solves the probability-flow ODE for a point mass at
        ``z_0`` exactly when ``K`` solves this linear ODE (then ``K K^T`` follows ``Sigma``'s Lyapunov equation), which
        is gDDIM's condition for a deterministic DDIM that integrates the probability-flow ODE (Zhang et al. 2023,
        §4). For scalar kernels ``U = sigma_s / sigma_t``; in phase space the Cholesky factor ``L_t`` does not solve it
        (it differs by a rotation), so ``L_s L_t^-1`` would follow another, marginal-preserving flow. Integrated with
        scipy's RK45 at ``rtol``/``atol`` (cheap: ``k x k`` matrices)."""
        from scipy.integrate import solve_ivp  # function-level: scipy.integrate costs start-up time, needed only here

        k = self.k
        D = self.D

        def rhs(tau: float, y: object) -> object:
            tt = torch.tensor([tau], dtype=torch.float64)
            beta = float(self.beta(tt))
            M = -beta * self.A + beta * D @ torch.linalg.inv(self.kernel_cov(tt)[0])
            return (M @ torch.as_tensor(y, dtype=torch.float64).reshape(k, k)).reshape(-1).numpy()

        sol = solve_ivp(rhs, (float(t), float(s)), torch.eye(k, dtype=torch.float64).reshape(-1).numpy(), rtol=rtol,
                        atol=atol, method="RK45")
        if not sol.success:
            raise RuntimeError(f"flow propagator from t={float(t)} to s={float(s)} failed: {sol.message}")
        return torch.as_tensor(sol.y[:, -1], dtype=torch.float64).reshape(k, k)

    def ddim_step(self, z: Tensor, t: Tensor, s: Tensor, eps: Tensor, eta: float = 0.0,
                  noise: Tensor | None = None, flow: str = "kernel") -> Tensor:
        """One DDIM step from ``t`` to ``s < t`` in phase space with the exact kernel (the matrix form of DDIM, gDDIM:
        Zhang et al. 2023).

        With ``z_t = Phi_t z_0 + L_t eps`` (the kernel of the score-matching mode) the data estimate is ``z0 = Phi_t^-1
        (z - L_t eps)``. ``eta = 0``: ``z_s = Phi_s z0 + U(s, t) L_t eps`` with the probability-flow propagator ``U``
        (:meth:`flow_propagator`), the first-order exponential integrator of the probability-flow ODE. ``eta > 0``:
        ``z_s = Phi_s z0 + M eps + C^1/2 noise`` with ``C = eta^2 P``, ``P = Sigma_s - Sigma_s Psi^T Sigma_t^-1 Psi
        Sigma_s`` the posterior covariance of ``z_s`` given ``z_t`` and ``z_0`` (``Psi`` the transition ``s -> t``) and
        ``M`` the kernel factor (:meth:`factor`) of ``Sigma_s - C``. Every ``eta`` keeps the kernel marginals
        ``z_s | z_0 ~ N(Phi_s z_0, Sigma_s)`` (the DDIM family's property); with ``eta = 1`` the noise has the DDPM
        posterior covariance, while the mean uses ``M L_t^-1`` in place of the posterior gain ``Sigma_s Psi^T
        Sigma_t^-1`` (equal for scalar kernels; :meth:`ancestral_step` is the exact posterior).

        ``flow`` (``eta = 0``): ``"kernel"`` uses ``U = L_s L_t^-1`` (the Cholesky factors: another deterministic flow
        with the same marginals, since it only rotates the whitened noise of each Gaussian conditional; measured closer
        to the data in few steps), ``"probability_flow"`` the propagator of the probability-flow ODE (converges to the
        ``ode`` sampler's path: use it to decode latents of ``scoresde.sample(..., "ode")``)."""
        tt, ss = (torch.as_tensor(v, dtype=torch.float64).reshape(1) for v in (t, s))
        phi_t, phi_s, L_t = self.transition(tt)[0], self.transition(ss)[0], self.kernel_factor(tt)[0]
        z0 = apply_blocks(torch.linalg.inv(phi_t), z - apply_blocks(L_t, eps))
        if flow not in DDIM_FLOWS:
            raise ValueError(f"unknown flow {flow!r}; valid values are: {', '.join(DDIM_FLOWS)}")
        if eta <= 0:
            K_s = self.kernel_factor(ss)[0] if flow == "kernel" else self.flow_propagator(tt[0], ss[0]) @ L_t
            return apply_blocks(phi_s, z0) + apply_blocks(K_s, eps)
        psi, cov_t, cov_s = self.transition(tt, ss)[0], self.kernel_cov(tt)[0], self.kernel_cov(ss)[0]
        post = cov_s - cov_s @ psi.T @ torch.linalg.inv(cov_t) @ psi @ cov_s
        C = eta**2 * 0.5 * (post + post.T)
        rest = cov_s - C
        return (apply_blocks(phi_s, z0) + apply_blocks(self.factor(0.5 * (rest + rest.T)), eps)
                + apply_blocks(sym_sqrt(C), noise))

    # -- the matrix exponential integrator (DDIM of higher order; sampling/dpm_solver.py) -------------------------
    def lambda_t(self, t: Tensor) -> Tensor:
        """Half log-SNR of the matrix kernel, ``lambda_t = (1/k) log |det(L_t^-1 Phi_t)| = (1/k) (-B(t) tr A - 1/2
        log det Sigma_t)`` (float64; ``Sigma_t = L_t L_t^T`` the kernel covariance of the score-matching mode).

        For ``k = 1`` it is the scalar ``log(alpha_t / sigma_t)``; it decreases in ``t`` (``det Phi`` shrinks, ``det
        Sigma`` grows), so it serves as the integration variable of :meth:`exp_integrator` and the ``logSNR`` and
        ``karras`` grids (``scoresde.numerics.grids``) on PSLD/CLD."""
        t64 = torch.as_tensor(t, dtype=torch.float64)
        flat = t64.reshape(-1)
        logdet_phi = -self.beta_integral(flat) * float(torch.trace(self.A))
        lam = (logdet_phi - 0.5 * torch.logdet(self.kernel_cov(flat))) / self.k
        return lam.reshape(t64.shape)

    def dlambda_dt(self, t: Tensor) -> Tensor:
        """``d lambda / dt = -beta(t) tr(Sigma_t^-1 D) / k``, float64 (differentiate :meth:`lambda_t` with the Lyapunov
        equation ``Sigma' = beta (2 D - A Sigma - Sigma A^T)``; for VP it is ``-beta / (2 sigma^2)``)."""
        t64 = torch.as_tensor(t, dtype=torch.float64)
        flat = t64.reshape(-1)
        cov = self.kernel_cov(flat)
        tr = torch.linalg.solve(cov, self.D.to(cov).expand_as(cov)).diagonal(dim1=-2, dim2=-1).sum(-1)
        return (-self.beta(flat) * tr / self.k).reshape(t64.shape)

    def t_from_lambda(self, lam: Tensor, *, tol: float = 1e-15, max_iter: int = 100) -> Tensor:
        """Inverse of :meth:`lambda_t` on ``(0, T]`` (float64; ``T`` for ``lam <= lambda_T``): Newton's method in
        ``log t`` with :meth:`dlambda_dt` (``lambda ~ -1/2 log t`` near 0, so a few steps), safeguarded by bisection
        of a bracket, until every step is below ``tol`` relative to ``t``."""
        lam64 = torch.as_tensor(lam, dtype=torch.float64)
        target = lam64.reshape(-1)
        T = float(self.T)
        at_end = target <= self.lambda_t(torch.tensor([T], dtype=torch.float64))
        lo, hi = torch.zeros_like(target), torch.full_like(target, T)
        t = torch.full_like(target, 0.5 * T)
        for _ in range(max_iter):
            f = self.lambda_t(t) - target  # lambda decreases in t
            lo, hi = torch.where(f > 0, t, lo), torch.where(f > 0, hi, t)
            newton = t * torch.exp(-f / (self.dlambda_dt(t) * t))
            inside = (newton >= lo) & (newton <= hi) & torch.isfinite(newton)
            t_new = torch.where(at_end, T, torch.where(inside, newton, 0.5 * (lo + hi)))
            done = bool(((t_new - t).abs() <= tol * t_new).all())
            t = t_new
            if done:
                break
        return t.reshape(lam64.shape)

    def exp_integrator(self, s: Tensor, t: Tensor, order: int, prediction: str = "x0",
                       nodes: int = 16) -> tuple[Tensor, list[Tensor]]:
        """Coefficients of the exponential integrator of the kernel flow from ``s`` to ``t`` (``k x k``, float64).

        The kernel ``z_t = Phi_t z_0 + L_t eps`` defines the deterministic flow ``dz/dt = Phi'_t x0_hat + L'_t
        eps_hat`` (the conditional expectation of ``d/dt (Phi_t z_0 + L_t eps)`` given ``z_t``: it keeps every
        marginal, and for scalar kernels it is the probability-flow ODE). Its linear part is exact in the variables
        ``y = L^-1 z`` (``dy = (d G) x0_hat``, ``G = L^-1 Phi``) or ``u = Phi^-1 z`` (``du = (d H) eps_hat``, ``H =
        Phi^-1 L``), the matrix form of DPM-Solver(++) (Lu et al. 2022; gDDIM, Zhang et al. 2023). With the
        prediction ``m`` expanded in ``lambda`` (:meth:`lambda_t`, ``h = lambda_t - lambda_s``) as ``sum_k D_k p_k``,
        ``p_k = ((lambda - lambda_s) / h)^(k-1) / (k-1)!`` (``D_k ~ h^(k-1) m^(k-1)``),

            ``z_t = A z_s + sum_k C_k D_k``,  ``A = L_t L_s^-1`` (``x0``) or ``Phi_t Phi_s^-1`` (``eps``),
            ``C_k = L_t int G'(lambda) p_k(lambda) d lambda`` (or ``Phi_t int H' p_k``),

        integrated by parts (``C_1 = L_t (G_t - G_s)``) and by ``nodes``-point Gauss-Legendre quadrature in
        ``lambda`` for ``k = 2, 3``. For a scalar kernel ``C_k = -alpha_t phi_k(-h)`` (data) and ``-sigma_t phi_k(h)``
        (noise), DPM-Solver's coefficients; ``order = 1`` is the phase-space DDIM step with ``flow="kernel"``
        (:meth:`ddim_step`).

        Args:
            s, t: times ``s > t`` (0-d).
            order: number of coefficients ``C_1..C_order`` (1 to 3).
            prediction: ``"x0"`` (data prediction, DPM-Solver++) or ``"eps"`` (noise prediction, DPM-Solver).
            nodes: Gauss-Legendre nodes in ``lambda`` (16: float64-exact for the steps of a 5-step grid on PSLD).
        """
        if prediction not in ("x0", "eps"):
            raise ValueError(f"unknown prediction {prediction!r}; valid values are: x0, eps")
        if order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
        st = torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(()) for v in (s, t)])

        def pair(times: Tensor) -> tuple[Tensor, Tensor]:
            """(outer, inner) matrices at each time: (L, L^-1 Phi) for x0, (Phi, Phi^-1 L) for eps."""
            L, phi = self.kernel_factor(times), self.transition(times)
            if prediction == "x0":
                return L, torch.linalg.solve(L, phi)
            return phi, torch.linalg.solve(phi, L)

        outer, inner = pair(st)
        A = outer[1] @ torch.linalg.inv(outer[0])
        coefs = [outer[1] @ (inner[1] - inner[0])]
        if order > 1:
            lam_s, lam_t = self.lambda_t(st)
            h = lam_t - lam_s
            x, w = (torch.as_tensor(v, dtype=torch.float64) for v in _gauss_legendre(nodes))
            u = 0.5 * (x + 1.0)  # nodes on [0, 1]: lambda = lambda_s + u h
            G = pair(self.t_from_lambda(lam_s + u * h))[1]
            wq = (0.5 * w)[:, None, None]  # int_0^1 f du
            # int_s^t G' p_k dlambda = p_k(1) G_t - int_0^1 G(u) p_k'(u) du  (p_k as a function of u)
            coefs.append(outer[1] @ (inner[1] - (wq * G).sum(0)))
            if order > 2:
                coefs.append(outer[1] @ (0.5 * inner[1] - (wq * u[:, None, None] * G).sum(0)))
        return A, coefs

    # -- the split of the reverse SDE used by SSCS ----------------------------------------------------
    def reverse_linear_step(self, z: Tensor, t: Tensor, t_next: Tensor, noise: Tensor) -> Tensor:
        """Exact solution of the linear part of the reverse SDE from ``t`` down to ``t_next`` (Dockhorn et al. 2022,
        §3.3, in recipe form): ``dz = -beta (D - Q) S^-1 z ds + sqrt(2 beta D) dW`` in reverse time ``s``.

        It is again a recipe SDE (``Q -> -Q``), so ``z <- Phi' z + sqrt(S - Phi' S Phi'^T) noise``.
        """
        phi = self.transition(t, t_next, reverse_linear=True)
        cov = self.noise_cov(t, t_next, reverse_linear=True)
        return apply_blocks(phi, z) + apply_blocks(sym_sqrt(cov), noise)

    def reverse_score_drift(self, z: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """The remaining, score part of the reverse drift: ``2 beta(t) D (score + S^-1 z)`` (Dockhorn et al. 2022,
        §3.3, in recipe form), integrated by Euler in SSCS."""
        beta = self.beta(t.to(torch.float64))
        resid = score + apply_blocks(self.stationary_prec, z)
        return apply_blocks(2.0 * beta[:, None, None] * self.D.to(beta.device), resid)



def _gauss_legendre(n: int) -> tuple[list[float], list[float]]:
    """Gauss-Legendre nodes and weights on ``[-1, 1]`` (numpy's ``leggauss``)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return x.tolist(), w.tolist()
