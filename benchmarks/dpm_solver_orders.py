"""Path error of DPM-Solver's third-order variants and of a budget of network calls on the 2-D Gaussian mixture.

Data: :meth:`scoresde.toy.GaussianMixture.example_2d` with its exact float64 score, so every error is the solver's.
For each SDE (VP, sub-VP), algorithm (``dpmsolver``: noise prediction, ``dpmsolver++``: data prediction), grid
(``logSNR``, ``time_uniform``) and budget ``NFE`` the table gives the median over 64 start points of ``|x - x_ref|``,
``x_ref`` the probability-flow ODE solved by dopri8 at ``rtol = atol = 1e-9`` from the same start ("path error").
Columns (all with exactly ``NFE`` network calls, counted):

* ``2M`` -- multistep order 2;
* ``3M`` -- multistep order 3, the official ``multistep_dpm_solver_third_update`` (``method="multistep"``);
* ``3M-taylor`` -- the same with the second difference weighted by the Taylor coefficient ``2 phi_3``
  (``method="multistep_taylor"``);
* ``3S-fast`` -- singlestep order 3 with the budget split into orders as the official "DPM-Solver-fast"
  (``method="singlestep", nfe=NFE``);
* ``3S-fixed`` -- singlestep order 3 at ``NFE // 3`` steps (``steps=NFE // 3``: 9 or 18 calls, not ``NFE``).

Example::

    python benchmarks/dpm_solver_orders.py            # the full table (under a minute on one CPU core)
    python benchmarks/dpm_solver_orders.py --nfe 10   # one budget
"""

from __future__ import annotations

import argparse

import torch

from scoresde import sample
from scoresde.sdes import VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture

F64 = torch.float64
SDES = {"VP": VPSDE, "sub-VP": SubVPSDE}
COLUMNS = {"2M": {"order": 2, "method": "multistep"}, "3M": {"order": 3, "method": "multistep"},
           "3M-taylor": {"order": 3, "method": "multistep_taylor"}, "3S-fast": {"order": 3, "method": "singlestep"},
           "3S-fixed": {"order": 3, "method": "singlestep"}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them with their defaults)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nfe", type=int, nargs="+", default=[10, 20], help="budgets of network calls")
    p.add_argument("--samples", type=int, default=64, help="start points (seed 3)")
    return p.parse_args(argv)


def path_error(sde_name: str, algorithm: str, grid: str, nfe: int, column: str, samples: int) -> float:
    """Median path error of one solver (module docstring) against the tight ODE solve."""
    sde = SDES[sde_name](N=1000)
    score = GaussianMixture.example_2d().score_fn(sde)
    x_T = sde.prior_sampling((samples, 2), torch.Generator().manual_seed(3), dtype=F64)
    key = (sde_name, samples)
    if key not in _REFERENCE:
        _REFERENCE[key] = sample(sde, score, None, "ode", x_T=x_T, dtype=F64, rtol=1e-9, atol=1e-9, method="dopri8")
    budget = {"steps": nfe // 3} if column == "3S-fixed" else {"nfe": nfe}
    x = sample(sde, score, None, "dpm_solver", x_T=x_T, dtype=F64, algorithm=algorithm, grid=grid,
               **COLUMNS[column], **budget)
    return float((x - _REFERENCE[key]).norm(dim=1).median())


_REFERENCE: dict[tuple[str, int], torch.Tensor] = {}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"{'SDE':7s} {'algorithm':12s} {'grid':13s} {'NFE':>4s} " + " ".join(f"{c:>10s}" for c in COLUMNS))
    for sde_name in SDES:
        for algorithm in ("dpmsolver", "dpmsolver++"):
            for grid in ("logSNR", "time_uniform"):
                for nfe in args.nfe:
                    errors = [path_error(sde_name, algorithm, grid, nfe, c, args.samples) for c in COLUMNS]
                    print(f"{sde_name:7s} {algorithm:12s} {grid:13s} {nfe:4d} "
                          + " ".join(f"{e:10.2e}" for e in errors))


if __name__ == "__main__":
    main()
