"""The package's structure, read from the source: layers that only point down, no import cycle (function-level and
``importlib`` imports counted), deferred imports only where they say why, one import path per public name, no module
over 600 lines, and no two modules of one name that says nothing (``phase_space.py``)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections import defaultdict
from pathlib import Path

import pytest

import scoresde

SRC = Path(scoresde.__file__).parent

#: the packages, lowest first: a module may import its own package and packages listed before it, nothing after.
#: ``__init__``/``__main__`` of the top level (rank of ``cli`` and above) are the entry points.
LAYERS = ("sdes", "numerics", "nets", "models", "toy", "data", "metrics", "losses", "likelihood", "sampling",
          "guidance", "inverse", "config", "checkpoint", "training", "evaluation", "", "cli", "__main__")
MAX_LINES = 600


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level:
        base = base[: len(base) - level + 1]
        return ".".join([*base, name] if name else base)
    return name or ""


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


class _Imports(ast.NodeVisitor):
    """Every scoresde module a file imports, with whether the import sits inside a function and its line."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package, self.depth = module, is_package, 0
        self.found: list[tuple[str, bool, int]] = []  # (imported module, inside a function, line)
        self.deferred: list[int] = []  # lines of function-level imports (any package)

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def _add(self, name: str, line: int) -> None:
        target = _known(name) if name.startswith("scoresde") else None
        if target and target != self.module:
            self.found.append((target, self.depth > 0, line))

    def visit_Import(self, node: ast.Import) -> None:
        if self.depth:
            self.deferred.append(node.lineno)
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if self.depth:
            self.deferred.append(node.lineno)
        base = _resolve(self.module, self.is_package, node.level, node.module)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self._add(full if full in MODULES else base, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = getattr(func, "attr", getattr(func, "id", ""))
        if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            self._add(str(node.args[0].value), node.lineno)
        self.generic_visit(node)


def _scan() -> dict[str, _Imports]:
    out = {}
    for module, (path, is_package) in MODULES.items():
        visitor = _Imports(module, is_package)
        visitor.visit(ast.parse(path.read_text()))
        out[module] = visitor
    return out


SCAN = _scan()


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_layer() -> None:
    assert {_package(m) for m in MODULES} <= set(LAYERS), sorted({_package(m) for m in MODULES} - set(LAYERS))


def test_layers_only_point_down() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = sorted(f"{m} imports {target} (line {line})" for m, scan in SCAN.items() for target, _, line in scan.found
                 if rank[_package(target)] > rank[_package(m)])
    assert not bad, "\n".join(bad)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every import edge."""
    edges = {m: {t for t, _, _ in scan.found} for m, scan in SCAN.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_counting_function_level_and_importlib_imports() -> None:
    assert not _cycles()


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above must be able to fail: a two-module cycle injected into the scan is found."""
    a, b = "scoresde.sdes.base", "scoresde.sdes.scalar"
    saved = list(SCAN[a].found)
    SCAN[a].found.append((b, True, 0))
    try:
        assert [a, b] in _cycles() or any({a, b} <= set(c) for c in _cycles())
    finally:
        SCAN[a].found[:] = saved


def test_deferred_imports_say_why_and_internal_ones_are_only_in_the_cli() -> None:
    """A function-level import is there for start-up time (the CLI: ``scoresde --help`` must not import torch's
    heavy extras) or an optional dependency; each says so in a comment on its line or the line before."""
    bad = []
    for module, scan in SCAN.items():
        lines = MODULES[module][0].read_text().splitlines()
        for line in scan.deferred:
            context = lines[line - 1] + (lines[line - 2] if line >= 2 else "")
            if "#" not in context:
                bad.append(f"{module}:{line}: {lines[line - 1].strip()}")
        bad += [f"{module}:{line}: deferred import of {target} outside the CLI" for target, inside, line in scan.found
                if inside and _package(module) not in ("cli", "")]
    assert not bad, "\n".join(bad)


def _public_modules():
    for info in pkgutil.walk_packages(scoresde.__path__, "scoresde."):
        if info.name != "scoresde.__main__":
            yield info.name, info.ispkg


def test_one_import_path_per_public_name() -> None:
    """A name in a module's ``__all__`` is defined there, or (for a package) in one of its own submodules: no module
    re-exports another package's names, so every public name has one canonical path (CHANGELOG.md lists the old
    ones)."""
    bad = []
    for name, is_package in _public_modules():
        module = importlib.import_module(name)
        path = MODULES[name][0]
        tree = ast.parse(path.read_text())
        imported = {}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                for alias in node.names:
                    imported[alias.asname or alias.name] = base
        for public in getattr(module, "__all__", ()):
            obj = getattr(module, public, None)
            assert obj is not None, f"{name}.__all__ lists {public}, which does not exist"
            if inspect.ismodule(obj):
                continue
            source = imported.get(public)
            if source is not None and not (is_package and source.startswith(name + ".")):
                bad.append(f"{name}.{public} is re-exported from {source}")
    assert not bad, "\n".join(bad)


def test_no_module_over_600_lines_and_no_two_modules_named_phase_space() -> None:
    long = {m: n for m, (path, _) in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long
    names = defaultdict(list)
    for module in MODULES:
        names[module.rpartition(".")[2]].append(module)
    assert len(names["phase_space"]) <= 1, names["phase_space"]


@pytest.mark.parametrize("name", ["compatibility", "deprecated alias", "kept for callers", "for older code"])
def test_no_compatibility_layer_is_left(name: str) -> None:
    hits = [f"{m}" for m, (path, _) in MODULES.items() if name in path.read_text().lower()]
    assert not hits, hits
