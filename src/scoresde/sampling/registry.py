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

import inspect
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from .ddim import sample_ddim
from .dpm_solver import sample_dpm_solver
from .heun import sample_heun
from .phase_space import sample_sscs
from .samplers import sample_ode, sample_pc
from .unipc import sample_unipc

__all__ = ["RESERVED", "SAMPLERS", "SamplerRegistry", "SamplerSpec"]

#: keyword arguments every sampler takes that are not options of the method (supplied by :func:`scoresde.sample`)
RESERVED = ("cond", "generator", "callback")


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler: its function and what the rest of the library needs to know about it.

    Attributes:
        name: the name users pass (``sampler="ddim"``, ``--sampler ddim``, ``sampling.method``).
        fn: the sampler function (module docstring).
        coupled: whether the samples of a batch depend on each other (batch-averaged step sizes or error norms),
            a bool or a function of the resolved options; evaluation records the batch size when they do.
        summary: one line for ``--help`` and the docs.
        config_names: option name -> the ``sampling`` config field that holds it, where they differ (Score SDE's
            names: ``denoise`` is ``noise_removal``, the ODE ``method`` is ``ode_method``).
        aliases: deprecated option name -> its current name (accepted with a ``DeprecationWarning``).
    """

    name: str
    fn: Callable[..., tuple[Tensor, int]]
    coupled: bool | Callable[[Mapping[str, Any]], bool]
    summary: str
    config_names: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Tensor, int]:
        return self.fn(*args, **kwargs)

    def _params(self) -> list[inspect.Parameter]:
        params = inspect.signature(self.fn).parameters.values()
        return [p for p in params if p.kind is p.KEYWORD_ONLY and p.name not in RESERVED]

    def options(self) -> dict[str, Any]:
        """The options with their defaults (``progress`` included; ``cond``, ``generator``, ``callback`` not)."""
        return {p.name: p.default for p in self._params()}

    def option_types(self) -> dict[str, Any]:
        """The options' type hints (resolved), for config fields and CLI parsing."""
        hints = typing.get_type_hints(self.fn)
        return {p.name: hints.get(p.name, Any) for p in self._params()}

    @property
    def fixed_steps(self) -> bool:
        """Whether the sampler runs a fixed number of steps (takes ``steps`` and ``times``)."""
        return "steps" in self.options()

    def is_coupled(self, options: Mapping[str, Any]) -> bool:
        """Whether samples of a batch are coupled with these options (defaults filled in)."""
        resolved = {**self.options(), **options}
        return bool(self.coupled(resolved) if callable(self.coupled) else self.coupled)

    def resolve_aliases(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with deprecated names replaced by their current ones (a warning each; both given: an error)."""
        out = dict(options)
        for old, new in self.aliases.items():
            if old in out:
                if new in out:
                    raise ValueError(f"{old} is the deprecated name of {new}; pass only {new}")
                warnings.warn(f"sampler {self.name!r}: option {old!r} is deprecated, use {new!r}", DeprecationWarning,
                              stacklevel=4)
                out[new] = out.pop(old)
        return out

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse options this sampler does not take, naming the valid ones."""
        valid = self.options()
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for sampler {self.name!r}; valid options are: "
                             f"{', '.join(sorted(valid))}")


class SamplerRegistry(Mapping[str, SamplerSpec]):
    """Name -> :class:`SamplerSpec`, in registration order; an unknown name is a ``ValueError`` listing the valid
    ones."""

    def __init__(self) -> None:
        self._specs: dict[str, SamplerSpec] = {}

    def add(self, name: str, fn: Callable[..., tuple[Tensor, int]], *, coupled: bool | Callable = False,
            summary: str = "", config_names: Mapping[str, str] | None = None,
            aliases: Mapping[str, str] | None = None) -> SamplerSpec:
        """Register ``fn`` under ``name`` (see :class:`SamplerSpec`); a name may be registered once."""
        if name in self._specs:
            raise ValueError(f"sampler {name!r} is already registered")
        spec = SamplerSpec(name, fn, coupled, summary or (inspect.getdoc(fn) or "").split("\n")[0],
                           dict(config_names or {}), dict(aliases or {}))
        self._specs[name] = spec
        return spec

    def get(self, name: str) -> SamplerSpec:  # type: ignore[override]
        """The spec of ``name``; an unknown name raises ``ValueError`` listing the registered ones."""
        if name not in self._specs:
            raise ValueError(f"unknown sampler {name!r}; valid samplers are: {', '.join(self._specs)}")
        return self._specs[name]

    def __getitem__(self, name: str) -> SamplerSpec:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def _pc_coupled(options: Mapping[str, Any]) -> bool:
    return options.get("corrector") == "langevin"  # batch-mean norms in its step size


SAMPLERS = SamplerRegistry()
SAMPLERS.add("pc", sample_pc, coupled=_pc_coupled, config_names={"denoise": "noise_removal"},
             summary="predictor-corrector (Song et al. 2021, Alg. 1): reverse diffusion / Euler-Maruyama / ancestral "
                     "predictors, Langevin correctors")
SAMPLERS.add("ode", sample_ode, coupled=True, config_names={"denoise": "noise_removal", "method": "ode_method"},
             summary="probability-flow ODE with an adaptive solver (one error norm per batch)")
SAMPLERS.add("sscs", sample_sscs, config_names={"denoise": "noise_removal"}, aliases={"n_steps": "steps"},
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
