"""Time grids fitted to the model (:func:`scoresde.sampling.optimize_grid`) against the best built-in grid and against
the official DPM-Solver's best setting, on the 2-D Gaussian mixture with its exact score; and on the trained digits
model.

Mixtures (``--part mixtures``). SDEs VE, VP, sub-VP and PSLD; budgets 5, 10, 20 NFE (counted). For each sampler the
grid is fitted on 256 probe draws of seed 1 (``optimize_grid(..., generator=seed 1)``, its defaults otherwise) and
scored on 512 **test** draws of seed 2: the mean over paths of ``||x - x_ref|| / sqrt(2)``, ``x_ref`` the
probability-flow ODE solved by dopri8 at ``rtol = atol = 1e-9`` (PSLD's kernel-flow samplers: a 1000-step
DPM-Solver-3M solve of the kernel flow, benchmarks/RESULTS.md "Fast samplers"). "built-in" is the best of the grids
``logSNR, time_uniform, time_quadratic, karras, quadratic`` on the test draws (an oracle choice). The official
DPM-Solver (``dpm_solver_pytorch.py`` of github.com/LuChengTHU/dpm-solver, ``--official PATH``; not part of this
project: fetch it and point to it) runs its 36 settings (noise/data prediction x multistep/singlestep x order 1-3 x
logSNR/time_uniform/time_quadratic, ``steps = NFE``, ``t_end = 1e-3``, calls counted and asserted <= NFE) on the same
test draws; its best is the "official best" column (VP: the official ``NoiseScheduleVP('linear')``; VE and sub-VP,
which it has no schedule for, a schedule class reading ours). Robustness: the best sampler refitted on probe draws of
seed 3, scored on the same test draws.

Digits (``--part digits --run RUN``): a trained ``digits/vp_ddpmpp`` run; DPM-Solver++(2M) and UniPC-2 (bh2) at 10
and 20 NFE with the built-in logSNR grid and with the grid fitted on 32 probe draws; logit Fréchet distance and pixel
energy distance of 256 samples to the test digits (benchmarks/fast_samplers_digits.py's protocol) and the fit's cost.

    .venv/bin/python benchmarks/fitted_grids.py --official /tmp/h6/dpm_solver_pytorch.py --threads 1
    .venv/bin/python benchmarks/fitted_grids.py --part digits --run demo_out/run --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from typing import Any

import torch

from scoresde import load_checkpoint, sample
from scoresde.data import inverse_data_scaler
from scoresde.sampling import optimize_grid
from scoresde.sdes import PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

F64 = torch.float64
SDES = {"VE": lambda: VESDE(sigma_min=0.01, sigma_max=20.0), "VP": lambda: VPSDE(N=1000),
        "sub-VP": lambda: SubVPSDE(N=1000), "PSLD": lambda: PSLD()}
GRID_NAMES = ("logSNR", "time_uniform", "time_quadratic", "karras", "quadratic")
#: (label, sampler, options) of the scalar SDEs
SCALAR = [
    ("DPM-Solver-3M (noise)", "dpm_solver", {"algorithm": "dpmsolver", "order": 3}),
    ("DPM-Solver++(2M)", "dpm_solver", {"algorithm": "dpmsolver++", "order": 2}),
    ("UniPC-3 (noise, bh1)", "unipc", {"order": 3, "prediction": "noise", "variant": "bh1"}),
    ("UniPC-2 (bh2)", "unipc", {"order": 2, "variant": "bh2"}),
    ("DDIM", "ddim", {}),
]
#: the kernel-flow samplers of PSLD
PHASE = [
    ("DPM-Solver-2M (noise)", "dpm_solver", {"algorithm": "dpmsolver", "order": 2}),
    ("DDIM (kernel)", "ddim", {}),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--part", choices=("mixtures", "digits"), default="mixtures")
    p.add_argument("--sdes", nargs="+", default=list(SDES), choices=list(SDES))
    p.add_argument("--nfe", type=int, nargs="+", default=None, help="budgets (mixtures: 5 10 20; digits: 10 20)")
    p.add_argument("--probes", type=int, default=256, help="probe draws of a mixture fit (seed 1)")
    p.add_argument("--test", type=int, default=512, help="test draws (seed 2)")
    p.add_argument("--official", default=None, help="path of the official dpm_solver_pytorch.py (outside the repo)")
    p.add_argument("--run", default="demo_out/run", help="digits: a trained digits/vp_ddpmpp run folder")
    p.add_argument("--samples", type=int, default=256, help="digits: samples per row")
    p.add_argument("--digit-probes", type=int, default=32, help="digits: probe draws of a fit")
    p.add_argument("--max-evals", type=int, default=None, help="fit: most sampler runs (default: optimize_grid's)")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def _score(gm: GaussianMixture, sde: Any) -> Any:
    return PhaseSpaceMixture(gm, sde).score if sde.has_auxiliary else gm.score_fn(sde)


def _err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm(dim=1).mean()) / math.sqrt(ref.shape[1])


class _Schedule:
    """The official code's noise-schedule interface read from one of our scalar SDEs (for VE and sub-VP)."""

    def __init__(self, sde: Any) -> None:
        self.sde, self.T, self.schedule = sde, sde.T, "ours"

    def marginal_log_mean_coeff(self, t):
        return self.sde.log_alpha(t)

    def marginal_alpha(self, t):
        return torch.exp(self.sde.log_alpha(t))

    def marginal_std(self, t):
        return self.sde.sigma(t)

    def marginal_lambda(self, t):
        return self.sde.lambda_t(t)

    def inverse_lambda(self, lamb):
        return self.sde.t_from_lambda(lamb)


