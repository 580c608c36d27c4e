"""Guidance at large scales on the conditional digits model: classifier-free guidance at w in {0, 1, 3, 5}, plain and
with each option of scoresde.guidance (CFG rescale, dynamic thresholding, a noise-level interval, all three), measured
by the requested-class rate, the class entropy, the fraction of saturated pixels and the Fréchet distance of the digit
classifier's logits to the test digits of the requested class (scoresde.cli.conditional_demo.guidance_quality).
Prints a markdown table and which setting the demo's rule (pick_setting) picks.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/guidance_digits.py --run /tmp/g26cond/run --steps 400

``--run`` is a run folder of ``digits/vp_ddpmpp_conditional`` (``scoresde demo --conditional --out DIR`` trains one in
``DIR/run``); ``--steps`` its ``training.n_iters`` (it is resumed, not trained further once there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from scoresde.cli.conditional_demo import (
    PRESET,
    digit_logits_by_class,
    guidance_quality,
    pick_setting,
    sample_digits,
    setting_name,
)
from scoresde.cli.digits_demo import digit_classifier, train_or_resume
from scoresde.guidance import classifier_free

OPTIONS = {"plain": {}, "rescale 0.7": {"rescale": 0.7}, "threshold 99.5": {"threshold": 99.5},
           "interval (0.3, 5]": {"interval": (0.3, 5.0)},
           "all three": {"rescale": 0.7, "threshold": 99.5, "interval": (0.3, 5.0)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder of digits/vp_ddpmpp_conditional")
    parser.add_argument("--steps", type=int, required=True, help="its training.n_iters")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--sampler-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    cfg, trainer, _, _ = train_or_resume(PRESET, (f"seed={args.seed}", f"training.n_iters={args.steps}"),
                                         Path(args.run), False)
    model = trainer.ema_model()
    clf, _ = digit_classifier(cfg.seed)
    reference = digit_logits_by_class(clf)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    runs = [(0.0, "plain")] + [(w, name) for w in args.scales for name in OPTIONS]
    rows = []
    for w, name in runs:
        tic = time.perf_counter()
        with torch.no_grad():
            raw, nfe = sample_digits(classifier_free(model, w, **OPTIONS[name]), labels, args.sampler_steps, cfg.seed,
                                    len(labels))
        rows.append({"guidance": "cfg", "scale": w, "options": OPTIONS[name], "name": name, "nfe": nfe,
                     "seconds": time.perf_counter() - tic, **guidance_quality(raw, labels, clf, reference)})
        r = rows[-1]
        print(f"w={w:g} {name}: {r['fraction']:.3f} {r['saturated_fraction']:.4f} {r['logit_fd']:.2f}", flush=True)
    print(f"\nmodel step {trainer.step}; {args.per_class} samples per digit; DPM-Solver++(2M), {args.sampler_steps} "
          "steps\n")
    print("| w | option | requested-class rate | class entropy (bits) | saturated pixels | logit FD (mean of 10) "
          "| NFE | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scale']:g} | {r['name']} | {r['fraction']:.3f} | {r['mean_entropy_bits']:.2f} | "
              f"{r['saturated_fraction']:.4f} | {r['logit_fd']:.2f} | {r['nfe']} | {r['seconds']:.0f} |")
    best, why = pick_setting(rows)
    print(f"\npick_setting: {why}  [{setting_name(best)}]")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
