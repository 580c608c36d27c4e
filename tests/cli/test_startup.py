"""Start-up time of the command line, checked by what it imports (not by a clock): ``scoresde --help``,
``scoresde --version`` and ``import scoresde`` load no third-party module (torch alone took 3 s of the 4-5 s that
``scoresde --help`` took when every command module was imported up front), and a command line imports only the
module of its own command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: third-party packages that a help line has no need of (torch alone is seconds)
HEAVY = ("torch", "numpy", "scipy", "PIL", "tqdm", "safetensors", "diffusers", "sklearn")


def _imported_after(code: str) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; the top-level third-party packages and the scoresde modules it loaded."""
    probe = (f"import sys, json, contextlib, io\n{code}\n"
             "names = sorted(set(m.split('.')[0] for m in sys.modules) - set(sys.stdlib_module_names))\n"
             "print(json.dumps({'packages': names, 'scoresde': sorted(m for m in sys.modules "
             "if m.startswith('scoresde'))}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _main(argv: list[str]) -> str:
    return ("from scoresde.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass")


@pytest.mark.parametrize("code", ["import scoresde", "import scoresde.cli", _main(["--help"]), _main(["--version"])],
                         ids=["import scoresde", "import scoresde.cli", "--help", "--version"])
def test_help_and_version_import_nothing_heavy(code: str) -> None:
    loaded = _imported_after(code)
    heavy = sorted(set(HEAVY) & set(loaded["packages"]))
    assert not heavy, f"{code!r} imported {heavy}"
    assert set(loaded["scoresde"]) <= {"scoresde", "scoresde.cli", "scoresde.cli.command_table"}, loaded["scoresde"]


def test_a_command_imports_only_its_own_module() -> None:
    loaded = _imported_after(_main(["configs", "--help"]))["scoresde"]
    commands = {m.rpartition(".")[2] for m in loaded if m.endswith("_commands")}
    assert commands == {"train_commands"}, commands


def test_the_lazy_top_level_resolves_every_public_name() -> None:
    import scoresde

    for name in scoresde.__all__:
        assert getattr(scoresde, name) is not None, name
    assert scoresde.sample is scoresde.sampling.sample and scoresde.encode is scoresde.sampling.latent.encode
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        scoresde.nonexistent  # noqa: B018
