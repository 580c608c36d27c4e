"""One name -> function registry, shared by every table of methods (the samplers of :mod:`scoresde.sampling`, the
inverse-problem methods of :mod:`scoresde.inverse`).

A method is a plain function whose keyword-only parameters with defaults are its user-facing options (k-diffusion's
one-signature samplers); the registry answers, from that signature alone, which options a method takes with their
defaults and types, and refuses an unknown name or option in one line naming the valid ones. Parameters listed in
``reserved`` (``cond``, ``generator``, ...) are supplied by the entry point and are not options.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["FunctionRegistry", "MethodSpec", "first_doc_line"]


@dataclass(frozen=True)
class MethodSpec:
    """One registered method: its ``name``, function ``fn``, a one-line ``summary`` (for ``--help`` and the docs),
    the parameter names the entry point supplies (``reserved``, not options), and ``kind`` (what the registry holds,
    e.g. ``"sampler"``, for messages)."""

    name: str
    fn: Callable[..., Any]
    summary: str = ""
    reserved: tuple[str, ...] = ()
    kind: str = "method"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def _params(self) -> list[inspect.Parameter]:
        params = inspect.signature(self.fn).parameters.values()
        return [p for p in params if p.kind is p.KEYWORD_ONLY and p.name not in self.reserved]

    def options(self) -> dict[str, Any]:
        """The options with their defaults (the keyword-only parameters, ``reserved`` ones excluded)."""
        return {p.name: p.default for p in self._params()}

    def option_types(self) -> dict[str, Any]:
        """The options' type hints (resolved), for config fields and CLI parsing."""
        hints = typing.get_type_hints(self.fn)
        return {p.name: hints.get(p.name, Any) for p in self._params()}

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse options this method does not take, naming the valid ones (never a silently ignored option)."""
        valid = self.options()
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for {self.kind} {self.name!r}; valid options are: "
                             f"{', '.join(sorted(valid))}")


S = TypeVar("S", bound=MethodSpec)


class FunctionRegistry(Mapping[str, S], Generic[S]):
    """Name -> spec, in registration order. ``kind`` names what it holds in messages (``unknown sampler 'x'; valid
    samplers are: ...``). Subclasses add what their methods need to declare (:class:`scoresde.sampling.registry.
    SamplerRegistry`: batch coupling, config names)."""

    def __init__(self, kind: str, reserved: tuple[str, ...] = ()) -> None:
        self.kind, self.reserved = kind, tuple(reserved)
        self._specs: dict[str, S] = {}

    def _register(self, spec: S) -> S:
        if spec.name in self._specs:
            raise ValueError(f"{self.kind} {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def add(self, name: str, fn: Callable[..., Any], *, summary: str = "") -> S:
        """Register ``fn`` under ``name`` (a name may be registered once); ``summary`` defaults to the first line of
        ``fn``'s docstring."""
        spec = MethodSpec(name, fn, summary or first_doc_line(fn), self.reserved, self.kind)
        return self._register(spec)  # type: ignore[arg-type]

    def get(self, name: str) -> S:  # type: ignore[override]
        """The spec of ``name``; an unknown name raises ``ValueError`` listing the registered ones."""
        if name not in self._specs:
            raise ValueError(f"unknown {self.kind} {name!r}; valid {self.kind}s are: {', '.join(self._specs)}")
        return self._specs[name]

    def __getitem__(self, name: str) -> S:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def first_doc_line(fn: Callable[..., Any]) -> str:
    """The first line of ``fn``'s docstring (a registered method's default summary)."""
    return (inspect.getdoc(fn) or "").split("\n")[0]

