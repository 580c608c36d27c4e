"""Fast samplers ranked by their path-wise error: the distance of each sampler's output to a tight-tolerance
probability-flow ODE solution from the same start ``x_T`` (exact scores), at a few NFE budgets.

The two-sample distances of ``benchmarks/samplers.py`` cannot separate samplers near the noise floor; the path-wise
error can (every deterministic sampler solves the same ODE, so its error against a tight solve is its discretisation
error alone). Stochastic samplers (eta > 0, SDE solvers) have no path to compare: they get the energy-distance ratio
to true samples instead (1 = true-vs-true).

Data: the 2-D test mixture and a 16-D mixture of four anisotropic, well separated components (covariance eigenvalues
from 0.01 to 1, random rotations); SDEs VE, VP, sub-VP and PSLD (phase space: the samplers that run there).

    .venv/bin/python benchmarks/fast_samplers.py --threads 1          # tables + benchmarks/fast_samplers.png
    .venv/bin/python benchmarks/fast_samplers.py --quick --threads 1  # smoke run
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from scoresde import sample
from scoresde.sampling import SAMPLERS
from scoresde.sdes import PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture, energy_distance
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

F64 = torch.float64
SDES = {"VE": lambda: VESDE(sigma_min=0.01, sigma_max=20.0), "VP": VPSDE, "sub-VP": SubVPSDE, "PSLD": PSLD}

#: (label, sampler, options, steps for a budget of NFE, kind): kind "pf" = a deterministic solver of the
#: probability-flow ODE (path error against the dopri8 solve), "kernel" = a deterministic solver of the phase-space
#: kernel flow (path error against a 400-step DPM-Solver-3 solve of that flow), "stochastic" = no path (ED only)
SAMPLER_ROWS = [
    ("DDIM", "ddim", {"grid": "logSNR"}, lambda n: n, "pf"),
    ("DDIM (uniform)", "ddim", {"grid": "uniform"}, lambda n: n, "pf"),
    ("DPM-Solver++(2M)", "dpm_solver", {"algorithm": "dpmsolver++", "method": "multistep", "order": 2}, lambda n: n,
     "pf"),
    ("DPM-Solver++(2M, time_quadratic)", "dpm_solver", {"order": 2, "grid": "time_quadratic"}, lambda n: n, "pf"),
    ("DPM-Solver++(3M)", "dpm_solver", {"algorithm": "dpmsolver++", "method": "multistep", "order": 3}, lambda n: n,
     "pf"),
    ("DPM-Solver-3M (noise, time_quadratic)", "dpm_solver", {"algorithm": "dpmsolver", "order": 3,
                                                             "grid": "time_quadratic"}, lambda n: n, "pf"),
    ("DPM-Solver-3 (singlestep)", "dpm_solver", {"algorithm": "dpmsolver", "method": "singlestep", "order": 3},
     lambda n: max(1, n // 3), "pf"),
    ("UniPC-2 bh2", "unipc", {"order": 2, "variant": "bh2"}, lambda n: n, "pf"),
    ("UniPC-3 bh1", "unipc", {"order": 3, "variant": "bh1"}, lambda n: n, "pf"),
    ("UniPC-2 bh2 (noise, time_quadratic)", "unipc", {"order": 2, "variant": "bh2", "prediction": "noise",
                                                      "grid": "time_quadratic"}, lambda n: n, "pf"),
    ("UniPC-3 bh1 (noise, time_quadratic)", "unipc", {"order": 3, "variant": "bh1", "prediction": "noise",
                                                      "grid": "time_quadratic"}, lambda n: n, "pf"),
    ("Heun (EDM, karras)", "heun", {"grid": "karras"}, lambda n: (n + 1) // 2, "pf"),
    ("DDIM eta=1", "ddim", {"eta": 1.0, "grid": "logSNR"}, lambda n: n, "stochastic"),
    ("SDE-DPM-Solver++(2M)", "dpm_solver", {"algorithm": "sde-dpmsolver++", "method": "multistep", "order": 2},
     lambda n: n, "stochastic"),
]
PHASE_SPACE_ROWS = [
    ("DDIM (kernel)", "ddim", {"grid": "uniform"}, lambda n: n, "kernel"),
    ("DDIM (kernel, quadratic)", "ddim", {"grid": "quadratic"}, lambda n: n, "kernel"),
    ("DDIM (probability flow)", "ddim", {"grid": "uniform", "flow": "probability_flow"}, lambda n: n, "pf"),
    ("DDIM (probability flow, quadratic)", "ddim", {"grid": "quadratic", "flow": "probability_flow"}, lambda n: n,
     "pf"),
    ("DPM-Solver++(2M) (kernel, time_quadratic)", "dpm_solver", {"order": 2, "grid": "time_quadratic"}, lambda n: n,
     "kernel"),
    ("DPM-Solver-2M (kernel, noise, time_quadratic)", "dpm_solver", {"order": 2, "algorithm": "dpmsolver",
                                                                    "grid": "time_quadratic"}, lambda n: n, "kernel"),
    ("DPM-Solver-3M (kernel, noise, time_quadratic)", "dpm_solver", {"order": 3, "algorithm": "dpmsolver",
                                                                    "grid": "time_quadratic"}, lambda n: n, "kernel"),
    ("DDIM eta=1", "ddim", {"grid": "quadratic", "eta": 1.0}, lambda n: n, "stochastic"),
    ("SSCS (quadratic)", "sscs", {"grid": "quadratic", "denoise": False}, lambda n: n, "stochastic"),
]


def mixture_16d(seed: int = 0) -> GaussianMixture:
    """Four anisotropic components in 16-D, means 4 apart, covariance eigenvalues log-spaced in [0.01, 1]."""
    g = torch.Generator().manual_seed(seed)
    d, k = 16, 4
    means = torch.randn(k, d, generator=g, dtype=F64)
    means = 4.0 * means / means.norm(dim=1, keepdim=True) * math.sqrt(2) / 2 * 2
    covs = []
    for _ in range(k):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
        lam = torch.logspace(-2, 0, d, dtype=F64)
        covs.append(q @ torch.diag(lam) @ q.T)
    cov = torch.stack(covs)
    return GaussianMixture([0.4, 0.3, 0.2, 0.1], means, 0.5 * (cov + cov.transpose(-1, -2)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 128 paths, NFE 10 and 20, 2-D only")
    p.add_argument("--samples", type=int, default=None, help="paths per run (default 512; quick 128)")
    p.add_argument("--nfe", type=int, nargs="+", default=None, help="NFE budgets (default 5 10 15 20 50)")
    p.add_argument("--floor-nfe", type=int, nargs="+", default=None,
                   help="NFE budgets of the 2-D energy-distance (noise floor) table (default 5 10 15 20 30 50 100 200)")
    p.add_argument("--floor", type=float, default=2.0, help="ED ratio counted as the noise floor (default 2)")
    p.add_argument("--sdes", nargs="+", default=list(SDES), choices=list(SDES))
    p.add_argument("--ref-tol", type=float, default=1e-9, help="rtol = atol of the dopri8 reference solve")
    p.add_argument("--png", default=str(Path(__file__).with_name("fast_samplers.png")), help="error-vs-NFE plot")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared CPU)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.samples = args.samples or (128 if args.quick else 512)
    args.nfe = args.nfe or ([10, 20] if args.quick else [5, 10, 15, 20, 50])
    args.floor_nfe = args.floor_nfe or ([10, 20] if args.quick else [5, 10, 15, 20, 30, 50, 100, 200])
    return args


def _score(gm: GaussianMixture, sde):
    return PhaseSpaceMixture(gm, sde).score if sde.has_auxiliary else gm.score_fn(sde)


def run_case(data: str, gm: GaussianMixture, sde_name: str, args: argparse.Namespace) -> list[dict]:
    """Every sampler row at every NFE budget for one mixture and SDE: path errors at ``args.nfe`` (deterministic
    rows), and on the 2-D mixture the energy-distance ratio of 2000 samples at ``args.floor_nfe`` (every row)."""
    sde = SDES[sde_name]()
    score = _score(gm, sde)
    shape = (args.samples, gm.dim)
    x_T = sde.prior_sampling(sde.state_shape(shape), torch.Generator().manual_seed(args.seed), dtype=F64)
    t0 = time.perf_counter()
    refs = {}
    refs["pf"], ref_info = sample(sde, score, None, "ode", x_T=x_T, dtype=F64, rtol=args.ref_tol, atol=args.ref_tol,
                                  method="dopri8", return_info=True)
    print(f"# {data} {sde_name}: reference dopri8 tol {args.ref_tol:g}, NFE {ref_info.nfe}, "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    if sde.has_auxiliary:
        refs["kernel"] = sample(sde, score, None, "dpm_solver", x_T=x_T, dtype=F64, steps=400, order=3,
                                algorithm="dpmsolver", grid="time_quadratic")
    g = torch.Generator().manual_seed(args.seed + 1)
    truth = gm.sample(2000, g)
    baseline = sum(energy_distance(gm.sample(2000, g), truth) for _ in range(3)) / 3
    rows = []
    for label, name, options, steps_for, kind in (PHASE_SPACE_ROWS if sde.has_auxiliary else SAMPLER_ROWS):
        if name not in SAMPLERS:
            continue
        budgets = sorted(set(args.nfe) | (set(args.floor_nfe) if data == "2-D" else set()))
        for nfe in budgets:
            row = {"data": data, "sde": sde_name, "sampler": label, "budget": nfe, "kind": kind}
            try:
                if kind != "stochastic" and nfe in args.nfe:
                    x, info = sample(sde, score, None, name, x_T=x_T, dtype=F64, steps=steps_for(nfe),
                                     return_info=True, **options)
                    err = (x - refs[kind]).norm(dim=1) / math.sqrt(gm.dim)
                    row.update(nfe=info.nfe, mean=float(err.mean()), median=float(err.median()))
                if data == "2-D" and nfe in args.floor_nfe:
                    x, info = sample(sde, score, (2000, gm.dim), name, dtype=F64, steps=steps_for(nfe),
                                     generator=torch.Generator().manual_seed(args.seed + 2), return_info=True,
                                     **options)
                    row.update(nfe=info.nfe, ed=energy_distance(x, truth) / baseline)
            except ValueError as e:
                row.update(error=str(e).splitlines()[0][:80])
            rows.append(row)
    return rows


def _fmt(v: float) -> str:
    return f"{v:.2e}"


def print_tables(rows: list[dict], floor: float) -> None:
    det = [r for r in rows if "mean" in r]
    print("\n| data | SDE | sampler | budget | NFE | mean path error | median path error |")
    print("|---|---|---|---|---|---|---|")
    for r in det:
        print(f"| {r['data']} | {r['sde']} | {r['sampler']} | {r['budget']} | {r['nfe']} | {_fmt(r['mean'])} | "
              f"{_fmt(r['median'])} |")
    for r in rows:
        if "error" in r:
            print(f"| {r['data']} | {r['sde']} | {r['sampler']} | {r['budget']} | - | error: {r['error']} | - |")
    ed = [r for r in rows if "ed" in r]
    if not ed:
        return
    budgets = sorted({r["budget"] for r in ed})
    print(f"\nEnergy distance of 2000 samples to 2000 true samples / true-vs-true (1 = noise floor), 2-D mixture; "
          f"'floor NFE': the first budget whose ratio is at most {floor:g}\n")
    print("| SDE | sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " | floor NFE |")
    print("|---|---|" + "---|" * len(budgets) + "---|")
    for key in dict.fromkeys((r["sde"], r["sampler"]) for r in ed):
        got = {r["budget"]: r for r in ed if (r["sde"], r["sampler"]) == key}
        cells = [f"{got[b]['ed']:.2f}" if b in got else "-" for b in budgets]
        hit = [got[b]["nfe"] for b in budgets if b in got and got[b]["ed"] <= floor]
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {hit[0] if hit else '> ' + str(budgets[-1])} |")


COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0), (174, 199, 232),
          (255, 187, 120), (152, 223, 138), (255, 152, 150)]


def plot(rows: list[dict], path: str) -> None:
    """Mean path error vs NFE, log-log, one panel per (data, SDE), drawn with Pillow (no matplotlib dependency)."""
    det = [r for r in rows if "mean" in r and r["mean"] > 0]
    panels = sorted({(r["data"], r["sde"]) for r in det})
    labels = sorted({r["sampler"] for r in det}, key=lambda s: [row[0] for row in SAMPLER_ROWS + PHASE_SPACE_ROWS]
                    .index(s) if s in [row[0] for row in SAMPLER_ROWS + PHASE_SPACE_ROWS] else 99)
    if not panels:
        return
    W, H, cols = 420, 320, min(4, len(panels))
    n_rows = math.ceil(len(panels) / cols)
    img = Image.new("RGB", (cols * W, n_rows * H + 24 + 16 * math.ceil(len(labels) / 3)), "white")
    draw = ImageDraw.Draw(img)
    lo_n = math.log10(min(r["nfe"] for r in det))
    hi_n = math.log10(max(r["nfe"] for r in det))
    for p, (data, sde) in enumerate(panels):
        ox, oy = (p % cols) * W, (p // cols) * H
        pr = [r for r in det if (r["data"], r["sde"]) == (data, sde)]
        lo_e = math.floor(math.log10(min(r["mean"] for r in pr)))
        hi_e = math.ceil(math.log10(max(r["mean"] for r in pr)))
        x0, y0, x1, y1 = ox + 50, oy + 25, ox + W - 15, oy + H - 35
        draw.rectangle([x0, y0, x1, y1], outline="black")
        draw.text((x0, oy + 6), f"{data} {sde}: mean path error vs NFE", fill="black")
        for e in range(lo_e, hi_e + 1):
            y = y1 - (e - lo_e) / max(hi_e - lo_e, 1) * (y1 - y0)
            draw.line([x0, y, x1, y], fill=(225, 225, 225))
            draw.text((ox + 8, y - 6), f"1e{e}", fill="black")
        for n in sorted({r["nfe"] for r in det}):
            x = x0 + (math.log10(n) - lo_n) / max(hi_n - lo_n, 1e-9) * (x1 - x0)
            draw.text((x - 6, y1 + 4), str(n), fill="black")

        def xy(r: dict, lo_e: int = lo_e, hi_e: int = hi_e, x0: float = x0, x1: float = x1, y0: float = y0,
               y1: float = y1) -> tuple[float, float]:
            return (x0 + (math.log10(r["nfe"]) - lo_n) / max(hi_n - lo_n, 1e-9) * (x1 - x0),
                    y1 - (math.log10(r["mean"]) - lo_e) / max(hi_e - lo_e, 1) * (y1 - y0))

        for k, label in enumerate(labels):
            pts = sorted((r for r in pr if r["sampler"] == label), key=lambda r: r["nfe"])
            if len(pts) >= 2:
                draw.line([xy(r) for r in pts], fill=COLORS[k % len(COLORS)], width=2)
            for r in pts:
                cx, cy = xy(r)
                draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=COLORS[k % len(COLORS)])
    ly = n_rows * H + 6
    for k, label in enumerate(labels):
        lx = 10 + (k % 3) * 300
        yy = ly + (k // 3) * 16
        draw.rectangle([lx, yy + 3, lx + 14, yy + 11], fill=COLORS[k % len(COLORS)])
        draw.text((lx + 20, yy), label, fill="black")
    img.save(path)
    print(f"\nwrote {path}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    mixtures = {"2-D": GaussianMixture.example_2d()}
    if not args.quick:
        mixtures["16-D"] = mixture_16d(args.seed)
    print(f"{args.samples} paths, float64, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"samplers registered: {', '.join(SAMPLERS)}")
    start = time.perf_counter()
    rows = []
    for data, gm in mixtures.items():
        for sde_name in args.sdes:
            rows += run_case(data, gm, sde_name, args)
    print_tables(rows, args.floor)
    plot(rows, args.png)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
