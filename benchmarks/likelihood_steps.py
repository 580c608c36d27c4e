"""Likelihood error against NFE: dopri5 at several tolerances, rk4 and the exponential multistep methods.

Exact-score 2-D Gaussian mixture (``GaussianMixture.example_2d``), exact trace, ``eps = 1e-5``; the error is the mean
absolute difference (nats/dim) to a tight solve of the same ODE (scipy DOP853, ``rtol = atol = 1e-12``), which
differs from the exact ``log p_eps`` only by the prior mismatch ``log p_T - log pi`` (the same for every method).
Prints one row per (SDE, method, setting) and, per SDE and method, the smallest NFE whose error is at most
``--target``. Accuracy and NFE do not depend on the machine.

    cd benchmarks && ../.venv/bin/python likelihood_steps.py --samples 300 --seed 2042
"""

from __future__ import annotations

import argparse

import torch

from scoresde import log_likelihood
from scoresde.sdes import VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture

SDES = {"VP": VPSDE, "sub-VP": SubVPSDE, "VE": VESDE}
TOLERANCES = (1e-3, 5e-4, 3e-4, 2e-4, 1e-4, 5e-5, 3e-5, 1e-5, 3e-6, 1e-6)
RK4_STEPS = (6, 8, 10, 12, 15, 20, 25)
EXP_STEPS = (15, 20, 25, 30, 35, 40, 45, 50, 60)


def rows(sde_name: str, x: torch.Tensor, gm: GaussianMixture, eps: float) -> list[tuple[str, str, int, float]]:
    """``(method, setting, nfe, error)`` for every method and setting on one SDE."""
    sde = SDES[sde_name]()
    score = gm.score_fn(sde)
    ref = log_likelihood(sde, score, x, trace="exact", eps=eps, method="scipy-DOP853", rtol=1e-12, atol=1e-12)
    runs = [("dopri5", f"rtol=atol={tol:g}", {"rtol": tol, "atol": tol}) for tol in TOLERANCES]
    runs += [("rk4", f"steps={n} uniform", {"steps": n}) for n in RK4_STEPS]
    runs += [(m, f"steps={n} time_quadratic", {"steps": n, "grid": "time_quadratic"})
             for m in ("exp2m", "exp3m", "exp4m") for n in EXP_STEPS]
    runs += [("exp4m", f"steps={n} logSNR", {"steps": n, "grid": "logSNR"}) for n in (30, 45, 60)]
    out = []
    for method, setting, kw in runs:
        logp, info = log_likelihood(sde, score, x, trace="exact", eps=eps, method=method, return_info=True, **kw)
        out.append((method, setting, info.nfe, float((logp - ref).abs().mean()) / x.shape[1]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--seed", type=int, default=2042)
    p.add_argument("--eps", type=float, default=1e-5)
    p.add_argument("--target", type=float, default=1e-3, help="error (nats/dim) for the NFE summary")
    p.add_argument("--sdes", default="VP,sub-VP,VE")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    gm = GaussianMixture.example_2d()
    x = gm.sample(args.samples, torch.Generator().manual_seed(args.seed))
    summary = []
    print("| SDE | method | setting | NFE | error (nats/dim) |\n|---|---|---|---|---|")
    for name in args.sdes.split(","):
        table = rows(name, x, gm, args.eps)
        for method, setting, nfe, err in table:
            print(f"| {name} | {method} | {setting} | {nfe} | {err:.2e} |", flush=True)
        for method in dict.fromkeys(m for m, *_ in table):
            ok = [nfe for m, _, nfe, err in table if m == method and err <= args.target]
            summary.append((name, method, min(ok) if ok else None))
    print(f"\nSmallest NFE with error <= {args.target:g} nats/dim\n\n| SDE | method | NFE |\n|---|---|---|")
    for name, method, nfe in summary:
        print(f"| {name} | {method} | {nfe if nfe is not None else 'not reached'} |")


if __name__ == "__main__":
    main()
