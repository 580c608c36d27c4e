"""Accuracy against cost of every sampler and of the ODE likelihood on the 2-D Gaussian mixture, with its exact score.

Data: :meth:`scoresde.toy.GaussianMixture.example_2d` (three anisotropic components). Its perturbed score is exact,
so every error below belongs to the sampler or the solver, never to a network.

Samplers (Song et al. 2021): predictor-corrector (Alg. 1) with each predictor (``euler_maruyama``, eq. 6 by
Euler-Maruyama; ``reverse_diffusion``, eq. 46; ``ancestral_sampling``, eq. 47) and corrector (``none``,
``langevin``, Alg. 4/5 with snr 0.16, one step) at ``N`` steps; the probability-flow ODE (eq. 13) with dopri5
(torchdiffeq) and scipy's RK45 at ``rtol = atol = tol``. All with the default ``eps = 1e-3`` and the final
denoising step. Columns:

* ``NFE`` -- score evaluations;
* ``ED ratio`` -- squared energy distance (Szekely & Rizzo 2013, eq. 2) between the samples and a reference set of
  true samples, divided by the mean distance of independent true sets of the same size (the true-vs-true
  baseline): ~1 is indistinguishable from the truth at this sample size;
* ``SW`` -- sliced 2-Wasserstein distance (Bonneel et al. 2015) to the reference set (the true-vs-true value is
  printed above the table);
* ``w err`` -- largest error of the mixture weights recovered from the samples (each sample assigned to its most
  responsible component);
* ``d log p`` -- mean log-density ``log p_0(x)`` of the samples minus that of the reference set, nats/dim (negative:
  too spread out; positive: too concentrated);
* ``s`` -- wall-clock seconds of the sampler.

Likelihood: ``log_likelihood`` (App. D.2, eqs. 39-40) of true samples against the exact ``log p_eps(x)``: mean
absolute error and mean error in nats per dimension, mean ``info.stderr`` and NFE, for the exact trace and the
Hutchinson estimators (one probe).

Examples::

    python benchmarks/samplers.py --quick             # smoke run: N in {50, 100}, 500 samples
    python benchmarks/samplers.py                     # the full table (about 5 minutes on 2 CPU cores)
    python benchmarks/samplers.py --device cuda --samples 10000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from scoresde import log_likelihood, sample
from scoresde.sdes import VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture, energy_distance, sliced_wasserstein

SDES: dict[str, Callable[[int], object]] = {"VE": lambda n: VESDE(N=n), "VP": lambda n: VPSDE(N=n),
                                            "sub-VP": lambda n: SubVPSDE(N=n)}
PREDICTORS = ("euler_maruyama", "reverse_diffusion", "ancestral_sampling")
CORRECTORS = ("none", "langevin")
ODE_METHODS = ("dopri5", "scipy-RK45")
TRACES = (("exact", 1), ("hutchinson-rademacher", 1), ("hutchinson-rademacher", 8), ("hutchinson-gaussian", 1),
          ("hutchinson-gaussian", 8))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them with their defaults)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: N in {50, 100}, tol 1e-3, 500 samples")
    p.add_argument("--samples", type=int, default=None, help="samples per sampler run (default 2000; quick 500)")
    p.add_argument("--likelihood-samples", type=int, default=None,
                   help="examples for the likelihood rows (default 1000; quick 200)")
    p.add_argument("--steps", type=int, nargs="+", default=None, help="PC steps N (default 100 250 1000)")
    p.add_argument("--ddim-steps", type=int, nargs="+", default=None, help="DDIM steps (default 10 25 50 100)")
    p.add_argument("--tols", type=float, nargs="+", default=None, help="ODE rtol = atol (default 1e-3 1e-5)")
    p.add_argument("--device", default="cpu", help="torch device to sample on (cpu, cuda, cuda:1, ...)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="sampling precision")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference sets and of every sampler run")
    args = p.parse_args(argv)
    args.samples = args.samples or (500 if args.quick else 2000)
    args.likelihood_samples = args.likelihood_samples or (200 if args.quick else 1000)
    args.steps = args.steps or ([50, 100] if args.quick else [100, 250, 1000])
    args.tols = args.tols or ([1e-3] if args.quick else [1e-3, 1e-5])
    args.ddim_steps = args.ddim_steps or ([10, 50] if args.quick else [10, 25, 50, 100])
    if args.samples < 2 or args.likelihood_samples < 2:
        p.error("--samples and --likelihood-samples must be at least 2")
    return args


class Truth:
    """The mixture, a reference set of true samples and the true-vs-true baselines of both distances."""

    def __init__(self, n: int, seed: int) -> None:
        self.gm = GaussianMixture.example_2d()
        # Not the samplers' seed: a prior draw sharing the reference's noise would make the two sets correlated.
        g = torch.Generator().manual_seed(seed + 1000)
        self.reference = self.gm.sample(n, g)
        self.ref_logp = float(self.gm.log_prob(self.reference).mean()) / self.gm.dim
        fresh = [self.gm.sample(n, g) for _ in range(4)]
        eds = [energy_distance(x, self.reference) for x in fresh]
        self.ed_baseline = sum(eds) / len(eds)
        self.sw_baseline = sum(self.sw(x) for x in fresh) / len(fresh)
        self.true_rows = [self.metrics(x) for x in fresh]  # what independent true sets score: the noise floor

    def metrics(self, x: torch.Tensor) -> dict:
        """Distances of a sample set to the truth (NaN if it holds non-finite values)."""
        if not torch.isfinite(x).all():
            return {"ed": float("nan"), "sw": float("nan"), "w": float("nan"), "dlogp": float("nan")}
        counts = torch.bincount(self.gm.responsibilities(x).argmax(1), minlength=self.gm.num_components)
        return {"ed": energy_distance(x, self.reference) / self.ed_baseline, "sw": self.sw(x),
                "w": float((counts / x.shape[0] - self.gm.weights).abs().max()),
                "dlogp": float(self.gm.log_prob(x).mean()) / self.gm.dim - self.ref_logp}

    def sw(self, x: torch.Tensor) -> float:
        """Sliced W2 to the reference set with fixed projections (comparable across rows)."""
        return sliced_wasserstein(x, self.reference, n_projections=256, generator=torch.Generator().manual_seed(1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_sampler(truth: Truth, sde_name: str, n_steps: int, args: argparse.Namespace, **options) -> dict:
    """One sampler run: NFE, distances to the truth and wall-clock seconds."""
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sde = SDES[sde_name](n_steps)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    _sync(device)
    start = time.perf_counter()
    x, info = sample(sde, truth.gm.score_fn(sde), (args.samples, 2), generator=generator, device=device,
                     dtype=dtype, return_info=True, **options)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"nfe": info.nfe, **truth.metrics(x.cpu().double()), "s": seconds}


def sampler_rows(truth: Truth, args: argparse.Namespace) -> list[dict]:
    """Every PC (predictor x corrector x N), DDIM (eta x steps) and ODE (method x tol) configuration under every SDE."""
    rows = []
    for sde_name in SDES:
        for predictor in PREDICTORS:
            for corrector in CORRECTORS:
                for n in args.steps:
                    res = run_sampler(truth, sde_name, n, args, sampler="pc", predictor=predictor,
                                      corrector=corrector)
                    rows.append({"sampler": f"PC {predictor} + {corrector}", "sde": sde_name,
                                 "setting": f"N={n}", **res})
        for eta in (0.0, 1.0):
            for n in args.ddim_steps:
                res = run_sampler(truth, sde_name, 1000, args, sampler="ddim", steps=n, eta=eta, grid="logSNR")
                rows.append({"sampler": f"DDIM eta={eta:g}", "sde": sde_name, "setting": f"steps={n}, logSNR", **res})
        for method in ODE_METHODS:
            for tol in args.tols:
                res = run_sampler(truth, sde_name, 1000, args, sampler="ode", method=method, rtol=tol, atol=tol,
                                  denoise=True)
                rows.append({"sampler": f"ODE {method}", "sde": sde_name, "setting": f"tol={tol:g}", **res})
    return rows


def likelihood_rows(truth: Truth, args: argparse.Namespace) -> list[dict]:
    """``log_likelihood`` with each trace estimator against the exact ``log p_eps`` of true samples."""
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    x = truth.gm.sample(args.likelihood_samples, torch.Generator().manual_seed(args.seed + 2000))
    eps, rows = 1e-5, []
    for sde_name in SDES:
        sde = SDES[sde_name](1000)
        exact_logp = truth.gm.log_prob(x, eps, sde)
        for trace, n_probes in TRACES:
            _sync(device)
            start = time.perf_counter()
            logp, info = log_likelihood(sde, truth.gm.score_fn(sde), x.to(device=device, dtype=dtype), trace=trace,
                                        n_probes=n_probes, eps=eps,
                                        generator=torch.Generator(device=device).manual_seed(args.seed),
                                            return_info=True)
            _sync(device)
            seconds = time.perf_counter() - start
            err = (logp.cpu().double() - exact_logp) / truth.gm.dim
            rows.append({"sde": sde_name, "trace": trace, "probes": n_probes, "mae": float(err.abs().mean()),
                         "bias": float(err.mean()), "stderr": float(info.stderr.mean()) / truth.gm.dim,
                         "nfe": info.nfe, "s": seconds})
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every configuration and print the two markdown tables."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    truth = Truth(args.samples, args.seed)
    print(f"{args.samples} samples, {args.dtype}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads. True-vs-true baselines: energy distance {truth.ed_baseline:.2e} "
          f"(ED ratio 1), sliced W2 {truth.sw_baseline:.4f}.\n")
    truth_rows = [{"sampler": "true samples (independent set)", "sde": "-", "setting": "-", "nfe": 0, **m, "s": 0.0}
                  for m in truth.true_rows]
    samplers = truth_rows + sampler_rows(truth, args)
    print(markdown_table(["sampler", "SDE", "setting", "NFE", "ED ratio", "SW", "w err", "d log p", "s"],
                         [[r["sampler"], r["sde"], r["setting"], str(r["nfe"]), f"{r['ed']:.2f}", f"{r['sw']:.4f}",
                           f"{r['w']:.3f}", f"{r['dlogp']:+.3f}", f"{r['s']:.2f}"] for r in samplers]))
    lik = likelihood_rows(truth, args)
    print(f"\nLikelihood of {args.likelihood_samples} true samples (dopri5, rtol = atol = 1e-5, eps = 1e-5), errors "
          "against the exact log p_eps in nats/dim; stderr is info.stderr (NaN for one probe, 0 for the exact "
          "trace):\n")
    print(markdown_table(["SDE", "trace", "probes", "mean abs error", "mean error", "mean stderr", "NFE", "s"],
                         [[r["sde"], r["trace"], str(r["probes"]), f"{r['mae']:.2e}", f"{r['bias']:+.2e}",
                           f"{r['stderr']:.2e}", str(r["nfe"]), f"{r['s']:.2f}"] for r in lik]))


if __name__ == "__main__":
    main()
