"""Snapshot of every ``--help`` (``scoresde`` and each sub-command) against ``tests/cli/help/<command>.txt``: an option
added, renamed or removed, or a changed help line, fails here until the snapshot is updated on purpose.

Regenerate after an intended change (then review the diff of ``tests/cli/help/``)::

    SCORESDE_UPDATE_HELP=1 python -m pytest tests/cli/test_help_snapshot.py

The text is rendered in-process by :func:`scoresde.cli.build_parser` with ``COLUMNS=100``, so wrapping does not
depend on the terminal. argparse's layout differs between Python versions (3.13 prints the metavar of an option
with aliases once), so under a Python other than the one in ``help/PYTHON_VERSION`` only the option names and
sub-commands are compared.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import sys
from pathlib import Path

import pytest

from scoresde.cli import build_parser

HELP_DIR = Path(__file__).parent / "help"
VERSION_FILE = HELP_DIR / "PYTHON_VERSION"
UPDATE = os.environ.get("SCORESDE_UPDATE_HELP") == "1"
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def _help(command: str | None) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*([command] if command else []), "--help"])
    assert exit_info.value.code == 0
    return out.getvalue()


def _names(text: str) -> list[str]:
    """What must not change silently whatever the layout: option names and the words of braced choices."""
    return sorted(set(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", text)) | set(re.findall(r"\{([\w,-]+)\}", text)))


COMMANDS = [None, *_commands()]


@pytest.fixture(autouse=True)
def _fixed_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "50")


@pytest.mark.parametrize("command", COMMANDS, ids=[c or "scoresde" for c in COMMANDS])
def test_help_matches_the_snapshot(command):
    path = HELP_DIR / f"{command or 'scoresde'}.txt"
    text = _help(command)
    if UPDATE:
        HELP_DIR.mkdir(exist_ok=True)
        path.write_text(text)
        VERSION_FILE.write_text(PYTHON + "\n")
        return
    assert path.exists(), f"no snapshot {path}; create it with SCORESDE_UPDATE_HELP=1"
    expected = path.read_text()
    if VERSION_FILE.read_text().strip() != PYTHON:  # another argparse layout: compare what the options are
        assert _names(text) == _names(expected), f"options of `scoresde {command or ''}` changed: update {path}"
        return
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "--help"))
        pytest.fail(f"`scoresde {command or ''} --help` differs from {path} (if intended, rerun with "
                    f"SCORESDE_UPDATE_HELP=1 and review the diff):\n{diff}")


def test_every_command_has_a_snapshot_and_no_other():
    files = {p.stem for p in HELP_DIR.glob("*.txt")}
    assert files == {"scoresde", *_commands()}


def test_the_snapshot_catches_a_renamed_option():
    text = _help("sample")
    assert "--steps N" in text and "--step STEP" in text
    renamed = text.replace("--steps N", "--num-steps N")
    assert renamed != text and _names(renamed) != _names(text)
