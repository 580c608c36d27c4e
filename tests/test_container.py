"""The container image (Dockerfile) builds and runs ``scoresde demo --toy``, as a user of the image would.

Marked ``container``: deselected by default (``addopts`` in pyproject.toml), run with
``pytest -m container tests/test_container.py`` (what ``.ci/run`` does where Podman is installed). Skipped, with the
reason, where Podman is not installed: ``bash .ci/container_check.sh setup`` installs it. The build needs this
machine's pip configuration and network; .ci/container_check.sh does the host setup, the Debian base image and the
build, and this test checks what the demo wrote into the mounted run folder against the closed-form likelihood of the
toy mixture. On CI's kind of machine the build takes several minutes (torch alone is several GB).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "container_check.sh"

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(shutil.which("podman") is None,
                       reason="no container runtime: Podman is not installed (bash .ci/container_check.sh setup)"),
]


def _script(step: str, out: Path | None = None, timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"CONTAINER_OUT": str(out)} if out is not None else {})}
    result = subprocess.run(["bash", str(SCRIPT), step], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    print(result.stdout[-4000:], result.stderr[-4000:])
    assert result.returncode == 0, f".ci/container_check.sh {step} failed:\n{result.stdout[-4000:]}\n{result.stderr}"
    return result


def test_image_builds_and_runs_the_toy_demo(tmp_path: Path) -> None:
    _script("build")  # host setup, base image when missing, then the image from the current Dockerfile and sources
    out = tmp_path / "runs"
    _script("run", out=out)

    metrics = json.loads((out / "toy" / "metrics.json").read_text())
    nll = metrics["likelihood"]
    # the exact-score probability-flow likelihood of the mixture equals its closed-form NLL (0.0007 apart here)
    assert abs(nll["exact_nll_per_dim"] - nll["true_nll_per_dim"]) < 1e-2
    assert math.isfinite(nll["learned_nll_per_dim"])
    assert metrics["samplers"]["exact/ode"]["max_weight_error"] < 0.05
    assert (out / "toy" / "samples.png").stat().st_size > 0
    # the demo ran as the image's non-root user: the files it wrote belong to uid 1000 (podman's :U mapping)
    assert (out / "toy" / "metrics.json").stat().st_uid == 1000


def test_image_runs_as_a_non_root_user_with_scoresde_as_entry_point() -> None:
    _script("build")
    image = os.environ.get("IMAGE", "localhost/scoresde:latest")
    inspect = subprocess.run(["podman", "image", "inspect", image, "--format",
                              "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Volumes}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
    user, entrypoint, volumes = inspect.split("|")
    assert user == "scoresde"
    assert json.loads(entrypoint) == ["scoresde"]
    assert set(json.loads(volumes)) == {"/data", "/runs"}
    version = subprocess.run(["podman", "--runtime", "runc", "run", "--rm", "--network", "none", image, "--version"],
                             capture_output=True, text=True, timeout=300)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("scoresde ")
    # no pip configuration of the build machine is left in the image (the build's volumes leave their mount points
    # under /run/host-pip: empty folders, no file)
    leftover = subprocess.run(["podman", "--runtime", "runc", "run", "--rm", "--network", "none", "--entrypoint",
                               "sh", image, "-c", "find /run/host-pip /etc/pip.conf /etc/xdg/pip /root/.config/pip "
                               "-not -type d 2>/dev/null; env | grep ^PIP_ || true"],
                              capture_output=True, text=True, timeout=300)
    assert leftover.stdout.strip() == "", f"the image keeps the build's pip configuration: {leftover.stdout}"
