"""PSLD vs CLD vs VP at equal NFE on the built-in 16x16 digits with trained networks: the small-scale, trained
version of the speed-quality claim of Pandey & Mandt 2023 (§5) that ``benchmarks/phase_space.py`` checks with
exact scores on a 2-D mixture.

Models (one :class:`scoresde.training.Trainer` run each, same network, batch, steps and seed):

* ``VP``: preset ``digits/vp_ddpmpp`` (DDPM++ nf=32, continuous VP, beta in [0.1, 20]);
* ``PSLD``: preset ``digits/psld_ddpmpp`` (same U-Net on [x, m], beta=8, nu=4.01, Gamma=0.01, kappa=0.04, HSM);
* ``CLD``: ``digits/psld_ddpmpp`` with ``training.sde=cld``, ``m_inv=4``, ``gamma=0.04``, ``beta_min=beta_max=4``
  (Dockhorn et al. 2022) in place of PSLD's ``nu``/``kappa``.

Each run lives in ``--out/<SDE>`` and resumes there; a run that reached ``--steps`` is not trained again.

Samplers at ``NFE`` score evaluations of the EMA network (``eps = 1e-3``, one fixed prior/noise seed, float32):

* ``EM``: predictor-corrector with Euler-Maruyama and no corrector on ``N = NFE`` steps (noise-free last step),
  on the uniform grid; ``EM quadratic``: the same on the quadratic grid (CLD/PSLD's striding);
* ``RD`` (VP only): the reverse-diffusion predictor, no corrector, ``N = NFE`` (the DDPM chain needs ``N > 20``:
  smaller NFE are reported as n/a);
* ``SSCS uniform`` / ``SSCS quadratic`` (PSLD, CLD): symmetric splitting, ``NFE - 1`` steps plus the final Tweedie
  denoising, on the uniform or the quadratic time grid.

Distances to the held-out digits (the test split, 359 images; pixels clamped to [0, 1]):

* ``ED``: squared energy distance in pixel space (:func:`scoresde.toy.energy_distance`, V-statistic). Noise
  floor: two disjoint sets of real *training* digits of the same size as the samples, each against the test split;
* ``FD``: Fréchet distance (:func:`scoresde.metrics.frechet_distance`) between the 10 logits of a digit classifier
  (logistic regression on the training digits, as in ``scoresde demo``) of the samples and of the test digits,
  with the same noise floor;
* ``conf`` / ``H``: the classifier's mean confidence and the entropy of its predicted-class histogram in bits
  (``log2 10 = 3.32`` when all ten digits are equally frequent), reference values of the real test digits.

Results are cached in ``--out/results.json`` (an interrupted run continues where it stopped) and the tables are
written to ``--out/tables.md``; sample grids (first 64 samples) go to ``--out/samples/``.

Examples::

    python benchmarks/phase_space_digits.py --quick   # smoke run (< 1 min): 20 steps, 32 samples, NFE 10
    python benchmarks/phase_space_digits.py           # 1000 steps per model, 500 samples, NFE 25 50 100 250
    python benchmarks/phase_space_digits.py --threads 1 --steps 600 --samples 300 --nfe 25 50 100

On a CPU shared with other jobs use ``--threads 1``: with several multi-threaded torch processes on 2 cores,
training ran 10x slower with 2 threads each (0.2 vs 2 steps/s). ``--steps`` may grow between invocations on the
same ``--out`` (the runs resume; cached sampler results are keyed by the step count).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samplers import markdown_table
from scoresde import sample
from scoresde.cli.digits_demo import digit_classifier
from scoresde.config import build_sde, load_config, resolve_config
from scoresde.data import inverse_data_scaler, load_digits16
from scoresde.data.image_grid import save_image_grid
from scoresde.metrics import frechet_distance
from scoresde.toy import energy_distance
from scoresde.training import Trainer

SDE_NAMES = ("VP", "PSLD", "CLD")
SAMPLERS = {"VP": ("EM", "EM quadratic", "RD"), "PSLD": ("EM", "EM quadratic", "SSCS uniform", "SSCS quadratic"),
            "CLD": ("EM", "EM quadratic", "SSCS uniform", "SSCS quadratic")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them with their defaults)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 20 steps, 32 samples, NFE 10")
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default 1000; quick 20)")
    p.add_argument("--samples", type=int, default=None, help="samples per sampler run (default 500; quick 32)")
    p.add_argument("--nfe", type=int, nargs="+", default=None, help="score evaluations (default 25 50 100 250)")
    p.add_argument("--sdes", nargs="+", default=list(SDE_NAMES), choices=SDE_NAMES, help="models to compare")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler runs and of the real reference sets")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's choice); 1 on a CPU shared with other jobs")
    p.add_argument("--out", type=Path, default=None,
                   help="run folders, results cache and tables (default runs/phase_space_digits[_quick])")
    args = p.parse_args(argv)
    args.steps = args.steps or (20 if args.quick else 1000)
    args.samples = args.samples or (32 if args.quick else 500)
    args.nfe = sorted(args.nfe or ([10] if args.quick else [25, 50, 100, 250]))
    args.out = args.out or Path("runs/phase_space_digits" + ("_quick" if args.quick else ""))
    if args.samples < 2 or min(args.nfe) < 2 or args.steps < 1:
        p.error("--samples and every --nfe must be at least 2, --steps at least 1")
    return args


def model_config(sde_name: str, steps: int):
    """The validated run config of one model: the digits presets, ``steps`` optimizer steps, no snapshot grids."""
    values = resolve_config("digits/vp_ddpmpp" if sde_name == "VP" else "digits/psld_ddpmpp")
    if sde_name == "CLD":  # CLD's parameters (Dockhorn et al. 2022) in place of PSLD's
        values["training"]["sde"] = "cld"
        model = values["model"]
        for key in ("nu", "kappa"):
            model.pop(key)
        model.update(m_inv=4.0, gamma=0.04, beta_min=4.0, beta_max=4.0)
    values["training"].update(n_iters=steps, snapshot_sampling=False, snapshot_freq=max(steps, 1),
                              snapshot_freq_for_preemption=min(100, steps))
    return load_config(values)


def train(sde_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume, or skip when finished) one model; returns its EMA score model and training record."""
    cfg = model_config(sde_name, args.steps)
    workdir = args.out / sde_name
    trainer = Trainer(cfg, workdir)
    trainer.resume()
    record_path = workdir / "train_record.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"train_seconds": 0.0}
    if trainer.step < cfg.training.n_iters:
        start_step, tic = trainer.step, time.perf_counter()
        print(f"[{sde_name}] training steps {start_step} -> {cfg.training.n_iters} in {workdir}", flush=True)
        trainer.train()
        seconds = time.perf_counter() - tic
        record["train_seconds"] += seconds
        record["runs"] = [*record.get("runs", []), {"from": start_step, "to": trainer.step, "seconds": seconds}]
        record["steps"] = trainer.step
        record["eval_loss_ema"] = trainer.eval_loss()
        losses = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        record["final_train_loss"] = next((m["train/loss"] for m in reversed(losses) if "train/loss" in m), None)
        record_path.write_text(json.dumps(record, indent=2))
    elif "eval_loss_ema" not in record:
        record.update(steps=trainer.step, eval_loss_ema=trainer.eval_loss())
        record_path.write_text(json.dumps(record, indent=2))
    print(f"[{sde_name}] step {trainer.step}, training {record['train_seconds']:.0f} s, "
          f"EMA eval loss {record['eval_loss_ema']:.4f}", flush=True)
    return {"model": trainer.ema_model(), "cfg": cfg, "record": record}


