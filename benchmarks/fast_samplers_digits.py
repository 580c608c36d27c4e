"""Sample quality against NFE on the trained digits model: every fast sampler at 10, 20 and 50 network calls next to
the 1000-step predictor-corrector sampler, scored as in ``benchmarks/phase_space_digits.py`` (logit Fréchet distance
and pixel energy distance to the held-out digits, classifier confidence and class entropy; real-vs-real floors).

Needs a trained ``digits/vp_ddpmpp`` run folder (``make demo`` writes ``demo_out/run``):

    .venv/bin/python benchmarks/fast_samplers_digits.py --run demo_out/run --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from phase_space_digits import Reference
from samplers import markdown_table
from scoresde import load_checkpoint, sample
from scoresde.data import inverse_data_scaler
from scoresde.sampling import SAMPLERS

#: (label, sampler, options, steps for an NFE budget)
ROWS = [
    ("PC reverse diffusion (reference)", "pc", {"predictor": "reverse_diffusion", "corrector": "none"}, lambda n: n),
    ("DDIM", "ddim", {"grid": "logSNR"}, lambda n: n),
    ("DDIM (uniform)", "ddim", {"grid": "uniform"}, lambda n: n),
    ("DPM-Solver++(2M)", "dpm_solver", {"algorithm": "dpmsolver++", "method": "multistep", "order": 2}, lambda n: n),
    ("DPM-Solver++(3M)", "dpm_solver", {"algorithm": "dpmsolver++", "method": "multistep", "order": 3}, lambda n: n),
    ("UniPC-2 bh2", "unipc", {"order": 2, "variant": "bh2"}, lambda n: n),
    ("UniPC-3 bh2", "unipc", {"order": 3, "variant": "bh2"}, lambda n: n),
    ("Heun (EDM)", "heun", {"grid": "karras"}, lambda n: (n + 1) // 2),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="demo_out/run", help="trained digits run folder (default: make demo's)")
    p.add_argument("--samples", type=int, default=512, help="samples per sampler run")
    p.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50], help="NFE budgets of the fast samplers")
    p.add_argument("--reference-steps", type=int, default=1000, help="steps of the PC reference (0: skip it)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_checkpoint(args.run)
    cfg = model.config
    ref = Reference(args.samples, args.seed)
    shape = (args.samples, cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size)
    rows = []
    for label, name, options, steps_for in ROWS:
        if name not in SAMPLERS:
            continue
        budgets = ([args.reference_steps] if args.reference_steps else []) if name == "pc" else args.nfe
        for n in budgets:
            t0 = time.perf_counter()
            with torch.no_grad():
                x, info = sample(model, shape, name, steps=steps_for(n), return_info=True,
                                 generator=torch.Generator().manual_seed(args.seed), **options)
            x01 = inverse_data_scaler(x.to(torch.float64), cfg.data.centered).clamp(0, 1)
            m = ref.metrics(x01)
            rows.append([label, str(info.nfe), f"{m['fd']:.2f}", f"{m['ed']:.4f}", f"{m['conf']:.3f}",
                         f"{m['entropy']:.2f}", f"{time.perf_counter() - t0:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
    floors = [[f"real digits (floor {k + 1})", "-", f"{f['fd']:.2f}", f"{f['ed']:.4f}", "-", "-", "-"]
              for k, f in enumerate(ref.floors)]
    test = [["test digits", "-", "0", "0", f"{ref.test_quality['conf']:.3f}", f"{ref.test_quality['entropy']:.2f}",
             "-"]]
    print(f"\nrun {args.run} (step {model.step}), {args.samples} samples, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, classifier test accuracy {ref.accuracy:.3f}\n")
    print(markdown_table(["sampler", "NFE", "logit FD", "pixel ED", "confidence", "class entropy (bits)", "s"],
                         rows + floors + test))


if __name__ == "__main__":
    main()
