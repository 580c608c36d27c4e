"""The one table of samplers. Everything that names a sampler reads it: :func:`scoresde.sample`, the config's
``sampling`` section (its fields and choices), the CLI's ``--sampler`` choices, the evaluation protocol's
batch-coupling flag and the progress bars.

A sampler is a pure function ``fn(model, z, *, <options>, cond, generator, progress, callback) -> (x, nfe)``
(k-diffusion's ``sample_x(model, x, sigmas, extra_args, callback)``): ``model`` a model adapter
(:class:`~scoresde.models.DiffusionModel`, which carries its SDE), ``z`` the start state, its keyword-only
options with defaults and type hints. Adding a sampler is one new module with such a function plus one
:meth:`SamplerRegistry.add` line below (``docs/design/extending.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..numerics.registry import FunctionRegistry, MethodSpec, first_doc_line
from .ddim import sample_ddim
from .dpm_solver import sample_dpm_solver
from .heun import sample_heun
from .samplers import sample_ode, sample_pc
from .sscs import sample_sscs
from .unipc import sample_unipc

__all__ = ["RESERVED", "SAMPLERS", "SamplerRegistry", "SamplerSpec"]

#: keyword arguments every sampler takes that are not options of the method (supplied by :func:`scoresde.sample`)
RESERVED = ("cond", "generator", "callback")


@dataclass(frozen=True)
class SamplerSpec(MethodSpec):
    """One sampler: its function and what the rest of the library needs to know about it (besides the
    :class:`~scoresde.numerics.registry.MethodSpec` fields ``name``, ``fn``, ``summary``).

    Attributes:
        coupled: whether the samples of a batch depend on each other (batch-averaged step sizes or error norms),
            a bool or a function of the resolved options; evaluation records the batch size when they do.
        config_names: option name -> the ``sampling`` config field that holds it, where they differ (Score SDE's
            names: ``denoise`` is ``noise_removal``, the ODE ``method`` is ``ode_method``).
    """

    coupled: bool | Callable[[Mapping[str, Any]], bool] = False
    config_names: Mapping[str, str] = field(default_factory=dict)

    def config_fields(self) -> set[str]:
        """The ``sampling`` config fields this sampler reads: its options under their config names."""
        return {self.config_names.get(option, option) for option in self.options()}

    @property
    def fixed_steps(self) -> bool:
        """Whether the sampler runs a fixed number of steps (takes ``steps`` and ``times``)."""
        return "steps" in self.options()

    def is_coupled(self, options: Mapping[str, Any]) -> bool:
        """Whether samples of a batch are coupled with these options (defaults filled in)."""
        resolved = {**self.options(), **options}
        return bool(self.coupled(resolved) if callable(self.coupled) else self.coupled)


class SamplerRegistry(FunctionRegistry[SamplerSpec]):
    """Name -> :class:`SamplerSpec`, in registration order; an unknown name is a ``ValueError`` listing the valid
    ones."""

    def __init__(self) -> None:
        super().__init__("sampler", RESERVED)

    def add(self, name: str, fn: Callable[..., tuple[Tensor, int]], *, coupled: bool | Callable = False,
            summary: str = "", config_names: Mapping[str, str] | None = None) -> SamplerSpec:
        """Register ``fn`` under ``name`` (see :class:`SamplerSpec`); a name may be registered once."""
        spec = SamplerSpec(name, fn, summary or first_doc_line(fn), self.reserved, self.kind,
                           coupled, dict(config_names or {}))
        return self._register(spec)


def _pc_coupled(options: Mapping[str, Any]) -> bool:
    return options.get("corrector") == "langevin"  # batch-mean norms in its step size


SAMPLERS = SamplerRegistry()
SAMPLERS.add("pc", sample_pc, coupled=_pc_coupled, config_names={"denoise": "noise_removal"},
             summary="predictor-corrector (Song et al. 2021, Alg. 1): reverse diffusion / Euler-Maruyama / ancestral "
                     "predictors, Langevin correctors")
SAMPLERS.add("ode", sample_ode, coupled=True, config_names={"denoise": "noise_removal", "method": "ode_method"},
             summary="probability-flow ODE with an adaptive solver (one error norm per batch)")
SAMPLERS.add("sscs", sample_sscs, config_names={"denoise": "noise_removal"},
             summary="symmetric splitting sampler of phase-space SDEs (Dockhorn et al. 2022, Alg. 1)")
SAMPLERS.add("ddim", sample_ddim, config_names={"denoise": "noise_removal"},
             summary="DDIM (Song, Meng & Ermon 2021): deterministic (eta=0) or stochastic (eta>0); VE/VP/sub-VP "
                     "and, in matrix form, PSLD/CLD")
SAMPLERS.add("heun", sample_heun, coupled=False, config_names={"denoise": "noise_removal"},
             summary="EDM's Heun sampler (Karras et al. 2022, Alg. 2), deterministic or with churn, for VE/VP/sub-VP")
SAMPLERS.add("unipc", sample_unipc, coupled=False, config_names={"denoise": "noise_removal", "corrector":
             "unipc_corrector", "prediction": "unipc_prediction"},
             summary="UniPC (Zhao et al. 2023): multistep predictor UniP-p with the free corrector UniC, orders 1-3, "
                     "for VE/VP/sub-VP")
SAMPLERS.add("dpm_solver", sample_dpm_solver, coupled=lambda options: options.get("method") == "adaptive",
             config_names={"denoise": "noise_removal", "method": "dpm_method", "rtol": "dpm_rtol", "atol": "dpm_atol"},
             summary="DPM-Solver / DPM-Solver++ (Lu et al. 2022): single/multistep orders 1-3, adaptive, "
                     "SDE-DPM-Solver++, for VE/VP/sub-VP")
