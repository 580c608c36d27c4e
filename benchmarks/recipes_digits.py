"""Training recipes on the built-in 16x16 digits at equal training steps: Score SDE's 2021 recipe (the demo's
``digits/vp_ddpmpp``) against EDM's (``edm/digits``: EDM SDE, preconditioning, log-normal noise levels, EDM loss
weighting) and rectified flow (``fm/digits``: velocity loss on the linear interpolant).

Each recipe is one :class:`scoresde.training.Trainer` run to the largest ``--steps`` with a numbered checkpoint at
every listed step (same network, batch, optimizer and seed as the demo's preset unless the recipe's preset says
otherwise). For every checkpoint (EMA weights):

* samples (``--samples``, one fixed prior/noise seed) from the demo's own sampler (predictor-corrector, reverse
  diffusion, 250 steps: ``PC-250``) and from the fast samplers at ``--nfe`` network evaluations (DPM-Solver++(2M) on
  the logSNR grid; Heun on the Karras grid, EDM's sampler);
* the digit classifier's mean confidence and class entropy (bits), the logit Fréchet distance and the pixel energy
  distance to the held-out digits (``benchmarks/phase_space_digits.py``'s :class:`Reference`, with its
  real-vs-real floors);
* test bits/dim of ``--bpd-images`` test digits (probability-flow ODE, dopri5 at rtol = atol = 1e-4, the demo's).

Results are cached in ``--out/results.json`` (an interrupted run continues where it stopped) and printed as a table.

    .venv/bin/python benchmarks/recipes_digits.py --threads 1 --recipes score_sde edm fm --steps 250 500 1000
    .venv/bin/python benchmarks/recipes_digits.py --quick     # smoke run: 4 steps, 16 samples
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from phase_space_digits import Reference
from samplers import markdown_table
from scoresde import load_checkpoint, sample
from scoresde.config import load_config, resolve_config
from scoresde.data import inverse_data_scaler, load_digits16
from scoresde.likelihood import bits_per_dim
from scoresde.training import Trainer

#: recipe name -> preset
RECIPES = {"score_sde": "digits/vp_ddpmpp", "edm": "edm/digits", "fm": "fm/digits"}
#: (label, sampler, options, steps for an NFE budget); PC-250 is added separately (its NFE is fixed)
FAST = [("DPM-Solver++(2M)", "dpm_solver", {"algorithm": "dpmsolver++", "method": "multistep", "order": 2,
                                            "grid": "logSNR"}),
        ("Heun (Karras grid)", "heun", {"grid": "karras"})]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them with their defaults)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000], help="checkpoints to evaluate")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 35])
    p.add_argument("--pc-steps", type=int, default=250, help="steps of the PC sampler (0: skip it)")
    p.add_argument("--bpd-images", type=int, default=64)
    p.add_argument("--overrides", nargs="*", default=[], help="config overrides applied to every recipe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: steps 2 4, 16 samples, NFE 4, PC 4 steps")
    p.add_argument("--out", type=Path, default=None, help="run folders and cache (default runs/recipes_digits)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.samples, args.nfe, args.pc_steps, args.bpd_images = [2, 4], 16, [4], 4, 4
    args.steps = sorted(set(args.steps))
    args.out = args.out or Path("runs/recipes_digits" + ("_quick" if args.quick else ""))
    return args


def train(recipe: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one recipe to ``max(args.steps)`` keeping a checkpoint at every listed step."""
    values = resolve_config(RECIPES[recipe])
    last = args.steps[-1]
    freq = math.gcd(*args.steps)
    values["training"].update(n_iters=last, snapshot_sampling=False, snapshot_freq=freq, eval_freq=0,
                              snapshot_freq_for_preemption=min(100, freq))
    cfg = load_config(values, list(args.overrides))
    workdir = args.out / recipe
    trainer = Trainer(cfg, workdir)
    trainer.resume()
    record_path = workdir / "train_record.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"train_seconds": 0.0}
    if trainer.step < last:
        start, tic = trainer.step, time.perf_counter()
        print(f"[{recipe}] training steps {start} -> {last} in {workdir}", flush=True)
        trainer.train()
        record["train_seconds"] += time.perf_counter() - tic
        record["runs"] = [*record.get("runs", []), {"from": start, "to": trainer.step,
                                                     "seconds": time.perf_counter() - tic}]
        record_path.write_text(json.dumps(record, indent=2))
    record["seconds_per_step"] = record["train_seconds"] / max(1, sum(r["to"] - r["from"]
                                                                      for r in record.get("runs", [])))
    return {"cfg": cfg, "workdir": workdir, "record": record}


