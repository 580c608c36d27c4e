"""PSLD vs CLD vs VP at equal NFE on the 2-D Gaussian mixture with exact scores: the small-scale version of the
speed-quality claim of Pandey & Mandt 2023 (§5), without any network.

Data: :meth:`scoresde.toy.GaussianMixture.example_2d`; the phase-space scores are exact
(:class:`scoresde.toy.phase_space_mixture.PhaseSpaceMixture`), so every error belongs to the SDE's discretisation.

Samplers at ``NFE`` score evaluations, all from ``T`` to ``eps = 1e-3``:

* ``EM``: predictor-corrector with the Euler-Maruyama predictor and no corrector (Song et al. 2021, eq. 6),
  ``N = NFE`` steps, noise-free last step;
* ``SSCS``: symmetric splitting (Dockhorn et al. 2022, §3.3), ``NFE - 1`` steps plus the final Tweedie denoising,
  on the uniform and the quadratic time grid (phase-space SDEs only).

Columns as in ``benchmarks/samplers.py``: ``ED ratio`` (energy distance to a reference set over the true-vs-true
baseline: ~1 is indistinguishable from the truth at this sample size), ``SW`` (sliced W2), ``w err`` (largest
mixture-weight error), ``d log p`` (mean ``log p_0`` of the samples minus that of true samples, nats/dim).

Examples::

    python benchmarks/phase_space.py --quick      # NFE in {20, 50}, 500 samples
    python benchmarks/phase_space.py              # NFE in {20, 50, 100, 200}, 2000 samples
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from samplers import Truth, markdown_table
from scoresde import sample
from scoresde.sdes import CLD, PSLD, VPSDE
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

SDES: dict[str, Callable[[int], object]] = {
    "VP": lambda n: VPSDE(N=n),
    "CLD": lambda n: CLD(N=n),
    "PSLD": lambda n: PSLD(N=n),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them with their defaults)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: NFE in {20, 50}, 500 samples")
    p.add_argument("--samples", type=int, default=None, help="samples per run (default 2000; quick 500)")
    p.add_argument("--nfe", type=int, nargs="+", default=None, help="score evaluations (default 20 50 100 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference sets and of every sampler run")
    args = p.parse_args(argv)
    args.samples = args.samples or (500 if args.quick else 2000)
    args.nfe = args.nfe or ([20, 50] if args.quick else [20, 50, 100, 200])
    if args.samples < 2 or min(args.nfe) < 2:
        p.error("--samples and every --nfe must be at least 2")
    return args


def score_fn(truth: Truth, sde):
    """The exact score of the mixture under ``sde`` (data score for VP, phase-space score for CLD/PSLD)."""
    return truth.gm.score_fn(sde) if isinstance(sde, VPSDE) else PhaseSpaceMixture(truth.gm, sde).score


def run(truth: Truth, sde_name: str, nfe: int, args: argparse.Namespace, sampler: str, **options) -> dict:
    """One sampler run: NFE, distances to the truth and wall-clock seconds."""
    sde = SDES[sde_name](nfe)
    start = time.perf_counter()
    x, info = sample(sde, score_fn(truth, sde), (args.samples, 2), sampler,
                     generator=torch.Generator().manual_seed(args.seed),
                     dtype=torch.float64, return_info=True, **options)
    return {"nfe": info.nfe, **truth.metrics(x), "s": time.perf_counter() - start}


def rows(truth: Truth, args: argparse.Namespace) -> list[dict]:
    """EM for every SDE and SSCS (both grids) for the phase-space ones, at every NFE."""
    out = []
    for nfe in args.nfe:
        for sde_name in SDES:
            res = run(truth, sde_name, nfe, args, "pc", predictor="euler_maruyama", corrector="none")
            out.append({"sampler": "EM", "sde": sde_name, **res})
            if sde_name == "VP":
                continue
            for grid in ("uniform", "quadratic"):
                res = run(truth, sde_name, nfe, args, "sscs", steps=nfe - 1, grid=grid)
                out.append({"sampler": f"SSCS {grid}", "sde": sde_name, **res})
    return out


def main(argv: list[str] | None = None) -> None:
    """Run every configuration and print the markdown table."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    truth = Truth(args.samples, args.seed)
    print(f"{args.samples} samples, float64, CPU, torch {torch.__version__}, {torch.get_num_threads()} threads. "
          f"True-vs-true baselines: energy distance {truth.ed_baseline:.2e} (ED ratio 1), sliced W2 "
          f"{truth.sw_baseline:.4f}.\n")
    table = [{"sampler": "true samples (independent set)", "sde": "-", "nfe": 0, **m, "s": 0.0}
             for m in truth.true_rows] + rows(truth, args)
    print(markdown_table(["sampler", "SDE", "NFE", "ED ratio", "SW", "w err", "d log p", "s"],
                         [[r["sampler"], r["sde"], str(r["nfe"]), f"{r['ed']:.2f}", f"{r['sw']:.4f}", f"{r['w']:.3f}",
                           f"{r['dlogp']:+.3f}", f"{r['s']:.2f}"] for r in table]))


if __name__ == "__main__":
    main()
