"""Read an original Score SDE ``configs/**.py`` file **without importing or executing it**.

The original configs are ``ml_collections`` Python files. Running them would need ``ml_collections`` (and
``torch`` for ``config.device``) and would execute arbitrary code from the file. Instead the file is parsed with
:mod:`ast` and a small evaluator interprets the restricted subset those files use:

* ``import ...`` / ``from configs.default_<x>_configs import get_default_configs`` (the default config is read
  from the sibling ``default_<x>_configs.py`` next to the file's ``configs/`` root when it exists, else from the
  built-in copy in :data:`scoresde.config.presets.original.DEFAULTS`);
* one ``def get_config():`` (or ``get_default_configs``) whose body holds only assignments and ``return``;
* assignment values: literals (numbers, strings, booleans, tuples, lists, negative numbers), a new
  ``ml_collections.ConfigDict()``, a call of the imported default-config function, a name or an attribute
  chain (``config.training``), chained targets (``config.data = data = ConfigDict()``).

Assignments to ``device`` are skipped (the hardware is the caller's choice). Anything else raises
``ValueError`` with the line number; nothing from the file is ever evaluated as code.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

from .presets.original import DEFAULTS

__all__ = ["parse_config_file", "parse_config_source"]

_ENTRY_POINTS = ("get_config", "get_default_configs")
_SKIPPED_KEYS = frozenset({"device"})


class _Evaluator:
    """Interprets the body of ``get_config()``: a tiny environment of local names bound to dicts or literals."""

    def __init__(self, filename: str, defaults: dict[str, Any]) -> None:
        self.filename = filename
        self.defaults = defaults  # imported function name -> config dict it returns
        self.env: dict[str, Any] = {}

    def error(self, node: ast.AST, what: str) -> ValueError:
        """The error for an unsupported construct at ``node``, naming the file and line."""
        line = getattr(node, "lineno", "?")
        return ValueError(f"{self.filename}:{line}: unsupported construct in a Score SDE config file: {what}")

    def value(self, node: ast.expr) -> Any:
        """The value of an expression: a literal, a new ConfigDict, a default config, a name or an attribute."""
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("ml_collections.ConfigDict", "ConfigDict") and not node.args and not node.keywords:
                return {}
            if name in self.defaults and not node.args and not node.keywords:
                return copy.deepcopy(self.defaults[name])
            raise self.error(node, f"call of {name}()")
        if isinstance(node, ast.Name):
            if node.id not in self.env:
                raise self.error(node, f"undefined name {node.id!r}")
            return self.env[node.id]
        if isinstance(node, ast.Attribute):
            parent = self.value(node.value)
            if not isinstance(parent, dict) or node.attr not in parent:
                raise self.error(node, f"unknown config entry {ast.unparse(node)!r}")
            return parent[node.attr]
        try:
            literal = ast.literal_eval(node)
        except ValueError:
            raise self.error(node, ast.unparse(node)) from None
        return _jsonable(literal)

    def assign(self, target: ast.expr, value: Any) -> None:
        """Bind ``value`` to a local name or a config entry."""
        if isinstance(target, ast.Name):
            self.env[target.id] = value
        elif isinstance(target, ast.Attribute):
            parent = self.value(target.value)
            if not isinstance(parent, dict):
                raise self.error(target, f"{ast.unparse(target.value)} is not a config section")
            parent[target.attr] = value
        else:
            raise self.error(target, f"assignment target {ast.unparse(target)}")

    def run(self, body: list[ast.stmt]) -> dict[str, Any]:
        """Interpret the function body; the config it returns."""
        for stmt in body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # docstring
            if isinstance(stmt, ast.Assign):
                if any(isinstance(t, ast.Attribute) and t.attr in _SKIPPED_KEYS for t in stmt.targets):
                    continue
                value = self.value(stmt.value)
                for target in stmt.targets:
                    self.assign(target, value)
            elif isinstance(stmt, ast.Return) and stmt.value is not None:
                result = self.value(stmt.value)
                if not isinstance(result, dict):
                    raise self.error(stmt, "get_config() does not return a config")
                return result
            else:
                raise self.error(stmt, type(stmt).__name__)
        raise ValueError(f"{self.filename}: get_config() has no return statement")


def _jsonable(value: Any) -> Any:
    """Tuples become lists (the JSON layout of the fixtures' configs)."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _import_defaults(stmt: ast.ImportFrom, config_root: Path | None, filename: str,
                     chain: tuple[str, ...]) -> dict[str, Any]:
    module = (stmt.module or "").split(".")[-1]
    names = {alias.asname or alias.name: alias.name for alias in stmt.names}
    if any(name not in _ENTRY_POINTS for name in names.values()):
        raise ValueError(f"{filename}:{stmt.lineno}: unsupported import from {stmt.module}: {list(names.values())}")
    source = config_root / f"{module}.py" if config_root is not None else None
    if source is not None and source.is_file():
        key = str(source.resolve())
        if key in chain:  # a file importing itself, directly or through others: one line, not a RecursionError
            cycle = " -> ".join(Path(f).name for f in (*chain[chain.index(key):], key))
            raise ValueError(f"{filename}:{stmt.lineno}: config files import each other in a cycle: {cycle}")
        defaults = _parse(source.read_text(), str(source), config_root, (*chain, key))
    elif module in DEFAULTS:
        defaults = copy.deepcopy(DEFAULTS[module])
    else:
        raise ValueError(f"{filename}:{stmt.lineno}: cannot find {module}.py (known defaults: {sorted(DEFAULTS)})")
    return dict.fromkeys(names, defaults)