class Reference:
    """The held-out digits, the classifier and the real-vs-real noise floors of the distances."""

    def __init__(self, n: int, seed: int) -> None:
        self.clf, self.accuracy = digit_classifier(seed)
        train, test = load_digits16("train"), load_digits16("test")
        to01 = lambda ds: ds.images.to(torch.float64) / 255.0  # noqa: E731
        self.test = to01(test)
        self.test_logits = self.logits(self.test)
        self.test_quality = self.quality(self.test)
        # two disjoint sets of real training digits of the samples' size (fewer if the split is too small)
        real = to01(train)[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))]
        self.floor_size = min(n, len(real) // 2)
        self.floors = [self.distances(real[k * self.floor_size:(k + 1) * self.floor_size]) for k in range(2)]

    def logits(self, x: torch.Tensor) -> np.ndarray:
        """The classifier's 10 class logits of images in ``[0, 1]``."""
        return self.clf.decision_function(x.flatten(1).numpy())

    def distances(self, x: torch.Tensor) -> dict[str, float]:
        """Pixel energy distance and logit Fréchet distance of ``x`` (in ``[0, 1]``) to the test digits."""
        a, b = self.logits(x), self.test_logits
        fd = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        return {"ed": energy_distance(x.flatten(1), self.test.flatten(1)), "fd": fd}

    def quality(self, x: torch.Tensor) -> dict[str, float]:
        """Mean classifier confidence and class-histogram entropy (bits)."""
        probs = self.clf.predict_proba(x.flatten(1).numpy())
        counts = np.bincount(probs.argmax(1), minlength=10) / len(probs)
        return {"conf": float(probs.max(1).mean()),
                "entropy": float(-sum(p * math.log2(p) for p in counts if p > 0))}

    def metrics(self, x: torch.Tensor) -> dict[str, float]:
        """Every metric of a sample set (NaN if the sampler produced non-finite values)."""
        if not torch.isfinite(x).all():
            return {"ed": math.nan, "fd": math.nan, "conf": math.nan, "entropy": math.nan}
        return {**self.distances(x), **self.quality(x)}


def run_sampler(trained: dict[str, Any], sde_name: str, sampler: str, nfe: int, args: argparse.Namespace):
    """Samples in ``[0, 1]`` (float64) of one sampler at ``nfe`` score evaluations, and the NFE it used."""
    model, cfg = trained["model"], trained["cfg"]
    g = torch.Generator().manual_seed(args.seed)
    shape = (args.samples, cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size)
    if sampler.startswith("SSCS"):
        x, info = sample(model.sde, model.score_fn, shape, "sscs", generator=g, return_info=True, steps=nfe - 1,
                         grid=sampler.split()[1], eps=1e-3, denoise=True)
    else:
        # the same continuous-time score (it does not read N) on an SDE discretised with N = nfe steps
        values = cfg.to_dict()
        values["model"]["num_scales"] = nfe
        sde = build_sde(values)
        predictor = "reverse_diffusion" if sampler == "RD" else "euler_maruyama"
        grid = "quadratic" if sampler.endswith("quadratic") else "uniform"
        x, info = sample(sde, model.score_fn, shape, "pc", generator=g, return_info=True, predictor=predictor,
                         corrector="none", eps=1e-3, denoise=True, grid=grid)
    return inverse_data_scaler(x.to(torch.float64), cfg.data.centered).clamp(0, 1), info.nfe


def result_key(sde_name: str, sampler: str, nfe: int, args: argparse.Namespace) -> str:
    """Cache key of one sampler run (a longer training of the same run folder gets new keys)."""
    return f"{sde_name}|{sampler}|{nfe}|{args.samples}|{args.seed}|{args.steps}"


def evaluate(models: dict[str, dict[str, Any]], ref: Reference, args: argparse.Namespace) -> dict[str, Any]:
    """Every (SDE, sampler, NFE), lowest NFE first; results cached in ``--out/results.json``."""
    cache_path = args.out / "results.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for nfe in args.nfe:
        for sde_name in args.sdes:
            for sampler in SAMPLERS[sde_name]:
                key = result_key(sde_name, sampler, nfe, args)
                if key in cache:
                    continue
                tic = time.perf_counter()
                try:
                    x, used = run_sampler(models[sde_name], sde_name, sampler, nfe, args)
                except ValueError as err:  # e.g. VP's DDPM chain at N <= beta_max
                    cache[key] = {"error": str(err)}
                    print(f"{sde_name:4s} {sampler:14s} NFE {nfe:4d}: n/a ({err})", flush=True)
                else:
                    res = {"nfe": used, **ref.metrics(x), "s": time.perf_counter() - tic}
                    cache[key] = res
                    save_image_grid(x[:64].float(), args.out / "samples" / f"{sde_name}_{sampler.replace(' ', '_')}"
                                    f"_nfe{nfe}.png")
                    print(f"{sde_name:4s} {sampler:14s} NFE {used:4d}: ED {res['ed']:.4f}  FD {res['fd']:.3f}  "
                          f"conf {res['conf']:.3f}  H {res['entropy']:.3f}  ({res['s']:.0f} s)", flush=True)
                cache_path.write_text(json.dumps(cache, indent=2))
    return cache


def tables(cache: dict[str, Any], ref: Reference, models: dict[str, dict[str, Any]],
           args: argparse.Namespace) -> str:
    """The markdown report: one table per metric (rows SDE x sampler, columns NFE) and the training record."""
    lines = [f"{args.samples} samples per run, seed {args.seed}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads. Training: {args.steps} steps per model. Classifier test accuracy "
             f"{ref.accuracy:.3f}.", ""]
    lines += [markdown_table(["SDE", "steps", "training s", "final train loss", "EMA eval loss"],
                             [[name, str(m["record"]["steps"]), f"{m['record']['train_seconds']:.0f}",
                               _fmt(m["record"].get("final_train_loss"), ".4f"),
                               _fmt(m["record"]["eval_loss_ema"], ".4f")] for name, m in models.items()]), ""]
    f1, f2 = ref.floors
    specs = [
        ("ed", ".4f", f"Energy distance to the test digits (pixels in [0, 1], lower is better). Noise floor, "
                      f"{ref.floor_size} real training digits vs test: {f1['ed']:.4f} and {f2['ed']:.4f}."),
        ("fd", ".3f", f"Fréchet distance of classifier logits to the test digits (lower is better). Noise floor: "
                      f"{f1['fd']:.3f} and {f2['fd']:.3f}."),
        ("conf", ".3f", f"Mean classifier confidence (real test digits: {ref.test_quality['conf']:.3f})."),
        ("entropy", ".3f", f"Class-histogram entropy in bits (real test digits: {ref.test_quality['entropy']:.3f}; "
                           "uniform 3.322)."),
        ("s", ".1f", "Sampling wall-clock seconds (shared CPU: noisy)."),
    ]
    header = ["SDE", "sampler", *[f"NFE {n}" for n in args.nfe]]
    for metric, fmt, title in specs:
        rows = []
        for sde_name in args.sdes:
            for sampler in SAMPLERS[sde_name]:
                cells = []
                for nfe in args.nfe:
                    res = cache.get(result_key(sde_name, sampler, nfe, args))
                    cells.append("-" if res is None else "n/a" if "error" in res else _fmt(res[metric], fmt))
                rows.append([sde_name, sampler, *cells])
        lines += [title, "", markdown_table(header, rows), ""]
    return "\n".join(lines)


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None else "nan" if isinstance(value, float) and math.isnan(value) else format(value, fmt)


def main(argv: list[str] | None = None) -> None:
    """Train the three models, run every sampler, print and write the tables."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    models = {name: train(name, args) for name in args.sdes}
    ref = Reference(args.samples, args.seed)
    cache = evaluate(models, ref, args)
    report = tables(cache, ref, models, args)
    (args.out / "tables.md").write_text(report + "\n")
    print("\n" + report)
    print(f"total {time.perf_counter() - tic:.0f} s; tables in {args.out / 'tables.md'}")


if __name__ == "__main__":
    main()
