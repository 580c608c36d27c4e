"""The model adapter: one object that every sampler, loss and likelihood consumes.

A :class:`DiffusionModel` carries its forward SDE (``model.sde``) and answers four questions about a batch of states
``x`` at forward times ``t`` (a 1-D tensor), each with the conditioning inputs as keyword arguments (``**cond``,
e.g. ``class_labels``):

* ``score(x, t, **cond)``: ``grad_x log p_t(x)``;
* ``eps(x, t, **cond)``: the noise ``eps`` of ``x_t = mean + L_t eps`` (``-L_t^T score``; ``-sigma_t score`` for
  scalar SDEs);
* ``x0(x, t, **cond)``: the data prediction ``E[x_0 | x_t]`` (Tweedie's formula, ``sde.denoise``);
* ``v(x, t, **cond)``: the velocity ``alpha_t eps - sigma_t x0`` of Salimans & Ho 2022 (scalar SDEs).

Each returns the network's own output exactly when that is what the network predicts (``model.prediction``), and
converts otherwise, with the coefficients the network was trained with (the discrete tables for discrete-time
models). The idea is k-diffusion's ``Denoiser`` and DPM-Solver's ``model_wrapper``: samplers never rebuild one
prediction from another with a schedule that is not the model's.

``model(x, t, **cond)`` is ``model.score(x, t, **cond)``, so an adapter is also a plain score function. A plain
callable ``score_fn(x, t)`` (or ``score_fn(x, t, **cond)``) is wrapped by :func:`as_model`, which every entry point
calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..sdes.base import SDE, batch_broadcast, same_sde

__all__ = ["PREDICTIONS", "CountingModel", "DiffusionModel", "ScoreFunctionModel", "as_model", "check_cond",
           "model_and_arguments", "slice_cond"]

PREDICTIONS = ("score", "eps", "x0", "v")

Cond = Mapping[str, Any]


def check_cond(cond: Cond | None, batch_size: int) -> dict[str, Any]:
    """Validate a conditioning dict: string keys, values batch-first tensors of ``batch_size`` rows or ``None`` (the
    unconditional call of a conditional model); returns a plain dict (``{}`` for ``None``)."""
    if cond is None:
        return {}
    if not isinstance(cond, Mapping):
        raise TypeError(f"cond must be a dict of batch-first tensors, e.g. {{'class_labels': y}}, got "
                        f"{type(cond).__name__}")
    out = {}
    for key, value in cond.items():
        if not isinstance(key, str):
            raise TypeError(f"cond keys must be strings (the model's keyword arguments), got {key!r}")
        if value is not None:
            if not isinstance(value, Tensor) or value.dim() == 0:
                raise ValueError(f"cond[{key!r}] must be a batch-first tensor or None, got {type(value).__name__}"
                                 f"{'' if not isinstance(value, Tensor) else ' of shape ()'}")
            if value.shape[0] != batch_size:
                raise ValueError(f"cond[{key!r}] has {value.shape[0]} rows but the batch has {batch_size}")
        out[key] = value
    return out


def slice_cond(cond: Cond | None, index: Any) -> dict[str, Any]:
    """The rows ``index`` (a slice, an index tensor or a boolean mask) of every conditioning tensor, so that ``cond``
    follows ``x`` wherever a batch is split."""
    if not cond:
        return {}
    return {key: (None if value is None else value[index]) for key, value in cond.items()}


class DiffusionModel:
    """The model-adapter interface (module docstring). Subclasses set ``sde`` and ``prediction`` and implement
    :meth:`score` (and the native prediction); the other predictions are derived here through the SDE's kernel.

    ``step`` and ``config`` are set by the checkpoint loaders (``None`` otherwise).
    """

    sde: SDE
    prediction: str = "score"
    step: int | None = None
    config: Any = None

    # ---- the four predictions --------------------------------------------------------------------------------
    def score(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Score ``grad_x log p_t(x | cond)``."""
        raise NotImplementedError

    def eps(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Noise prediction ``-L_t^T score`` (``sde.score_to_eps``); the network output for noise-predicting
        networks."""
        return self.sde.score_to_eps(x, t, self.score(x, t, **cond))

    def x0(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Data prediction ``E[x_0 | x_t]`` (Tweedie's formula, ``sde.denoise``)."""
        return self.sde.denoise(x, t, self.score(x, t, **cond))

    def v(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Velocity ``alpha_t eps - sigma_t x0`` (Salimans & Ho 2022) of a scalar SDE, from one network call."""
        alpha, sigma = self.alpha_sigma(t)
        eps = self.eps(x, t, **cond)
        x0 = (x - batch_broadcast(sigma, x) * eps) / batch_broadcast(alpha, x)
        return batch_broadcast(alpha, x) * eps - batch_broadcast(sigma, x) * x0

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)`` of the scalar kernel ``x_t = alpha_t x_0 + sigma_t eps`` used by the conversions."""
        if not hasattr(self.sde, "alpha"):
            raise ValueError(f"{type(self.sde).__name__} has a matrix kernel: no scalar alpha_t, sigma_t (no v "
                             "prediction)")
        return self.sde.alpha(t), self.sde.sigma(t)


class ScoreFunctionModel(DiffusionModel):
    """A plain score function ``score_fn(x, t)`` (or ``score_fn(x, t, **cond)``) of the SDE ``sde`` as an adapter;
    ``eps``, ``x0`` and ``v`` are converted with the SDE's own kernel."""

    prediction = "score"

    def __init__(self, sde: SDE, score_fn: Callable[..., Tensor]) -> None:
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an SDE (scoresde.sdes), got {type(sde).__name__}")
        self.sde = sde
        self.fn = score_fn

    def score(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """``score_fn(x, t, **cond)`` (``score_fn(x, t)`` when there is no conditioning)."""
        return self.fn(x, t, **cond) if cond else self.fn(x, t)

    @property
    def network_evaluations(self) -> int | None:
        """The wrapped function's own count of network evaluations (a guided function's), or ``None``."""
        return getattr(self.fn, "network_evaluations", None)

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self.score(x, t, **cond)

    def __repr__(self) -> str:
        return f"ScoreFunctionModel(sde={type(self.sde).__name__}, score_fn={self.fn!r})"


def as_model(sde: SDE | None, score_fn: Any) -> DiffusionModel:
    """The adapter for ``score_fn``: an adapter itself (or its bound ``score``/``score_fn`` method) is returned as it
    is, a plain callable is wrapped in :class:`ScoreFunctionModel`.

    ``sde`` may be ``None`` for an adapter (its own SDE is used). An adapter whose SDE differs from ``sde`` is an
    error: perturbing with one SDE and converting the network output with another gives wrong numbers silently.
    """
    owner = getattr(score_fn, "__self__", None)
    if isinstance(owner, DiffusionModel) and getattr(score_fn, "__name__", "") in ("score", "forward"):
        score_fn = owner
    if isinstance(score_fn, DiffusionModel):
        if sde is not None and not same_sde(sde, score_fn.sde):
            raise ValueError(f"the model's SDE ({_sde_text(score_fn.sde)}) differs from the SDE passed "
                             f"({_sde_text(sde)}); pass the model's own SDE (model.sde) or none")
        return score_fn
    if not callable(score_fn):
        raise TypeError(f"expected a model adapter or a callable score_fn(x, t), got {type(score_fn).__name__}")
    if sde is None:
        raise TypeError("a plain score function needs its SDE: pass sde=... (or a model adapter, which carries it)")
    return ScoreFunctionModel(sde, score_fn)


def model_and_arguments(sde: SDE | DiffusionModel | None, score_fn: Any, *args: Any,
                        last_default: Any = None) -> tuple[DiffusionModel, tuple[Any, ...]]:
    """The one normaliser of the two call forms of every entry point ``f(sde, score_fn, a_1, ..., a_k, ...)``
    (:func:`scoresde.sample`, :func:`scoresde.log_likelihood`, :func:`scoresde.bits_per_dim`, :func:`scoresde.inpaint`,
    :func:`scoresde.colorize`, :func:`scoresde.encode`); returns ``(model, (a_1, ..., a_k))``.

    * sde-first, ``f(sde, score_fn, a_1, ...)``: ``score_fn`` is a plain ``score_fn(x, t)`` or an adapter; the model is
      :func:`as_model` ``(sde, score_fn)`` (an adapter's SDE must equal ``sde``).
    * model-first, ``f(model, a_1, ...)``: Python binds ``a_1`` to ``score_fn`` and ``a_i`` to the slot of
      ``a_(i-1)``; this shifts them back. The last slot ``a_k`` keeps its keyword value when ``a_k`` was not given
      positionally; given both ways it is a ``TypeError``. ``f(model, a_1=...)`` (everything by keyword) works too.

    ``args`` are the values bound to the slots ``a_1 .. a_k`` and ``last_default`` the default of ``a_k`` (to tell a
    keyword value from the default).
    """
    if isinstance(sde, DiffusionModel) and score_fn is None:
        return sde, args
    if isinstance(sde, DiffusionModel) and not callable(score_fn):
        if not args:
            raise TypeError("the model-first form takes no second positional argument here")
        shifted = (score_fn, *args[:-1])
        if shifted[-1] is None:
            shifted = (*shifted[:-1], args[-1])
        elif args[-1] is not last_default and args[-1] != last_default:
            raise TypeError(f"an argument was given twice: positionally ({shifted[-1]!r}) and by keyword "
                            f"({args[-1]!r}); the model-first form is f(model, {', '.join(['...'] * len(args))})")
        return sde, shifted
    return as_model(sde, score_fn), args


def _sde_text(sde: SDE) -> str:
    desc = sde.describe()
    items = [f"{k}={v}" for k, v in desc.items() if k != "class" and not isinstance(v, list)]
    return f"{desc['class']}({', '.join(items)})"


class CountingModel(DiffusionModel):
    """Wrap an adapter, count its network evaluations (the NFE of a sampler) and remember the last score
    evaluation, so that a sampler's ``callback`` can report a data prediction without another network call.

    Each call counts 1, unless the adapter keeps its own running count ``network_evaluations`` (an int; guided models
    do: classifier-free guidance's batched call of ``2B`` rows counts 2), then the count's increase during the call."""

    def __init__(self, model: DiffusionModel, cond: Cond | None = None) -> None:
        self.inner = model
        self.sde = model.sde
        self.prediction = model.prediction
        self.cond = dict(cond or {})
        self.calls = 0
        self.last: tuple[Tensor, Tensor, str, Tensor] | None = None

    def _call(self, kind: str, x: Tensor, t: Tensor, cond: dict[str, Any]) -> Tensor:
        before = getattr(self.inner, "network_evaluations", None)
        out = getattr(self.inner, kind)(x, t, **{**self.cond, **cond})
        after = getattr(self.inner, "network_evaluations", None)
        # a model that counts its own network evaluations (guidance: a 2B-row call is 2) is taken at its word
        self.calls += 1 if before is None or after is None else after - before
        self.last = (x, t, kind, out)
        return out

    def score(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._call("score", x, t, cond)

    def eps(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._call("eps", x, t, cond)

    def x0(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._call("x0", x, t, cond)

    def v(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self._call("v", x, t, cond)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.inner.alpha_sigma(t)

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return self.score(x, t, **cond)

    def last_x0(self) -> Tensor | None:
        """The data prediction of the last evaluation (converted from it without a network call), or ``None``."""
        if self.last is None:
            return None
        x, t, kind, out = self.last
        with torch.no_grad():
            if kind == "x0":
                return out
            if kind == "eps":
                return self.sde.denoise(x, t, self.sde.eps_to_score(x, t, out))
            if kind == "score":
                return self.sde.denoise(x, t, out)
            alpha, sigma = (batch_broadcast(c, x) for c in self.alpha_sigma(t))
            return (alpha * x - sigma * out) / (alpha**2 + sigma**2)