def evaluate(recipe: str, trained: dict[str, Any], step: int, ref: Reference, args: argparse.Namespace,
             cache: dict[str, Any], save) -> None:
    """Every sampler row and the bits/dim of one checkpoint (cached by key)."""
    model = load_checkpoint(trained["workdir"] / "checkpoints" / f"checkpoint_{step}")
    cfg = trained["cfg"]
    shape = (args.samples, cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size)
    runs = [("PC-250" if args.pc_steps == 250 else f"PC-{args.pc_steps}", "pc",
             {"predictor": "reverse_diffusion", "corrector": "none", "steps": args.pc_steps})] if args.pc_steps else []
    runs += [(label, name, {**options, "nfe": n}) for n in args.nfe for label, name, options in FAST]
    runs = [(label, name, {**options, "eps": cfg.sampling.eps}) for label, name, options in runs]  # None: the SDE's
    for label, name, options in runs:
        key = f"{recipe}/{step}/{label}/{options['nfe'] if 'nfe' in options else options['steps']}"
        if key in cache:
            continue
        tic = time.perf_counter()
        try:
            with torch.no_grad():
                x, info = sample(model, shape, name, return_info=True,
                                 generator=torch.Generator().manual_seed(args.seed), **options)
            x01 = inverse_data_scaler(x.to(torch.float64), cfg.data.centered).clamp(0, 1)
            cache[key] = {**ref.metrics(x01), "nfe": info.nfe, "seconds": time.perf_counter() - tic}
        except ValueError as err:  # a sampler that refuses this SDE: recorded, not fatal
            cache[key] = {"error": str(err).splitlines()[0]}
        print(key, cache[key], flush=True)
        save()
    key = f"{recipe}/{step}/bpd"
    if key not in cache:
        tic = time.perf_counter()
        x = load_digits16("test").images[:args.bpd_images]
        bpd, info = bits_per_dim(model.sde, model.score, x, data_range=(-1.0, 1.0) if cfg.data.centered else (0, 1),
                                 generator=torch.Generator().manual_seed(cfg.seed), rtol=1e-4, atol=1e-4,
                                 return_info=True)
        cache[key] = {"bpd": float(bpd.mean()), "stderr": float(bpd.std() / math.sqrt(len(bpd))), "nfe": info.nfe,
                      "seconds": time.perf_counter() - tic}
        print(key, cache[key], flush=True)
        save()


def table(args: argparse.Namespace, cache: dict[str, Any], records: dict[str, Any]) -> str:
    """The results as a markdown table: one row per recipe x step x sampler."""
    rows = []
    for recipe in args.recipes:
        for step in args.steps:
            bpd = cache.get(f"{recipe}/{step}/bpd", {})
            prefix = f"{recipe}/{step}/"
            for key, m in cache.items():
                if not key.startswith(prefix) or key.endswith("/bpd"):
                    continue
                label = key[len(prefix):].rsplit("/", 1)[0]
                if "error" in m:
                    rows.append([recipe, str(step), label, "-", m["error"][:60], "", "", "", ""])
                    continue
                rows.append([recipe, str(step), label, str(m["nfe"]), f"{m['fd']:.2f}", f"{m['ed']:.4f}",
                             f"{m['conf']:.3f}", f"{m['entropy']:.2f}",
                             f"{bpd['bpd']:.3f}" if bpd else "-"])
    seconds = {r: f"{rec['record']['seconds_per_step']:.2f}" for r, rec in records.items()}
    head = ["recipe", "steps", "sampler", "NFE", "logit FD", "pixel ED", "confidence", "entropy", "test bits/dim"]
    return markdown_table(head, rows) + f"\n\ntraining seconds per step: {seconds}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "results.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}

    def save() -> None:  # merged with the file: runs of other recipes may write it at the same time
        merged = {**(json.loads(cache_path.read_text()) if cache_path.exists() else {}), **cache}
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, indent=1))
        tmp.replace(cache_path)

    ref = Reference(args.samples, args.seed)
    records = {}
    for recipe in args.recipes:
        records[recipe] = train(recipe, args)
        for step in args.steps:
            evaluate(recipe, records[recipe], step, ref, args, cache, save)
    floors = ", ".join(f"{f['fd']:.2f} / {f['ed']:.4f}" for f in ref.floors)
    print(f"\n{args.samples} samples, seed {args.seed}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"real-vs-real floors (FD / ED): {floors}; test digits confidence {ref.test_quality['conf']:.3f}\n")
    print(table(args, cache, records))


if __name__ == "__main__":
    main()