def parse_config_source(source: str, filename: str = "<config>", config_root: Path | None = None) -> dict[str, Any]:
    """The config that ``get_config()`` of a Score SDE config file's ``source`` would return, as nested dicts.

    ``config_root`` is the ``configs/`` folder used to resolve ``from configs.<module> import ...``; files that
    import each other in a cycle are one ``ValueError`` naming the cycle, a syntax error one naming file and line.
    """
    return _parse(source, filename, config_root, (str(Path(filename).resolve()),))


def _parse(source: str, filename: str, config_root: Path | None, chain: tuple[str, ...]) -> dict[str, Any]:
    """:func:`parse_config_source` with ``chain``, the resolved paths of the files whose imports led here."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as err:
        raise ValueError(f"{filename}:{err.lineno}: not a Python file that can be parsed ({err.msg})") from None
    defaults: dict[str, Any] = {}
    functions: dict[str, ast.FunctionDef] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            continue  # ml_collections / torch: not needed by the evaluator
        if isinstance(stmt, ast.ImportFrom):
            defaults.update(_import_defaults(stmt, config_root, filename, chain))
        elif isinstance(stmt, ast.FunctionDef) and stmt.name in _ENTRY_POINTS:
            functions[stmt.name] = stmt
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # module docstring
        else:
            raise ValueError(f"{filename}:{stmt.lineno}: unsupported top-level statement {type(stmt).__name__}")
    for name in _ENTRY_POINTS:
        if name in functions:
            fn = functions[name]
            if fn.args.args or fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs or fn.decorator_list:
                raise ValueError(f"{filename}:{fn.lineno}: {name}() must take no arguments and have no decorators")
            return _Evaluator(filename, defaults).run(fn.body)
    raise ValueError(f"{filename}: no get_config() function")


def parse_config_file(path: str | Path) -> dict[str, Any]:
    """Parse an original ``configs/**.py`` file (see the module docstring for the accepted subset).

    The ``configs/`` root that holds ``default_*_configs.py`` is the nearest ancestor folder named ``configs``.
    """
    path = Path(path)
    root = next((p for p in path.resolve().parents if p.name == "configs"), path.resolve().parent)
    return parse_config_source(path.read_text(), str(path), root)
