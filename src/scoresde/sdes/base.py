"""The SDE interface every sampler, loss and likelihood reads (design: ``docs/design/sde_interface.md``).

A forward SDE ``dz = f(z, t) dt + G(t) dW`` on ``t in [0, T]`` (Song et al. 2021, eq. 5) and its reverse
``dz = [f - G G^T score] dt + G dW_bar`` (eq. 6) or probability-flow ODE ``dz = [f - 1/2 G G^T score] dt``
(eq. 13). The state ``z`` may be the data itself (VE, VP, sub-VP) or carry extra channels such as a momentum
(CLD, PSLD); samplers only ever call the methods below and never test the concrete class.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score_fn(z, t) -> score``: ``z`` a batch of states, ``t`` a 1-D tensor of forward times in ``(0, T]``."""


def batch_broadcast(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-example tensor ``v`` of shape ``(B,)`` to ``(B, 1, ..., 1)`` so it broadcasts against ``x``.

    Tensors with more than one dimension are returned unchanged (they already carry their own layout, e.g. a
    per-channel diffusion of a phase-space SDE).
    """
    if v.dim() == 1:
        return v.reshape(v.shape[0], *([1] * (x.dim() - 1)))
    return v


def randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise with the shape, dtype and device of ``x``, drawn from ``generator`` if given."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


class SDE(abc.ABC):
    """A forward diffusion ``dz = f(z, t) dt + G(t) dW`` with ``N`` discretisation steps on ``[0, T]``.

    Subclasses implement :meth:`sde`, :meth:`marginal_prob`, :meth:`prior_sampling`, :meth:`prior_logp`,
    :meth:`denoise` and :meth:`ancestral_step`; the other methods have generic defaults (Euler–Maruyama
    discretisation, identity state map) that a subclass may override.

    Args:
        N: number of discretisation steps used by :meth:`discretize` and the default sampler grids.
        T: end time of the forward process.
    """

    def __init__(self, N: int, T: float = 1.0) -> None:
        if not isinstance(N, int) or isinstance(N, bool) or N < 1:
            raise ValueError(f"N must be a positive integer number of steps, got {N!r}")
        if not T > 0:
            raise ValueError(f"T must be positive, got {T!r}")
        self._N = N
        self._T = float(T)

    @property
    def N(self) -> int:
        """Number of discretisation steps."""
        return self._N

    @property
    def T(self) -> float:
        """End time of the forward SDE."""
        return self._T

    # ----------------------------------------------------------------------------------------------
    # State layout: the data may be only part of the state (phase-space SDEs add a momentum).
    # ----------------------------------------------------------------------------------------------
    def state_shape(self, data_shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of the diffusion state for a batch of data of shape ``data_shape`` (identity by default)."""
        return tuple(int(s) for s in data_shape)

    def data_part(self, z: Tensor) -> Tensor:
        """The data half of a state ``z`` (identity by default); :func:`scoresde.sample` returns this."""
        return z

    def with_steps(self, N: int) -> SDE:
        """A copy of this SDE with ``N`` discretisation steps (its discrete tables rebuilt), everything else equal.

        The fixed-step samplers use it when asked for ``steps`` other than ``sde.N``: the reverse-diffusion and
        ancestral rules read the discrete tables of the step count they run with, as Score SDE does when its
        ``num_scales`` changes. The model keeps its own SDE (a discrete-time network keeps its time labels).
        """
        if not isinstance(N, int) or isinstance(N, bool) or N < 1:
            raise ValueError(f"N must be a positive integer number of steps, got {N!r}")
        if N == self.N:
            return self
        out = copy.copy(self)
        out._N = N
        out._build_discrete_tables()
        return out

    def _build_discrete_tables(self) -> None:
        """(Re)build the tables that depend on ``N``; none by default."""
        return None

    # ----------------------------------------------------------------------------------------------
    # The run config: ``training.sde`` names the class, the ``model`` section holds its parameters. A new SDE sets
    # the class attributes below (and overrides the methods where its attributes differ from the keys); the config
    # factory, the schema's choices and the checkpoint translators read them.
    # ----------------------------------------------------------------------------------------------
    #: the ``training.sde`` name of the class (``None``: a run config cannot name it)
    config_name: ClassVar[str | None] = None
    #: ``model`` keys read as floats into the constructor keywords of the same names (``num_scales`` gives ``N``)
    config_keys: ClassVar[tuple[str, ...]] = ()
    #: optional ``model`` keys, passed to the constructor as given when present
    config_options: ClassVar[tuple[str, ...]] = ()
    #: whether every instance's state is ``[x, m]`` (the class-level :attr:`has_auxiliary`, for code that holds
    #: only the ``training.sde`` name: a phase-space network sees and predicts both blocks)
    phase_space: ClassVar[bool] = False
    #: whether the SDE is a noise schedule ``x_t = alpha(t) x_0 + sigma(t) eps`` with scalar coefficients and the
    #: queries ``alpha``/``log_alpha``/``sigma``/``lambda_t``/``t_from_lambda`` (VE, VP, sub-VP:
    #: :class:`~scoresde.sdes.scalar.ScalarSDE`); the exponential samplers, the exponential likelihood methods and the
    #: guidance options on the data prediction read it
    scalar_schedule: ClassVar[bool] = False

    def model_config(self) -> dict[str, Any]:
        """The ``model`` config entries that rebuild this SDE with :meth:`from_model_config`: :attr:`config_keys`
        and :attr:`config_options` read from the attributes of the same names, and ``num_scales = N``.

        ``ValueError`` naming the problem when a run config cannot hold the SDE (no :attr:`config_name`, ``T !=
        1``; scalar SDEs: a nonzero or tensor ``prior_mean``).
        """
        name = type(self).__name__
        if self.config_name is None:
            raise ValueError(f"{name} has no training.sde name: a run config cannot hold it")
        if self.T != 1.0:
            raise ValueError(f"{name} has T={self.T}: a run config has no place for T other than 1")
        out = {key: getattr(self, key) for key in (*self.config_keys, *self.config_options)}
        out["num_scales"] = self.N
        return out

    @classmethod
    def from_model_config(cls, model: Mapping[str, Any]) -> SDE:
        """The SDE of a run config's ``model`` section (the inverse of :meth:`model_config`):
        ``cls(N=int(model["num_scales"]), **{k: float(model[k]) for k in config_keys}, **{k: model[k] for k in
        config_options if k in model})``; ``KeyError`` naming a missing key."""
        if cls.config_name is None:
            raise ValueError(f"{cls.__name__} has no training.sde name: it cannot be built from a run config")
        kwargs = {key: float(model[key]) for key in cls.config_keys}
        kwargs.update({key: model[key] for key in cls.config_options if key in model})
        return cls(N=int(model["num_scales"]), **kwargs)

    def original_conventions(self, continuous: bool) -> tuple[str, str]:
        """``(label_type, output_type)`` that the original Score SDE ``get_score_fn`` uses for this SDE (what a
        :class:`~scoresde.models.ScoreModel` feeds its network and how it reads the output); ``ValueError`` for
        SDEs that the original code has no convention for."""
        raise ValueError(f"no original Score SDE convention for {type(self).__name__}; pass label_type and "
                         "output_type")

    # ----------------------------------------------------------------------------------------------
    # Auxiliary variables (phase-space SDEs carry a momentum next to the data). The defaults are those of an
    # SDE whose state is the data; losses, likelihoods and metrics call these instead of testing the class.
    # ----------------------------------------------------------------------------------------------
    @property
    def has_auxiliary(self) -> bool:
        """Whether the state carries variables besides the data (then likelihoods of data are bounds)."""
        return False

    @property
    def sampling_eps(self) -> float:
        """The default end time of the samplers and inverse methods, their ``eps``: ``1e-3`` (Score SDE's
        ``sampling_eps``, where the score is still learned); a schedule whose times are noise levels overrides it
        (:class:`~scoresde.sdes.EDM`: ``sigma_min``). ``eps=None`` in a sampler means this value
        (:func:`scoresde.numerics.times.resolve_eps`)."""
        return 1e-3

    @property
    def likelihood_eps(self) -> float:
        """The default start time of the likelihood ODE, its ``eps``: ``1e-5`` (Score SDE's likelihood evaluation);
        :class:`~scoresde.sdes.EDM` overrides it with ``sigma_min``. ``eps=None`` in :func:`scoresde.log_likelihood`
        and :func:`scoresde.bits_per_dim` means this value."""
        return 1e-5

    @property
    def fd_min_time(self) -> float:
        """Smallest time at which finite differences of the score in ``t`` are accurate (``1e-3``, the samplers'
        end time; phase-space kernels are stiff near 0 and raise it). Default first time of the FPE metric."""
        return 1e-3

    @property
    def random_initial_state(self) -> bool:
        """Whether :meth:`initial_state` draws (DSM-mode phase space draws the initial momentum; then a trainer draws
        it for the global batch and passes it back as ``auxiliary``/``momentum``)."""
        return False

    def initial_state(self, x: Tensor, auxiliary: Tensor | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """The state ``z_0`` that training perturbs for data ``x``: ``x`` itself here (no draws). Phase-space SDEs
        add the initial momentum of their score-matching mode (:meth:`scoresde.sdes.RecipeSDE.initial_state`)."""
        if auxiliary is not None:
            raise ValueError(f"{type(self).__name__} has no auxiliary variables; momentum must be None")
        return x

    def augment(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A state drawn from the initial law given data ``x`` (for likelihoods): ``x`` itself here (no draws)."""
        return x

    def auxiliary_logp(self, z: Tensor) -> Tensor:
        """``log q(aux_0)`` of the auxiliary part of an initial state (the entropy correction of the augmented
        likelihood bound); ``0`` when the state is the data."""
        return torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)

    def apply_std(self, std: Tensor, v: Tensor, transpose: bool = False) -> Tensor:
        """Multiply ``v`` by the kernel factor ``std`` of :meth:`marginal_prob` (``L v``, or ``L^T v`` with
        ``transpose``): ``x_t = mean + apply_std(std, noise)``. Per-example scalar ``std`` here."""
        return batch_broadcast(std, v) * v

    def score_to_eps(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Noise prediction from a score under the kernel of :meth:`marginal_prob`: ``eps = -L_t^T score``
        (``-sigma_t score`` for scalar kernels; Song et al. 2021, eq. 29; Dockhorn et al. 2022, §3.2)."""
        return -self.apply_std(self.marginal_prob(x, t)[1], score, transpose=True)

    def eps_to_score(self, x: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Score from a noise prediction: ``score = -L_t^-T eps`` (``-eps / sigma_t`` for scalar kernels)."""
        return -eps / batch_broadcast(self.marginal_prob(x, t)[1], eps)

    def loss_blocks(self, residual: Tensor, blocks: str) -> Tensor:
        """The part of a per-coordinate residual that a loss keeps: ``blocks="all"`` (everything) here."""
        if blocks != "all":
            raise ValueError(f"blocks={blocks!r} needs a phase-space SDE; {type(self).__name__} has one block "
                             "(valid value: all)")
        return residual

    def describe(self) -> dict:
        """The constructor-level parameters that define this SDE (used to tell two SDE objects apart)."""
        out = {}
        derived = {"discrete_sigmas", "discrete_betas", "alphas", "alphas_cumprod", "sqrt_alphas_cumprod",
                   "sqrt_1m_alphas_cumprod"}  # rebuilt from the parameters, in the default dtype of the moment
        for key, value in vars(self).items():
            if key in derived:
                continue
            if isinstance(value, Tensor):
                out[key] = value.detach().cpu().to(torch.float64).flatten().tolist()
            elif isinstance(value, (int, float, str, bool, type(None))):
                out[key] = value
        return {"class": type(self).__name__, **out}

    # ----------------------------------------------------------------------------------------------
    # The maths of the SDE.
    # ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``f(x, t)`` and diffusion ``G(t)`` of the forward SDE (Song et al. 2021, eq. 5)."""

    @abc.abstractmethod
    def marginal_prob(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation of the perturbation kernel ``p_0t(x(t) | x(0) = x)``."""

    @abc.abstractmethod
    def prior_sampling(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw a batch of states of shape ``shape`` from the prior ``p_T``."""

    @abc.abstractmethod
    def prior_logp(self, z: Tensor) -> Tensor:
        """Log-density of the prior at each state of the batch ``z``, shape ``(B,)``, in nats."""

    @abc.abstractmethod
    def denoise(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Final noise removal at time ``t``: an estimate of ``x(0)`` from ``x(t)`` and its score."""

    @abc.abstractmethod
    def ancestral_step(
        self, x: Tensor, t: Tensor, t_next: Tensor, score: Tensor, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One ancestral-sampling step from ``t`` to ``t_next < t``; returns ``(x_next, x_next_mean)``."""

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Discretisation ``x_{i+1} = x_i + f_i + G_i z_i`` of the forward SDE (Song et al. 2021, App. E).

        The default is Euler–Maruyama with step ``dt = T / N``: ``f_i = f(x, t) dt``, ``G_i = G(t) sqrt(dt)``.
        """
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * (dt**0.5)

    def langevin_alpha(self, t: Tensor) -> Tensor:
        """Per-example factor ``alpha_i`` that scales the Langevin corrector step (Song et al. 2021, Alg. 4/5).

        ``1`` by default; DDPM-type SDEs use the discrete ``alpha_i = 1 - beta_i``.
        """
        return torch.ones_like(t)

    def noise_std(self, t: Tensor) -> Tensor:
        """Per-example noise level used by the annealed-Langevin corrector's step size (Song & Ermon 2019).

        The marginal standard deviation for scalar SDEs.
        """
        return self.marginal_prob(torch.zeros(t.shape[0], 1, dtype=t.dtype, device=t.device), t)[1]

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (Song et al. 2021, eq. 6) or probability-flow ODE (eq. 13) for ``score_fn``."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """Reverse-time SDE ``dx = [f - G G^T score] dt + G dW_bar`` (Song et al. 2021, eq. 6).

    With ``probability_flow=True`` it is the probability-flow ODE ``dx = [f - 1/2 G G^T score] dt`` (eq. 13)
    and its diffusion is zero. ``discretize`` is the reverse-diffusion discretisation of App. E (eq. 46).
    """

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False) -> None:
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = bool(probability_flow)

    @property
    def N(self) -> int:
        """Number of discretisation steps of the forward SDE."""
        return self.forward.N

    @property
    def T(self) -> float:
        """End time of the forward SDE."""
        return self.forward.T

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift and diffusion of the reverse SDE (eq. 6) or the probability-flow ODE (eq. 13)."""
        drift, diffusion = self.forward.sde(x, t)
        score = self.score_fn(x, t)
        scale = 0.5 if self.probability_flow else 1.0
        drift = drift - batch_broadcast(diffusion, x) ** 2 * score * scale
        if self.probability_flow:
            diffusion = torch.zeros_like(diffusion)
        return drift, diffusion

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Reverse discretisation ``f_rev = f - G G^T score`` (halved for probability flow), ``G_rev = G``."""
        f, G = self.forward.discretize(x, t)
        scale = 0.5 if self.probability_flow else 1.0
        rev_f = f - batch_broadcast(G, x) ** 2 * self.score_fn(x, t) * scale
        rev_G = torch.zeros_like(G) if self.probability_flow else G
        return rev_f, rev_G


def same_sde(a: SDE, b: SDE) -> bool:
    """Whether ``a`` and ``b`` are the same diffusion: the same object, or the same class and parameters. The step
    count ``N`` is a discretisation, not a parameter of the diffusion, and is not compared."""
    if a is b:
        return True
    da, db = a.describe(), b.describe()
    da.pop("_N", None)
    db.pop("_N", None)
    return da == db
