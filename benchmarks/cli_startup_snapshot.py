"""Start-up time of the command line and the cost of a training run's snapshot grid (issue 26 item 7(j)).

* ``scoresde --help`` wall time (a fresh process each time; the best of ``--repeats``) and what ``import
  scoresde.cli`` imports (``python -X importtime``: the cumulative microseconds of the slowest top-level modules).
* One snapshot grid (``Trainer.snapshot_samples``, 64 images) of an untrained ``digits/vp_ddpmpp`` model at 16x16
  (the digits) and at 32x32 (3-channel images from a folder), with the run's ``sampling`` section (PC, reverse
  diffusion, 250 steps: what every snapshot used before) and with the snapshot sampler (``training.snapshot_sampler
  = dpm_solver``, ``snapshot_steps = 20``, the default now). The weights do not change the cost.

    .venv/bin/python benchmarks/cli_startup_snapshot.py --threads 1            # the table of benchmarks/RESULTS.md
    .venv/bin/python benchmarks/cli_startup_snapshot.py --threads 1 --quick    # --help only
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def help_seconds(repeats: int) -> list[float]:
    """Wall seconds of ``scoresde --help`` in a fresh process, ``repeats`` times."""
    out = []
    for _ in range(repeats):
        tic = time.perf_counter()
        subprocess.run([str(BIN / "scoresde"), "--help"], check=True, capture_output=True)
        out.append(time.perf_counter() - tic)
    return out


def import_profile(top: int = 4) -> list[tuple[str, float]]:
    """``(module, cumulative seconds)`` of the slowest imports of ``import scoresde.cli`` (``-X importtime``)."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import scoresde.cli"], check=True,
                         capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            rows.append((match.group(3), int(match.group(1)) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def snapshot_seconds(image_size: int, sampler: str, root: Path) -> float:
    """Seconds of one 64-image snapshot grid of an untrained digits model at ``image_size`` with ``sampler``
    (``training.snapshot_sampler``)."""
    import numpy as np
    from PIL import Image

    from scoresde.config import load_config
    from scoresde.training import Trainer

    overrides = ["training.eval_freq=0", f"training.snapshot_sampler={sampler}", "training.num_snapshot_samples=64"]
    if image_size != 16:  # 3-channel images of a folder (random pixels: only the shape matters)
        folder = root / f"images{image_size}"
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        overrides += ["data.dataset=folder", f"data.root={folder}", "data.num_channels=3",
                      f"data.image_size={image_size}"]
    trainer = Trainer(load_config("digits/vp_ddpmpp", overrides), root / f"run{image_size}{sampler}", progress=False)
    tic = time.perf_counter()
    trainer.snapshot_samples()
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="--help timings only")
    args = parser.parse_args()
    times = help_seconds(args.repeats)
    print(f"scoresde --help: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
          f"over {args.repeats} runs")
    print("import scoresde.cli, slowest cumulative imports:")
    for name, seconds in import_profile():
        print(f"  {name:40s} {seconds:6.3f} s")
    if args.quick:
        return
    import torch

    torch.set_num_threads(args.threads)
    print("\n| image size | run's sampling (pc, 250 steps) | snapshot sampler (dpm_solver, 20 steps) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (16, 32):
            slow = snapshot_seconds(size, "sampling", Path(tmp))
            fast = snapshot_seconds(size, "dpm_solver", Path(tmp))
            print(f"| {size}x{size} | {slow:.1f} s | {fast:.1f} s |")


if __name__ == "__main__":
    main()
