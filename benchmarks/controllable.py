"""Controllable generation with exact scores on Gaussian mixtures: guidance, inverse problems, latent codes.

Every number here is checked against a closed form: the class (component) of a guided sample is judged by the exact
posterior ``p(y | x)``; the exact conditional of the mixture given an observation is again a mixture
(:meth:`GaussianMixture.condition`), whose component weights the inverse-problem samplers must reproduce.

* Classifier guidance (exact score + exact noisy classifier, scale 1) per SDE and sampler: the mean posterior
  ``p(y | x)`` of the requested class over the samples, next to the same mean under exact draws of ``p(x | y)``.
* Classifier-free guidance (exact conditional and unconditional scores): the same confidence at ``w = 0, 1, 3``, and
  the path-wise difference to conditional sampling at ``w = 0`` (same ``x_T``, DDIM).
* Inpainting of a 4-D mixture whose exact conditional has weights (0.85, 0.15): replacement, RePaint and SMC with
  1..512 particles: the weight the samples put on component 1, its error, the energy distance to exact conditional
  draws, NFE and seconds. Colorization of a 3-D mixture likewise.
* Encode -> decode round trip with the ODE at the default tolerance.

    .venv/bin/python benchmarks/controllable.py --threads 1            # the tables of benchmarks/RESULTS.md
    .venv/bin/python benchmarks/controllable.py --quick --threads 1    # smoke run
"""

from __future__ import annotations

import argparse
import time

import torch

import scoresde
from scoresde.guidance import classifier, classifier_free
from scoresde.sdes import CLD, PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture, energy_distance
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture

F64 = torch.float64
SDES = {"VE": lambda: VESDE(sigma_max=10.0), "VP": VPSDE, "sub-VP": SubVPSDE, "PSLD": PSLD, "CLD": CLD}
PHASE = ("PSLD", "CLD")


def overlapping_2d() -> GaussianMixture:
    """Three overlapping classes in 2-D (exact draws of a class are assigned to it with mean posterior 0.7-0.9)."""
    return GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.0], [1.0, 0.0], [0.0, 1.3]], [0.6, 0.6, 0.6])


def oracle(name: str, gm: GaussianMixture):
    sde = SDES[name]()
    if name in PHASE:
        pm = PhaseSpaceMixture(gm, sde)
        return sde, pm.score_fn(), pm.conditional_score_fn(), pm.classifier_fn()
    return sde, gm.score_fn(sde), gm.conditional_score_fn(sde), gm.classifier_fn(sde)


