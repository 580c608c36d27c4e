"""The documentation cannot drift from the code: the site builds with ``mkdocs build --strict`` (a broken link or a
missing API reference fails), every ```python block of README.md and of docs/*.md runs (blocks of one page in order,
in one namespace, in a fresh folder), a ``print(...)  # prints: TEXT`` line prints TEXT, every ``scoresde.a.b``
name the pages mention imports, every ``scoresde`` command line of a ```bash block parses with the CLI's own parser,
and the removed names of the 0.2.0 redesign are mentioned nowhere.

A block opts out of running only with ``<!-- no-test: REASON -->`` on the line before its fence, REASON saying why.
The examples load ``runs/digits``: the tests create it as an untrained ``digits/vp_ddpmpp`` model saved with
:func:`scoresde.checkpoint.save_checkpoint` (what ``scoresde train`` writes, at step 0).
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))

# Gone in 0.2.0 (CHANGELOG.md): no page may advertise them.
REMOVED_NAMES = ("phase_space_loss", "augmented_log_likelihood", "augmented_bits_per_dim", "phase_space_fp_loss",
                 "scoresde.objectives", "scoresde.configs", "scoresde.training.presets", "scoresde.sampling.grids")

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\s`]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
NO_TEST = re.compile(r"<!--\s*no-test:(?P<reason>.*?)-->\s*$")
PRINTS = re.compile(r"^(?P<indent>\s*)print\((?P<args>.*)\)\s*#\s*prints:\s?(?P<expected>.*)$")
DOTTED = re.compile(r"(?<![\w/.-])scoresde(?:\.[A-Za-z_]\w*)+")


@dataclass
class Block:
    page: Path
    lang: str
    body: str
    line: int  # 1-based line of the opening fence
    skip_reason: str | None


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NO_TEST.search(before)
        body = "\n".join(row[len(m["indent"]):] for row in m["body"].split("\n"))
        found.append(Block(page, m["lang"].lower(), body, line, marker["reason"].strip() if marker else None))
    return found


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


# ---- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/digits`` as ``scoresde train --config digits/vp_ddpmpp`` lays it out, untrained (step 0)."""
    from scoresde.checkpoint import save_checkpoint
    from scoresde.config import build_score_model, resolve_config

    run = tmp_path_factory.mktemp("shared") / "digits"
    config = resolve_config("digits/vp_ddpmpp")
    model = build_score_model(config)
    save_checkpoint(run / "checkpoints" / "checkpoint_0", model, config, step=0, ema=model.net)
    return run


# ---- the examples run ------------------------------------------------------------------------------------------


def _expect_print(where: str, expected: str, *args: Any) -> None:
    got = " ".join(str(a) for a in args)
    print(got)
    assert got == expected, f"{where}: printed {got!r}, the comment says {expected!r}"


