"""The README's Python example runs and prints what its comments say (docs must not drift from code)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_prints_what_it_claims() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), {})
    first = out.getvalue().splitlines()[0]
    claimed = re.search(r"print\(x.shape, info.nfe\)\s+# (.*)", blocks[0]).group(1)
    assert first == claimed
