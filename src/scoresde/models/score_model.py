"""A network plus an SDE as ``score_fn(x, t)``: the time/noise input and output conventions of Score SDE.

The network knows nothing about the SDE; this wrapper supplies what it is fed (``labels``) and how its output
becomes a score, for the perturbation kernel ``x_t = alpha_t x_0 + sigma_t eps`` (Song et al. 2021, eq. 29):

* output type ``'score'``: ``score = out``;
* ``'eps'`` (noise prediction, DDPM): ``score = -out / sigma_t``, i.e. ``eps = -sigma_t score``;
* ``'x0'`` (data prediction): ``score = (alpha_t out - x) / sigma_t**2``, i.e. Tweedie's formula
  ``x0 = (x + sigma_t**2 score) / alpha_t``.

:meth:`ScoreModel.score_fn`, :meth:`ScoreModel.eps_fn` and :meth:`ScoreModel.x0_fn` convert between them, so every
sampler (which takes ``score_fn``) works with every model.

The label conventions of the original ``models/utils.get_score_fn`` (reference README §4) are
``label_type``:

* ``'sigma'``: ``sigma(t)`` (VE, continuous; NCSN++ embeds its log with Fourier features);
* ``'time'``: ``999 t`` (VP / sub-VP, continuous; the original hard-codes 999 whatever ``N``);
* ``'timestep'``: ``t (N - 1)`` as a float, not rounded (VP, discrete DDPM);
* ``'sigma_index'``: ``round((T - t)(N - 1))`` as int64, an index into the network's descending sigma table
  (VE, discrete SMLD: NCSN, NCSNv2, discrete NCSN++/DDPM).

With ``continuous=False`` the ``sigma_t``/``alpha_t`` of the conversions come from the discrete tables at the
index the network sees (``sqrt_1m_alphas_cumprod[int(t (N - 1))]`` for DDPM, the flipped ``discrete_sigmas`` for
SMLD), as in the original; with ``continuous=True`` from ``sde.sigma(t)`` and ``sde.alpha(t)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..sdes.base import batch_broadcast
from ..sdes.scalar import VESDE, VPSDE, ScalarSDE, SubVPSDE

__all__ = ["LABEL_TYPES", "OUTPUT_TYPES", "LabelType", "OutputType", "ScoreModel", "original_conventions"]

OutputType = Literal["score", "eps", "x0"]
LabelType = Literal["sigma", "time", "timestep", "sigma_index"]
OUTPUT_TYPES: tuple[str, ...] = ("score", "eps", "x0")
LABEL_TYPES: tuple[str, ...] = ("sigma", "time", "timestep", "sigma_index")


def original_conventions(sde: ScalarSDE, continuous: bool) -> tuple[LabelType, OutputType]:
    """``(label_type, output_type)`` that the original ``get_score_fn`` uses for ``sde`` (README §4).

    VE: ``('sigma', 'score')`` continuous, ``('sigma_index', 'score')`` discrete. VP: ``('time', 'eps')``
    continuous, ``('timestep', 'eps')`` discrete. Sub-VP: always ``('time', 'eps')`` (the original ignores
    ``continuous`` there). This is the only place that looks at the SDE's family.
    """
    if isinstance(sde, VESDE):
        return ("sigma" if continuous else "sigma_index"), "score"
    if isinstance(sde, SubVPSDE):
        return "time", "eps"
    if isinstance(sde, VPSDE):
        return ("time" if continuous else "timestep"), "eps"
    raise ValueError(f"no original Score SDE convention for {type(sde).__name__}; pass label_type and output_type")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")
    return value


class ScoreModel(nn.Module):
    """A score model ``s_theta(x, t)`` built from a network ``net(x, labels)`` and a scalar SDE.

    Args:
        net: the plain network (``forward(x, labels)``), kept as ``self.net``.
        sde: the forward SDE (``VESDE``, ``VPSDE``, ``SubVPSDE`` or any :class:`ScalarSDE`).
        continuous: whether the model was trained in continuous time (``training.continuous``); selects the
            default labels and whether ``sigma_t``/``alpha_t`` come from the SDE or its discrete tables.
        label_type: what the network is fed, see the module docstring; default: the original convention.
        output_type: what the network predicts (``'score'``, ``'eps'``, ``'x0'``); default: the original one.

    ``model(x, t)`` is ``model.score_fn(x, t)``. Outputs have the dtype of ``x`` (NCSNv2's float64 division by
    its sigma buffer is cast back).
    """

    def __init__(self, net: nn.Module, sde: ScalarSDE, *, continuous: bool = True,
                 label_type: LabelType | None = None, output_type: OutputType | None = None) -> None:
        super().__init__()
        self.net = net
        self.sde = sde
        self.continuous = bool(continuous)
        default_labels, default_output = (None, None)
        if label_type is None or output_type is None:
            default_labels, default_output = original_conventions(sde, self.continuous)
        self.label_type: LabelType = _check_choice("label_type", label_type or default_labels, LABEL_TYPES)
        self.output_type: OutputType = _check_choice("output_type", output_type or default_output, OUTPUT_TYPES)
        if self.label_type == "sigma_index" and not hasattr(sde, "discrete_sigmas"):
            raise ValueError("label_type 'sigma_index' needs an SDE with a discrete sigma table (VESDE)")
        if not self.continuous and self.output_type != "score" and not hasattr(sde, "sqrt_1m_alphas_cumprod") \
                and not hasattr(sde, "discrete_sigmas"):
            raise ValueError(f"discrete {self.output_type!r} models need the SDE's discrete tables")

    def with_net(self, net: nn.Module) -> ScoreModel:
        """The same conventions around another network (e.g. the DDP- or compile-wrapped training copy)."""
        return ScoreModel(net, self.sde, continuous=self.continuous, label_type=self.label_type,
                          output_type=self.output_type)

    def extra_repr(self) -> str:
        return (f"sde={type(self.sde).__name__}, continuous={self.continuous}, label_type={self.label_type!r}, "
                f"output_type={self.output_type!r}")

    # ---- what the network sees ----------------------------------------------------------------------------
    def labels(self, t: Tensor) -> Tensor:
        """The network's time/noise input for forward times ``t`` (shape ``(B,)``), per ``label_type``."""
        sde = self.sde
        if self.label_type == "sigma":
            return sde.sigma(t)
        if self.label_type == "time":
            return t * 999
        if self.label_type == "timestep":
            return t * (sde.N - 1)
        labels = (sde.T - t) * (sde.N - 1)
        return torch.round(labels).long()

    def net_output(self, x: Tensor, t: Tensor) -> Tensor:
        """The raw network output ``net(x, labels(t))`` (a score, eps or x0 prediction per ``output_type``)."""
        return self.net(x, self.labels(t))

    def call_net(self, x: Tensor, labels: Tensor) -> Tensor:
        """``net(x, labels)`` on raw labels (e.g. the discrete SMLD/DDPM losses' integer noise indices)."""
        return self.net(x, labels)

    # ---- the perturbation kernel used by the conversions ----------------------------------------------------
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)`` of ``x_t = alpha_t x_0 + sigma_t eps`` used to convert outputs, shape ``(B,)``.

        Continuous models use ``sde.alpha(t)``, ``sde.sigma(t)``. Discrete ones use the table entry at the index
        the network sees: DDPM ``sqrt_alphas_cumprod[i]``, ``sqrt_1m_alphas_cumprod[i]`` with
        ``i = int(t (N - 1))``; SMLD ``1`` and the descending sigma table at ``round((T - t)(N - 1))``.
        """
        sde = self.sde
        if self.continuous:
            return sde.alpha(t), sde.sigma(t)
        if self.label_type == "sigma_index":
            sigmas = torch.flip(sde.discrete_sigmas, dims=(0,)).to(t.device)
            sigma = sigmas[self.labels(t)]
            return torch.ones_like(sigma), sigma
        if hasattr(sde, "sqrt_1m_alphas_cumprod"):
            index = (t * (sde.N - 1)).long()
            return (sde.sqrt_alphas_cumprod.to(t.device)[index], sde.sqrt_1m_alphas_cumprod.to(t.device)[index])
        return sde.alpha(t), sde.sigma(t)

    # ---- the three parameterisations ----------------------------------------------------------------------
    def score_fn(self, x: Tensor, t: Tensor) -> Tensor:
        """Score ``grad_x log p_t(x)``: ``out`` (score), ``-out / sigma_t`` (eps) or
        ``(alpha_t out - x) / sigma_t**2`` (x0). For VP models this is the original ``-model(x, 999 t) / std``."""
        out = self.net_output(x, t)
        if self.output_type == "score":
            return out.to(x.dtype)
        alpha, sigma = self.alpha_sigma(t)
        if self.output_type == "eps":
            return (-out / batch_broadcast(sigma, out)).to(x.dtype)
        return ((batch_broadcast(alpha, x) * out - x) / batch_broadcast(sigma, x) ** 2).to(x.dtype)

    def eps_fn(self, x: Tensor, t: Tensor) -> Tensor:
        """Noise prediction ``eps = -sigma_t score`` (exactly the network output for eps models)."""
        out = self.net_output(x, t)
        if self.output_type == "eps":
            return out.to(x.dtype)
        alpha, sigma = self.alpha_sigma(t)
        if self.output_type == "score":
            return (-batch_broadcast(sigma, out) * out).to(x.dtype)
        return ((x - batch_broadcast(alpha, x) * out) / batch_broadcast(sigma, x)).to(x.dtype)

    def x0_fn(self, x: Tensor, t: Tensor) -> Tensor:
        """Data prediction (Tweedie) ``x0 = (x + sigma_t**2 score) / alpha_t = (x - sigma_t eps) / alpha_t``."""
        out = self.net_output(x, t)
        if self.output_type == "x0":
            return out.to(x.dtype)
        alpha, sigma = self.alpha_sigma(t)
        sigma_b, alpha_b = batch_broadcast(sigma, x), batch_broadcast(alpha, x)
        if self.output_type == "score":
            return ((x + sigma_b**2 * out) / alpha_b).to(x.dtype)
        return ((x - sigma_b * out) / alpha_b).to(x.dtype)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """``score_fn(x, t)``, so that the model itself is a ``score_fn`` for the samplers."""
        return self.score_fn(x, t)
