"""Cost of one FP-Diffusion training step against plain DSM (milliseconds per optimizer step).

A training step is ``loss = objective(model, batch)``, ``loss.backward()``, ``Adam.step()`` with the model in
``train()`` mode, as in :class:`scoresde.training.Trainer` (no EMA, no clipping). Models:

* ``toy``    -- the toy MLP of ``toy/gaussian_mixture`` (VP SDE), batch 512 of the 2-D Gaussian mixture;
* ``digits`` -- DDPM++ of ``digits/vp_ddpmpp`` (VP SDE, 16x16x1), batch 64 of the built-in digits.

Rows (``alpha = 0.15``, ``beta = 0.01``, ``weighting = "ll"``, one Hutchinson probe, as the FP-Diffusion configs):

* ``DSM``                          -- :func:`scoresde.losses.sde_loss` (likelihood-weighted, as ``fp_loss``'s base);
* ``FP scalar``                    -- ``fp_loss(mode="scalar")``: one divergence, no time derivative;
* ``FP both, FD, reverse Hutch.``  -- ``fp_loss(mode="both")``: the original (finite-difference ``d_t s``,
  vector-Jacobian products);
* ``FP both, FD, forward Hutch.``  -- the same with ``divergence_ad="forward"`` (``torch.func.jvp``);
* ``FP both, jvp d_t s``           -- ``time_derivative="autograd"`` (reverse Hutchinson);
* ``FP both, exact div.``          -- ``divergence="exact"`` (toy only: ``D`` products).

Times are medians over ``--repeats`` steps after ``--warmup`` steps per row (defaults per model: toy 5 after 2,
digits 1 after 0 plus one shared warm-up step, since one DDPM++ FP step takes ~40 s on 2 loaded cores), the rows
interleaved (round robin) so that load from other processes spreads over all of them;
``torch.set_num_threads(--threads)``.

    python benchmarks/fp.py                       # both models (~3-4 min on 2 loaded CPU cores)
    python benchmarks/fp.py --models toy --repeats 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from scoresde.config import load_config
from scoresde.losses import fp_loss, sde_loss
from scoresde.training.build import build_model

ROWS = {
    "DSM": None,
    "FP scalar": dict(mode="scalar"),
    "FP both, FD, reverse Hutch.": dict(mode="both"),
    "FP both, FD, forward Hutch.": dict(mode="both", divergence_ad="forward"),
    "FP both, jvp d_t s": dict(mode="both", time_derivative="autograd"),
    "FP both, exact div.": dict(mode="both", divergence="exact"),
}
#: name: (preset, batch, warm-up steps per row, timed steps per row). DDPM++ on a 2-core CPU takes ~3 s per DSM step and
#: ~40 s per FP step, so its rows get one timed step each after one shared warm-up step (the 5-minute budget).
MODELS = {"toy": ("toy/gaussian_mixture", 512, 2, 5), "digits": ("digits/vp_ddpmpp", 64, 0, 1)}


def _batch(name: str, cfg, B: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if name == "toy":
        from scoresde.toy import GaussianMixture

        return GaussianMixture.example_2d().sample(B, generator=g).float()
    from scoresde.data import preprocess
    from scoresde.training.data import build_dataset

    data = build_dataset(cfg.data, "train", cfg.seed)
    return preprocess(torch.stack([data[i][0] for i in range(B)]), centered=cfg.data.centered)


def step(model, opt, batch: torch.Tensor, options: dict | None, g: torch.Generator) -> float:
    """One training step with the objective ``options`` (``None``: DSM); returns its seconds."""
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    if options is None:
        loss = sde_loss(model, model.sde, batch, likelihood_weighting=True, generator=g)
    else:
        loss = fp_loss(model, model.sde, batch, alpha=0.15, beta=0.01, weighting="ll", generator=g, **options)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def time_rows(model, batch: torch.Tensor, rows: dict, warmup: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per row. One shared untimed DSM step first (allocator, kernels), then ``warmup`` untimed
    steps per row; the timed rows are interleaved (round robin over the repeats), so a burst of load from other
    processes on a shared machine spreads over all rows instead of biasing one."""
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    step(model, opt, batch, None, g)
    for options in rows.values():
        for _ in range(warmup):
            step(model, opt, batch, options, g)
    times: dict[str, list[float]] = {row: [] for row in rows}
    for _ in range(repeats):
        for row, options in rows.items():
            times[row].append(step(model, opt, batch, options, g))
    return {row: 1e3 * statistics.median(ts) for row, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per row (default: per model, 5 / 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per row (default: per model, 2 / 0)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.1f} at start")
    results = {}
    for name in args.models:
        config, B, warmup, repeats = MODELS[name]
        warmup = warmup if args.warmup is None else args.warmup
        repeats = repeats if args.repeats is None else args.repeats
        cfg = load_config(config)
        torch.manual_seed(0)
        model = build_model(cfg)
        batch = _batch(name, cfg, B)
        rows = {row: options for row, options in ROWS.items()
                if name == "toy" or options is None or options.get("divergence") != "exact"}
        start = time.perf_counter()
        results[name] = time_rows(model, batch, rows, warmup, repeats)
        for row, ms in results[name].items():
            print(f"  {name:6s} {row:30s} {ms:9.1f} ms", flush=True)
        print(f"  ({name}: median of {repeats} after {warmup} warm-up per row, {time.perf_counter() - start:.0f} s, "
              f"load average {os.getloadavg()[0]:.1f} at the end)", flush=True)
    names = list(results)
    header = "| objective | " + " | ".join(f"{n} {MODELS[n][0]} B={MODELS[n][1]} (ms) | x DSM" for n in names) + " |"
    print()
    print(header)
    print("|---" * (1 + 2 * len(names)) + "|")
    for row in ROWS:
        cells = []
        for n in names:
            v = results[n].get(row)
            cells += ["–", "–"] if v is None else [f"{v:.1f}", f"{v / results[n]['DSM']:.1f}"]
        print(f"| {row} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