def _checked_source(block: Block) -> str:
    """The block with each ``print(...)  # prints: TEXT`` turned into a call that checks the printed line."""
    out = []
    for i, row in enumerate(block.body.split("\n")):
        m = PRINTS.match(row)
        if m:
            where = f"{_rel(block.page)}:{block.line + 1 + i}"
            row = f"{m['indent']}__expect_print__({where!r}, {m['expected'].rstrip()!r}, {m['args']})"
        out.append(row)
    return "\n".join(out)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_python_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             request: pytest.FixtureRequest) -> None:
    runnable = [b for b in blocks(page) if b.lang == "python" and b.skip_reason is None]
    if not runnable:
        pytest.skip(f"{_rel(page)} has no runnable python block")
    if any("runs/digits" in b.body for b in runnable):
        (tmp_path / "runs").mkdir()
        (tmp_path / "runs" / "digits").symlink_to(request.getfixturevalue("digits_run"), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__docs__", "__expect_print__": _expect_print}
    for block in runnable:
        code = compile(_checked_source(block), f"{page}:{block.line + 1}", "exec")  # tracebacks name the line
        exec(code, namespace)


def test_python_blocks_are_fenced_as_python_and_opt_outs_say_why() -> None:
    problems = []
    for page in PAGES:
        for block in blocks(page):
            where = f"{_rel(page)}:{block.line}"
            if block.lang in ("py", "python3", "pycon", "ipython", "pyi"):
                problems.append(f"{where}: fence it as ```python (so it runs) or mark it no-test with a reason")
            if block.skip_reason is not None and not block.skip_reason:
                problems.append(f"{where}: a no-test marker must say why the block cannot run")
            if block.skip_reason is not None and block.lang != "python":
                problems.append(f"{where}: a no-test marker on a ```{block.lang} block (only python blocks run)")
    assert not problems, "\n".join(problems)


# ---- README: what a newcomer needs first -----------------------------------------------------------------------


def test_readme_first_screen_has_install_and_a_loading_example() -> None:
    head = "\n".join(README.read_text().split("\n")[:60])
    assert "pip install" in head and "make demo" in head and "make test" in head
    example = next(b for b in blocks(README) if b.lang == "python")
    assert example.line <= 60 and example.skip_reason is None
    assert "load_checkpoint(" in example.body and "scoresde.sample(" in example.body
    for command in ("scoresde train", "scoresde sample", "scoresde eval"):
        assert command in head, f"README's first screen lacks a `{command}` line"


def test_capability_table_links_every_area_page() -> None:
    text = README.read_text()
    for page in ("samplers", "likelihood", "training", "controllable", "checkpoints", "evaluation", "phase_space",
                 "fp_diffusion"):
        assert f"](docs/{page}.md)" in text, f"README's table does not link docs/{page}.md"
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text):
        assert (ROOT / link).exists(), f"README links {link}, which does not exist"


# ---- names and commands the pages mention exist ----------------------------------------------------------------


def _resolve(name: str) -> None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as err:
            if err.name is None or not ".".join(parts[:i]).startswith(err.name):
                raise
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return


def test_scoresde_names_in_the_pages_exist() -> None:
    missing = []
    for page in [*PAGES, *API_PAGES]:
        for name in sorted(set(DOTTED.findall(page.read_text()))):
            if name.rsplit(".", 1)[-1] in ("md", "py", "json", "txt"):
                continue
            try:
                _resolve(name)
            except (ImportError, AttributeError) as err:
                missing.append(f"{_rel(page)}: {name} ({type(err).__name__}: {err})")
    assert not missing, "pages name what does not exist:\n" + "\n".join(missing)


def test_removed_names_are_not_mentioned() -> None:
    found = [f"{_rel(page)}: {name}" for page in [*PAGES, *API_PAGES] for name in REMOVED_NAMES
             if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", page.read_text())]
    assert not found, "removed in 0.2.0, still in the docs:\n" + "\n".join(found)


def _command_lines(block: Block) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", block.body)
    return [row.strip() for row in joined.split("\n") if row.strip()]


def test_cli_lines_parse() -> None:
    from scoresde.cli import build_parser

    problems = []
    for page in PAGES:
        for block in blocks(page):
            if block.lang not in ("bash", "sh", "shell", "console"):
                continue
            for row in _command_lines(block):
                words = shlex.split(row, comments=True)
                if words[:1] == ["scoresde"]:
                    argv = words[1:]
                elif "-m" in words and words[words.index("-m") + 1: words.index("-m") + 2] == ["scoresde"]:
                    argv = words[words.index("-m") + 2:]
                else:
                    continue
                try:
                    build_parser().parse_args(argv)
                except SystemExit:
                    problems.append(f"{_rel(page)}:{block.line}: {row}")
    assert not problems, "command lines the CLI refuses:\n" + "\n".join(problems)


# ---- the site builds -------------------------------------------------------------------------------------------


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason=f"{module} is not installed: pip install -e '.[docs]' (make install does)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "api" / "sampling" / "index.html").exists()