def official_best(path: str, sde_name: str, sde: Any, score: Any, x_T: torch.Tensor, ref: torch.Tensor,
                  nfe: int) -> tuple[float, str]:
    """The best test path error of the official DPM-Solver's 36 settings at ``nfe`` calls, and the setting."""
    spec = importlib.util.spec_from_file_location("dpm_solver_official", path)
    official = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official)
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        ns = (official.NoiseScheduleVP("linear", continuous_beta_0=0.1, continuous_beta_1=20.0, dtype=F64)
              if sde_name == "VP" else _Schedule(sde))
        calls = [0]

        def noise(x, t):
            calls[0] += 1
            return -sde.sigma(t).view(-1, 1) * score(x, t)

        model_fn = official.model_wrapper(noise, ns, model_type="noise")
        best = (math.inf, "")
        for algorithm in ("dpmsolver", "dpmsolver++"):
            for method in ("multistep", "singlestep"):
                for order in (1, 2, 3):
                    for skip in ("logSNR", "time_uniform", "time_quadratic"):
                        calls[0] = 0
                        solver = official.DPM_Solver(model_fn, ns, algorithm_type=algorithm)
                        x = solver.sample(x_T.clone(), steps=nfe, t_start=sde.T, t_end=1e-3, order=order,
                                          skip_type=skip, method=method, lower_order_final=True)
                        assert calls[0] <= nfe, (algorithm, method, order, skip, calls[0])
                        err = _err(x, ref)
                        if err < best[0]:
                            best = (err, f"{algorithm} {method} {order} {skip}")
        return best
    finally:
        torch.set_default_dtype(default)


