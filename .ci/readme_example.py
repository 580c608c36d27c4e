"""Run README.md's first ```python block as a user would, with the interpreter that runs this file.

Used by .ci/wheel_check.sh from a folder outside the checkout, with the installed wheel: the block must import
``scoresde`` from that interpreter's site-packages (not the checkout's ``src``), and every line written
``print(...)  # prints: TEXT`` must print TEXT. Exits 1 with one line saying what differed.

Usage: python readme_example.py README.md
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import sysconfig
from pathlib import Path

FIRST_PYTHON_BLOCK = re.compile(r"^```python[^\n]*\n(?P<body>.*?)^```", re.M | re.S)
EXPECTED = re.compile(r"#\s*prints:\s?(?P<text>.*)$")


def main(readme: Path) -> int:
    match = FIRST_PYTHON_BLOCK.search(readme.read_text())
    if match is None:
        print(f"readme-example: {readme} has no ```python block")
        return 1
    body = match["body"]
    # each print(...) of the block carries a '# prints:' comment; what it prints must be that text, in order
    expected = [m["text"].rstrip() for row in body.split("\n") if "print(" in row and (m := EXPECTED.search(row))]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(body, f"{readme}:first python block", "exec"), {"__name__": "__readme__"})
    printed = out.getvalue().rstrip("\n").split("\n") if out.getvalue() else []
    print("\n".join(printed))

    import scoresde  # imported by the block; where from is the point of this check

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    where = Path(scoresde.__file__).resolve()
    if site not in where.parents:
        print(f"readme-example: scoresde was imported from {where}, not from the installed wheel in {site}")
        return 1
    if not expected or printed != expected:
        print(f"readme-example: the block printed {printed!r}; its '# prints:' comments say {expected!r}")
        return 1
    print(f"readme-example: {len(expected)} printed line(s) as the README says, scoresde from {where.parent}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python readme_example.py README.md")
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1])))
