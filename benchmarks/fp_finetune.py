"""FP-Diffusion's small-scale claim: fine-tuning a DSM model with the score Fokker–Planck regulariser lowers the
FPE residual and does not worsen (ideally improves) test NLL, versus continuing plain DSM for the same steps.

For each task (the 2-D Gaussian mixture with the toy MLP; the built-in 16x16 digits with DDPM++), a VP model is
pre-trained with DSM, then fine-tuned from its weights (``Trainer.init_from``, as ``scoresde train --init-from``)
for the same number of steps with

* ``dsm``: the pre-training objective continued (unweighted DSM),
* ``lw-dsm``: likelihood-weighted DSM (g^2 weighting; FP-Diffusion's base objective),
* ``fp``: likelihood-weighted DSM + 0.15 vector + 0.01 scalar score-FPE terms (``fp/...`` presets, Lai et al. 2023),

all at the same learning rate and EMA rate. Every model (EMA weights) is then measured on held-out data:

* FPE residual: :func:`scoresde.losses.fpe.fpe_residual`, mean squared vector residual per dimension on
  perturbed test data over 16 times from 0.01 to 1 (same points and probes for every model; exact divergence in
  2-D, the unbiased two-probe-set Hutchinson estimate on the digits);
* NLL: toy: exact-trace ODE log-likelihood in nats/dim (and the true mixture's); digits: bits/dim with one fixed
  Rademacher probe per example (the same probes and dequantisation for every model, so differences are paired);
* samples: toy: energy distance to test data over the true-vs-true floor; digits: classifier confidence.

Run: ``python benchmarks/fp_finetune.py --task both --out /tmp/fp_finetune`` (about 30 minutes on 2 CPU cores;
``--quick`` checks the pipeline in a minute). Finished runs in ``--out`` are reused.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from scoresde import sample
from scoresde.config import load_config
from scoresde.likelihood import bits_per_dim, log_likelihood
from scoresde.losses.fpe import fpe_residual
from scoresde.toy import GaussianMixture, energy_distance
from scoresde.training import Trainer

FPE_EPS = 0.01  # first time of the residual's grid: below it the residual grows like sigma^-6 and swamps the mean
QUIET = ["training.snapshot_sampling=false", "training.eval_freq=0"]
VARIANTS = {
    "dsm": [],
    "lw-dsm": ["training.likelihood_weighting=true"],
    "fp": ["training.likelihood_weighting=true", "training.fp_alpha=0.15", "training.fp_beta=0.01",
           "training.fp_mode=both", "training.fp_weighting=ll", "training.fp_m=2"],
}
# the paper's weights are sized for CIFAR-10 (the vector term is divided by D^2 = 3072^2); in 2-D or 256-D the
# regulariser dominates DSM with them, so each task also runs them divided by 100
LIGHT = ["training.likelihood_weighting=true", "training.fp_alpha=0.0015", "training.fp_beta=0.0001",
         "training.fp_mode=both", "training.fp_weighting=ll", "training.fp_m=2"]
TASKS = {  # preset, pre-training steps, fine-tuning steps, fine-tuning overrides, extra variants
    "toy": ("toy/gaussian_mixture", 3000, 1000, ["optim.lr=2e-4", "optim.warmup=0", "training.batch_size=512"],
            {"fp-light (alpha, beta / 100)": LIGHT,
             "fp-vector (alpha only)": [*VARIANTS["fp"], "training.fp_mode=vector"],
             "fp-vector-light (alpha / 100 only)": [*LIGHT, "training.fp_mode=vector"]}),
    "digits": ("digits/vp_ddpmpp", 1000, 300, ["optim.lr=2e-4", "optim.warmup=0", "model.ema_rate=0.99"],
               {"fp-light (alpha, beta / 100)": LIGHT}),
}


def _train(preset: str, overrides: list[str], workdir: Path, init_from: Path | None = None) -> tuple[Trainer, float]:
    trainer = Trainer(load_config(preset, overrides), workdir)
    if not trainer.resume() and init_from is not None:
        trainer.init_from(init_from)
    tic = time.perf_counter()
    start = trainer.step
    trainer.train()
    per_step = (time.perf_counter() - tic) / max(trainer.step - start, 1)
    return trainer, per_step


@torch.no_grad()
def _samples(trainer: Trainer, n: int, seed: int) -> torch.Tensor:
    model = trainer.ema_model()
    name, options = trainer.cfg.sampling.sampler_call()
    g = torch.Generator().manual_seed(seed)
    return sample(model.sde, model.score_fn, (n, *trainer.data_shape()), name, generator=g, **options)


def _measure(task: str, trainer: Trainer, test: torch.Tensor, n_eval: int, quick: bool) -> dict[str, Any]:
    model = trainer.ema_model()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = trainer.cfg
    g = torch.Generator().manual_seed(123)
    x0 = test[:n_eval]
    if task == "digits":
        from scoresde.data import preprocess

        x0 = preprocess(x0, centered=cfg.data.centered, uniform_dequantization=False, random_flip=False)
    res = fpe_residual(model.score_fn, model.sde, x0, n_times=4 if quick else 16, eps=FPE_EPS,
                       divergence="exact" if task == "toy" else "hutchinson", generator=g)
    out: dict[str, Any] = {"fpe_residual": float(res.mean), "fpe_residual_stderr": float(res.stderr)}
    g = torch.Generator().manual_seed(7)
    if task == "toy":
        logp = log_likelihood(model.sde, model.score_fn, test[:n_eval],
                                 trace="exact", generator=g)
        nll = -logp / test.shape[1]
        out.update(nll=float(nll.mean()), nll_stderr=float(nll.std() / math.sqrt(len(nll))))
        x = _samples(trainer, n_eval, 11).double()
        gm = GaussianMixture.example_2d()
        gs = torch.Generator().manual_seed(5)
        ref = gm.sample(n_eval, gs)
        floor = sum(energy_distance(gm.sample(n_eval, gs), ref) for _ in range(4)) / 4
        out["ed_ratio"] = float(energy_distance(x, ref) / floor)
    else:
        data_range = (-1.0, 1.0) if cfg.data.centered else (0.0, 1.0)
        bpd = bits_per_dim(model.sde, model.score_fn, test[:n_eval], data_range=data_range, generator=g)
        out.update(bpd=float(bpd.mean()), bpd_stderr=float(bpd.std() / math.sqrt(len(bpd))))
        from scoresde.cli.digits_demo import digit_classifier, digit_quality
        from scoresde.data import inverse_data_scaler

        clf, _ = digit_classifier()
        x = inverse_data_scaler(_samples(trainer, 64 if not quick else 8, 11), cfg.data.centered).clamp(0, 1)
        out.update(digit_quality(x, clf))
    return out


def _cached(workdir: Path, row: dict[str, Any], measure) -> dict[str, Any]:
    """``row`` with the measurements of ``workdir``'s final model: read from ``workdir/result.json`` when that was
    written for the same step, else measured and written there."""
    path = workdir / "result.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("model") == row["model"]:
            return saved
    row = {**row, **measure()}
    path.write_text(json.dumps(row))
    return row


def _test_data(task: str, cfg) -> torch.Tensor:
    from scoresde.training.data import build_dataset

    ds = build_dataset(cfg.data, "test", cfg.seed)
    return torch.stack([ds[i][0] for i in range(min(len(ds), 2000))])


def run_task(task: str, out: Path, quick: bool) -> list[dict[str, Any]]:
    """Pre-train, fine-tune the three variants, measure all four models; returns the table rows."""
    preset, pre_steps, ft_steps, ft_overrides, extra_variants = TASKS[task]
    if quick:
        pre_steps, ft_steps = 20, 5
    small = ["model.nf=16", "model.ch_mult=[1, 2]", "model.attn_resolutions=[]"] if quick and task == "digits" else []
    pre_over = [*QUIET, *small, f"training.n_iters={pre_steps}", f"training.snapshot_freq={pre_steps}"]
    pre, pre_time = _train(preset, pre_over, out / task / "pretrained")
    test = _test_data(task, pre.cfg)
    n_eval = (32 if quick else 1000) if task == "toy" else (8 if quick else 128)
    rows = [_cached(out / task / "pretrained", {"task": task, "model": f"pretrained ({pre_steps} DSM steps)",
                                                "s_per_step": pre_time},
                    lambda: _measure(task, pre, test, n_eval, quick))]
    if task == "toy":  # the data's own density: the NLL a perfect model would reach (log p_0 of the mixture)
        true = -GaussianMixture.example_2d().log_prob(test[:n_eval].double()) / test.shape[1]
        rows[0]["true_nll"] = float(true.mean())
    print(json.dumps(rows[-1]), flush=True)
    for name, extra in {**VARIANTS, **extra_variants}.items():
        over = [*pre_over, *ft_overrides, *extra, f"training.n_iters={ft_steps}", f"training.snapshot_freq={ft_steps}"]
        folder = name.split(" ")[0]
        ft, per_step = _train(preset, over, out / task / folder, init_from=out / task / "pretrained")
        rows.append(_cached(out / task / folder, {"task": task, "model": f"+{ft_steps} {name}", "s_per_step": per_step},
                            lambda ft=ft: _measure(task, ft, test, n_eval, quick)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table per task."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        sub = [r for r in rows if r["task"] == task]
        if task == "toy":
            head = "| model | FPE residual | test NLL (nats/dim) | ED ratio | s/step |"
            fmt = lambda r: (f"| {r['model']} | {r['fpe_residual']:.4g} ± {r['fpe_residual_stderr']:.2g} | "  # noqa: E731
                             f"{r['nll']:.4f} ± {r['nll_stderr']:.4f} | {r['ed_ratio']:.2f} | {r['s_per_step']:.4f} |")
        else:
            head = "| model | FPE residual | test bits/dim | mean confidence | class entropy | s/step |"
            fmt = lambda r: (f"| {r['model']} | {r['fpe_residual']:.4g} ± {r['fpe_residual_stderr']:.2g} | "  # noqa: E731
                             f"{r['bpd']:.4f} ± {r['bpd_stderr']:.4f} | {r['mean_confidence']:.3f} | "
                             f"{r['class_entropy_bits']:.2f} | {r['s_per_step']:.3f} |")
        lines += [f"**{task}**", "", head, "|" + "---|" * (head.count("|") - 1), *map(fmt, sub), ""]
        if "true_nll" in sub[0]:
            lines += [f"NLL of the true mixture on the same test points: {sub[0]['true_nll']:.4f} nats/dim.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["toy", "digits", "both"], default="both")
    parser.add_argument("--out", default="/tmp/fp_finetune")
    parser.add_argument("--quick", action="store_true", help="tiny runs: checks the pipeline in about a minute")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; 1 when the cores are shared with other jobs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    for task in (["toy", "digits"] if args.task == "both" else [args.task]):
        rows += run_task(task, out, args.quick)
    table = markdown(rows)
    print(table)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