def mixtures(args: argparse.Namespace) -> None:
    """The mixture tables (module docstring)."""
    gm = GaussianMixture.example_2d()
    budgets = args.nfe or [5, 10, 20]
    fit_kw = {} if args.max_evals is None else {"max_evals": args.max_evals}
    per_sampler, summary = [], []
    for sde_name in args.sdes:
        sde = SDES[sde_name]()
        score = _score(gm, sde)
        shape = (args.test, 2)
        x_T = sde.prior_sampling(sde.state_shape(shape), torch.Generator().manual_seed(2), dtype=F64)
        t0 = time.perf_counter()
        refs = {"pf": sample(sde, score, None, "ode", x_T=x_T, dtype=F64, rtol=1e-9, atol=1e-9, method="dopri8")}
        if sde.has_auxiliary:
            refs["kernel"] = sample(sde, score, None, "dpm_solver", x_T=x_T, dtype=F64, algorithm="dpmsolver",
                                    order=3, steps=1000, grid="time_quadratic")
        print(f"{sde_name}: references {time.perf_counter() - t0:.1f} s", flush=True)
        rows = PHASE if sde.has_auxiliary else SCALAR
        ref = refs["kernel"] if sde.has_auxiliary else refs["pf"]
        for nfe in budgets:
            best_fit = (math.inf, "", None, None)
            for label, name, options in rows:
                builtin = (math.inf, "")
                for grid in GRID_NAMES:
                    try:
                        x = sample(sde, score, None, name, x_T=x_T, dtype=F64, nfe=nfe, grid=grid, **options)
                    except ValueError:
                        continue
                    builtin = min(builtin, (_err(x, ref), grid))
                t0 = time.perf_counter()
                times, info = optimize_grid(sde, score, (args.probes, 2), sampler=name, nfe=nfe, dtype=F64,
                                            generator=torch.Generator().manual_seed(1), return_info=True,
                                            **options, **fit_kw)
                seconds = time.perf_counter() - t0
                x = sample(sde, score, None, name, x_T=x_T, dtype=F64, times=times, **options)
                fitted = _err(x, ref)
                row = [sde_name, str(nfe), label, f"{builtin[0]:.2e} ({builtin[1]})", f"{fitted:.2e}",
                       f"{fitted / builtin[0]:.2f}", f"{info.value:.2e}", str(info.nfe), str(info.evaluations),
                       f"{seconds:.1f}"]
                per_sampler.append(row)
                print(" | ".join(row), flush=True)
                if fitted < best_fit[0]:
                    best_fit = (fitted, label, name, options)
            _, label, name, options = best_fit
            times3 = optimize_grid(sde, score, (args.probes, 2), sampler=name, nfe=nfe, dtype=F64,
                                   generator=torch.Generator().manual_seed(3), **options, **fit_kw)
            other = _err(sample(sde, score, None, name, x_T=x_T, dtype=F64, times=times3, **options), ref)
            off = (official_best(args.official, sde_name, sde, score, x_T, refs["pf"], nfe)
                   if args.official and not sde.has_auxiliary else (math.nan, "-"))
            summary.append([sde_name, str(nfe), f"{best_fit[0]:.2e} ({label})", f"{other:.2e}",
                            f"{off[0]:.2e} ({off[1]})", f"{best_fit[0] / off[0]:.2f}"])
            print(" | ".join(summary[-1]), flush=True)
    print("\nPer sampler (test draws, seed 2; fitted on probe draws, seed 1):\n")
    print(_table(["SDE", "NFE", "sampler", "best built-in grid", "fitted", "fitted / built-in",
                  "fit objective (probes)", "calls", "fit runs", "fit s"], per_sampler))
    print("\nBest sampler with its fitted grid against the official DPM-Solver's best setting (test draws):\n")
    print(_table(["SDE", "NFE", "best fitted (sampler)", "same, fitted on seed 3", "official best (setting)",
                  "ratio"], summary))


def digits(args: argparse.Namespace) -> None:
    """The digits table (module docstring)."""
    from phase_space_digits import Reference  # the benchmarks folder's helper, needed by the digits part only

    model = load_checkpoint(args.run)
    cfg = model.config
    ref = Reference(args.samples, 0)
    one = (cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size)
    rows = []
    for label, name, options in [("DPM-Solver++(2M)", "dpm_solver", {"algorithm": "dpmsolver++", "order": 2}),
                                 ("UniPC-2 (bh2)", "unipc", {"order": 2, "variant": "bh2"})]:
        for nfe in args.nfe or [10, 20]:
            t0 = time.perf_counter()
            times, info = optimize_grid(model, (args.digit_probes, *one), sampler=name, nfe=nfe, return_info=True,
                                        generator=torch.Generator().manual_seed(1), max_evals=args.max_evals or 100,
                                        **options)
            fit_s = time.perf_counter() - t0
            for grid_label, grid in (("logSNR", {"nfe": nfe, "grid": "logSNR"}), ("fitted", {"times": times})):
                with torch.no_grad():
                    x, run = sample(model, (args.samples, *one), name, return_info=True,
                                    generator=torch.Generator().manual_seed(0), **grid, **options)
                m = ref.metrics(inverse_data_scaler(x.to(F64), cfg.data.centered).clamp(0, 1))
                rows.append([label, grid_label, str(run.nfe), f"{m['fd']:.2f}", f"{m['ed']:.4f}",
                             f"{info.start_value:.4f} -> {info.value:.4f}" if grid_label == "fitted" else "-",
                             f"{fit_s:.0f} ({info.evaluations} runs, {info.network_calls} calls)"
                             if grid_label == "fitted" else "-"])
                print(" | ".join(rows[-1]), flush=True)
    floors = [[f"real digits (floor {k + 1})", "-", "-", f"{f['fd']:.2f}", f"{f['ed']:.4f}", "-", "-"]
              for k, f in enumerate(ref.floors)]
    print(f"\nrun {args.run} (step {model.step}), {args.samples} samples, {torch.get_num_threads()} threads\n")
    print(_table(["sampler", "grid", "NFE", "logit FD", "pixel ED", "fit path error (probes)", "fit s"],
                 rows + floors))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    (mixtures if args.part == "mixtures" else digits)(args)


if __name__ == "__main__":
    main()