def confidence(gm: GaussianMixture, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean exact posterior ``p(y | x)`` of the requested classes."""
    return float(gm.responsibilities(x).gather(1, y[:, None]).mean())


def exact_confidence(gm: GaussianMixture, y: torch.Tensor, n: int = 100000) -> float:
    g = torch.Generator().manual_seed(123)
    total = 0.0
    for k in range(gm.num_components):
        share = float((y == k).float().mean())
        if share:
            x = gm.means[k] + torch.randn(n, gm.dim, generator=g, dtype=F64) @ torch.linalg.cholesky(gm.covs[k]).T
            total += share * confidence(gm, x, torch.full((n,), k))
    return total


def guidance_table(batch: int, quick: bool) -> None:
    gm = overlapping_2d()
    y = torch.arange(batch) % 3
    target = exact_confidence(gm, y)
    print(f"\n### Classifier guidance, exact score + exact noisy classifier, scale 1 (overlapping 2-D mixture, "
          f"B = {batch})\n")
    print(f"Mean posterior p(y | x) of the requested class; exact draws of p(x | y): **{target:.3f}**.\n")
    print("| SDE | sampler | options | p(y given x) | NFE | seconds |")
    print("|---|---|---|---|---|---|")
    samplers = [("pc", {"steps": 200 if not quick else 50}), ("ode", {}), ("ddim", {"steps": 50}),
                ("dpm_solver", {"steps": 20}), ("sscs", {"steps": 200 if not quick else 50})]
    for name in SDES:
        sde, score, _, cls = oracle(name, gm)
        for sampler, options in samplers:
            if (sampler == "sscs") != (name in PHASE) and sampler in ("sscs", "dpm_solver"):
                continue
            t0 = time.perf_counter()
            x, info = scoresde.sample(sde, classifier(score, cls), (batch, 2), sampler, cond={"class_labels": y},
                                      generator=torch.Generator().manual_seed(0), dtype=F64, return_info=True,
                                      **options)
            text = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
            print(f"| {name} | {sampler} | {text} | {confidence(gm, x, y):.3f} | {info.nfe} | "
                  f"{time.perf_counter() - t0:.1f} |")


def tilted_confidence(gm: GaussianMixture, y: torch.Tensor, w: float, half_width: float = 6.0,
                      points: int = 601) -> float:
    """``E[p(y | x)]`` under the tilted law ``p(x | y)^(1 + w) / p(x)^w`` (the target CFG is usually motivated by), by
    quadrature on a 2-D grid, averaged over the requested classes."""
    axis = torch.linspace(-half_width, half_width, points, dtype=F64)
    grid = torch.cartesian_prod(axis, axis)
    log_joint = gm.log_joint(grid)  # log w_k N(x; mu_k, S_k)
    log_p = torch.logsumexp(log_joint, 1)
    total = 0.0
    for k in range(gm.num_components):
        share = float((y == k).float().mean())
        log_cond = log_joint[:, k] - torch.log(gm.weights[k])
        density = torch.softmax((1 + w) * log_cond - w * log_p, 0)
        total += share * float((density * torch.exp(log_joint[:, k] - log_p)).sum())
    return total


def cfg_table(batch: int) -> None:
    gm = overlapping_2d()
    y = torch.arange(batch) % 3
    target = exact_confidence(gm, y)
    print(f"\n### Classifier-free guidance, exact conditional and unconditional scores (DDIM, 50 steps, B = {batch})\n")
    tilted = [tilted_confidence(gm, y, w) for w in (0.0, 1.0, 3.0)]
    print(f"Mean posterior p(y | x); exact draws of p(x | y): **{target:.3f}**. Path difference: max |x(w=0) - "
          "x(conditional score)| from the same x_T. Last row: the same mean under the tilted law p(x | y)^(1+w) / "
          "p(x)^w (quadrature), which CFG with exact noisy scores approximates but does not sample exactly.\n")
    print("| SDE | w = 0 | w = 1 | w = 3 | path difference at w = 0 | seconds |")
    print("|---|---|---|---|---|---|")
    for name in ("VE", "VP", "PSLD"):
        sde, _, cond, _ = oracle(name, gm)
        t0 = time.perf_counter()
        x_T = sde.prior_sampling(sde.state_shape((batch, 2)), torch.Generator().manual_seed(1), dtype=F64)
        conf = []
        for w in (0.0, 1.0, 3.0):
            x = scoresde.sample(sde, classifier_free(cond, w), (batch, 2), "ddim", x_T=x_T, steps=50,
                                cond={"class_labels": y}, dtype=F64)
            conf.append(confidence(gm, x, y))
            if w == 0.0:
                plain = scoresde.sample(sde, cond, (batch, 2), "ddim", x_T=x_T, steps=50, cond={"class_labels": y},
                                        dtype=F64)
                diff = float((plain - x).abs().max())
        print(f"| {name} | {conf[0]:.3f} | {conf[1]:.3f} | {conf[2]:.3f} | {diff:.1e} | "
              f"{time.perf_counter() - t0:.1f} |")
    print(f"| tilted law (theory) | {tilted[0]:.3f} | {tilted[1]:.3f} | {tilted[2]:.3f} | | |")


def mixture_085() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    gm = GaussianMixture([0.5, 0.5], [[0.6, 0.6, 2.0, 2.0], [-0.6, -0.6, -2.0, -2.0]], [0.6, 0.6])
    return gm, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64), torch.tensor([0.2602, 0.2602, 0.0, 0.0], dtype=F64)


def inverse_rows(quick: bool, phase: bool) -> list[tuple[str, str, dict]]:
    """The settings compared; phase space stops at 64 particles (the phase-space oracle gathers a Cholesky factor per
    row: 512 particles x 1000 samples would need gigabytes)."""
    rows = [("replacement", "PC, Langevin corrector (Score SDE defaults)", {"steps": 200}),
            ("replacement", "PC, no corrector", {"steps": 200, "corrector": "none"}),
            ("repaint", "100 steps, r = 10, n = 5", {"steps": 100, "jump_length": 10, "resamplings": 5})]
    for particles in (1, 8, 64) if quick or phase else (1, 8, 64, 512):
        rows.append(("smc", f"{particles} particles, 200 steps", {"steps": 200, "num_particles": particles}))
    return rows


def inverse_table(batch: int, quick: bool) -> None:
    gm, mask, y = mixture_085()
    exact = gm.condition_mask(mask, y)
    ref = exact.sample(4000, torch.Generator().manual_seed(9))
    floor = float(energy_distance(exact.free_coordinates(exact.sample(batch, torch.Generator().manual_seed(10))),
                                  exact.free_coordinates(ref)))
    print(f"\n### Inpainting a 4-D mixture, exact scores (observed x1 = x2 = 0.2602; B = {batch})\n")
    print(f"Exact conditional weights: ({float(exact.weights[0]):.3f}, {float(exact.weights[1]):.3f}). Weight = mean "
          "responsibility of component 1 among the samples (binomial std "
          f"{(0.85 * 0.15 / batch) ** 0.5:.3f}); energy distance to 4000 exact conditional draws (hole coordinates; "
          f"{batch} exact draws score {floor:.4f}).\n")
    print("| SDE | method | setting | weight 1 | error | energy distance | NFE | rows per call | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    x_obs = y.expand(batch, 4).clone()
    for name in ("VP", "PSLD"):
        sde = SDES[name]()
        score = PhaseSpaceMixture(gm, sde).score_fn() if name in PHASE else gm.score_fn(sde)
        for method, label, options in inverse_rows(quick, name in PHASE):
            if name in PHASE and method == "smc":
                options = {**options, "steps": 400}
                label = label.replace("200 steps", "400 steps")
            t0 = time.perf_counter()
            x, info = scoresde.inpaint(sde, score, x_obs, mask, method=method, dtype=F64, return_info=True,
                                       generator=torch.Generator().manual_seed(0), **options)
            w1 = float(exact.component_fractions(x)[0])
            ed = float(energy_distance(exact.free_coordinates(x), exact.free_coordinates(ref)))
            rows = info.diagnostics.get("rows_per_call", batch)
            print(f"| {name} | {method} | {label} | {w1:.3f} | {abs(w1 - float(exact.weights[0])):.3f} | {ed:.4f} | "
                  f"{info.nfe} | {rows} | {time.perf_counter() - t0:.1f} |")


def colorize_table(batch: int) -> None:
    # the components differ in grey (channel mean 0.2 vs -0.2) and in colour (orthogonal to grey, 4 std apart), so the
    # observed grey level selects a component that only the colour coordinates can show
    gm = GaussianMixture([0.5, 0.5], [[1.0, 0.2, -0.6], [-1.0, 0.4, 0.0]], [0.5, 0.5])
    level = 0.3614  # grey value (channel mean) where the exact conditional is (0.85, 0.15)
    exact = gm.condition(torch.full((1, 3), 1.0 / 3.0, dtype=F64), torch.tensor([level], dtype=F64))
    print(f"\n### Colorizing a 3-D mixture (channel mean observed = {level}; VP, B = {batch})\n")
    print(f"Exact conditional weights: ({float(exact.weights[0]):.3f}, {float(exact.weights[1]):.3f}).\n")
    print("| method | setting | weight 1 | error | max channel-mean error | NFE | seconds |")
    print("|---|---|---|---|---|---|---|")
    sde = VPSDE()
    gray = torch.full((batch, 3), level, dtype=F64)
    for method, label, options in [("replacement", "PC, no corrector, 200 steps", {"steps": 200, "corrector": "none"}),
                                   ("smc", "64 particles, 200 steps", {"steps": 200, "num_particles": 64})]:
        t0 = time.perf_counter()
        x, info = scoresde.colorize(sde, gm.score_fn(sde), gray, method=method, dtype=F64, return_info=True,
                                    generator=torch.Generator().manual_seed(0), **options)
        w1 = float(exact.component_fractions(x)[0])
        print(f"| {method} | {label} | {w1:.3f} | {abs(w1 - float(exact.weights[0])):.3f} | "
              f"{float((x.mean(1) - level).abs().max()):.1e} | {info.nfe} | {time.perf_counter() - t0:.1f} |")


def latent_table(batch: int) -> None:
    gm = GaussianMixture.example_2d()
    x = gm.sample(batch, torch.Generator().manual_seed(0))
    print(f"\n### Encode -> decode round trip, probability-flow ODE, dopri5 rtol = atol = 1e-5 (defaults; 2-D mixture, "
          f"B = {batch})\n")
    print("| SDE | median abs error | mean | max | NFE encode | NFE decode | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in ("VE", "VP", "sub-VP", "PSLD"):
        sde = SDES[name]()
        score = PhaseSpaceMixture(gm, sde).score_fn() if name in PHASE else gm.score_fn(sde)
        t0 = time.perf_counter()
        aux = torch.zeros_like(x) if name in PHASE else None
        code, info = scoresde.encode(sde, score, x, auxiliary=aux, return_info=True)
        back, sinfo = scoresde.sample(sde, score, sampler="ode", x_T=code, dtype=F64, return_info=True)
        err = (back - x).abs()
        print(f"| {name} | {float(err.median()):.1e} | {float(err.mean()):.1e} | {float(err.max()):.1e} | "
              f"{info.nfe} | {sinfo.nfe} | {time.perf_counter() - t0:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches and fewer settings (smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = 150 if args.quick else 600
    guidance_table(batch, args.quick)
    cfg_table(batch)
    inverse_table(200 if args.quick else 1000, args.quick)
    colorize_table(200 if args.quick else 1000)
    latent_table(100 if args.quick else 500)


if __name__ == "__main__":
    main()
