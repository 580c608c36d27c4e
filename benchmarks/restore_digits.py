"""Image restoration on the digits model (issue 24 item 4): x2 super-resolution, Gaussian deblurring and 50 % random
inpainting at ``sigma_y = 0.05`` on test digits, for every posterior sampler of :func:`scoresde.solve_inverse` and the
measurement's naive inverse.

For each task x method the table gives, over ``--num`` test digits (``scoresde.data.load_digits16("test")``, pixels in
``[0, 1]``; the restorations are clipped to ``[0, 1]`` before scoring):

* PSNR (dB, the mean over images of the per-image PSNR, ``torchmetrics``' ``peak_signal_noise_ratio`` with data range
  1) and SSIM (``torchmetrics``' ``structural_similarity_index_measure``: Gaussian window 11, std 1.5, data range 1,
  mean over images; on 16 x 16 images the window leaves a 6 x 6 valid region);
* ``agree``: the fraction of restorations that the digit classifier (:func:`scoresde.cli.digits_demo.digit_classifier`,
  a logistic regression) puts in the class it gives the original image;
* ``non-finite``: restorations with a NaN or infinite pixel (scored as if NaN were 0);
* NFE (batched model calls per run; SMC's batch holds ``num * particles`` rows) and seconds per image (a machine loaded
  by other jobs: compare within one run only).

The operators are those of ``scoresde restore`` (:func:`scoresde.cli.restore_commands.task_operator`): ``sr2`` is
average pooling over 2 x 2 blocks, ``deblur`` a circular 5 x 5 Gaussian blur of std 1 pixel, ``inpaint-random`` drops
half of the pixels (a different random mask per digit). The measurement is made on the ``[0, 1]`` pixel scale and
mapped to the model's scale by :func:`~scoresde.cli.restore_commands.model_measurement`. The naive inverse: bicubic
upsampling of ``y`` (sr), ``y`` itself (deblur), ``A^T y`` = the observed pixels with the missing ones 0 (inpainting).
Every method runs ``--steps`` steps (one grid for all, so that the NFE is comparable; ``--method-steps dps=100``
gives some methods another count); SMC with ``--particles``.

    .venv/bin/python benchmarks/restore_digits.py --run RUN --steps 10 --threads 1        # the RESULTS.md table
    .venv/bin/python benchmarks/restore_digits.py --run RUN --num 8 --methods ddrm naive  # a quick look
    .venv/bin/python benchmarks/restore_digits.py --run RUN --panel panel.png             # + original/measurement/each
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor

import scoresde
from scoresde.checkpoint.run import load_run
from scoresde.cli.common import saved_config
from scoresde.cli.digits_demo import digit_classifier
from scoresde.cli.restore_commands import model_measurement, random_mask, shown_measurement, task_operator
from scoresde.data import inverse_data_scaler, load_digits16
from scoresde.data.image_grid import save_image_grid
from scoresde.inverse import LinearOperator, Mask

TASKS = ("sr2", "deblur", "inpaint-random")
METHODS = ("naive", "smc", "dps", "pigdm", "ddrm", "mmps")


def operator_for(task: str, shape: tuple[int, int, int], num: int, seed: int) -> LinearOperator:
    """The task's operator; ``inpaint-random`` gets one random mask per digit (seeds ``seed + i``)."""
    if task == "inpaint-random":
        return Mask(torch.stack([random_mask(shape, 0.5, seed + i).expand(shape) for i in range(num)]), per_row=True)
    return task_operator(task, shape)


def naive_inverse(task: str, operator: LinearOperator, y: Tensor) -> Tensor:
    """The baseline restoration of ``y`` (module docstring), on the ``[0, 1]`` scale."""
    if task.startswith("sr"):
        return torch.nn.functional.interpolate(y, scale_factor=int(task[2:]), mode="bicubic", align_corners=False)
    if task == "deblur":
        return y
    return operator.T(y)


def scores(x: Tensor, clean: Tensor, clf, clean_class) -> dict[str, float]:
    """PSNR, SSIM and classifier agreement of restorations ``x`` with the originals ``clean`` (both in [0, 1]), and
    ``bad``: the number of restorations with a non-finite pixel (scored with NaN as 0 and infinities clipped)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    bad = int((~torch.isfinite(x.flatten(1))).any(1).sum())
    x = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 1).double()
    psnr = peak_signal_noise_ratio(x, clean, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(x, clean, data_range=1.0, reduction="none")
    agree = (clf.predict(x.flatten(1).float().numpy()) == clean_class).mean()
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean()), "agree": float(agree), "bad": bad}


def run_method(model, method: str, operator: LinearOperator, y_model: Tensor, sigma_model: float,
               args: argparse.Namespace) -> tuple[Tensor, int]:
    """Restorations on the model's scale and the NFE of one method."""
    options = {"steps": args.method_steps.get(method, args.steps)}
    if method == "smc":
        options["num_particles"] = args.particles
    g = torch.Generator().manual_seed(args.seed)
    x, info = scoresde.solve_inverse(model, operator, y_model, sigma_y=sigma_model, method=method, generator=g,
                                     return_info=True, **options)
    return x, info.nfe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a digits run folder (config.json + checkpoints/)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--num", type=int, default=100, help="test digits (default: %(default)s)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--steps", type=int, default=10, help="sampling steps of every method (default: %(default)s)")
    p.add_argument("--method-steps", nargs="*", default=[], metavar="METHOD=N",
                   help="another step count for some methods, e.g. dps=100 (default: --steps for all)")
    p.add_argument("--particles", type=int, default=16, help="SMC particles per digit (default: %(default)s)")
    p.add_argument("--sigma-y", type=float, default=0.05, help="noise std on the [0, 1] scale (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--panel", default=None, help="also write a PNG: per task, 4 digits x (original, measurement, "
                                                 "each method)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.method_steps = {k: int(v) for k, _, v in (item.partition("=") for item in args.method_steps)}
    run = Path(args.run)
    cfg = saved_config(run)
    model, _ = load_run(run, args.step, use_ema=True, map_location="cpu")
    shape = (cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size)
    clean = load_digits16("test").images[: args.num].double() / 255.0
    clf, acc = digit_classifier()
    clean_class = clf.predict(clean.flatten(1).float().numpy())
    print(f"run {run} (step {model.step}), {args.num} test digits, sigma_y {args.sigma_y}, steps {args.steps}, smc "
          f"particles {args.particles}; classifier test accuracy {acc:.3f}")
    print("| task | method | PSNR (dB) | SSIM | agree | non-finite | NFE | s / image |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    panel: list[Tensor] = []
    for task in args.tasks:
        op = operator_for(task, shape, args.num, args.seed)
        g = torch.Generator().manual_seed(args.seed + 1)
        y = op(clean)
        y = y + args.sigma_y * torch.randn(y.shape, generator=g, dtype=y.dtype)
        y_model, sigma_model = model_measurement(op, y.float(), args.sigma_y, cfg.data.centered)
        if isinstance(op, Mask):  # one mask per digit: the missing pixels grey
            shown = y * op.mask.to(y) + 0.5 * (1 - op.mask.to(y))
        else:
            shown = shown_measurement(op, y)
        columns = [clean[:4].float(), shown[:4].float()]
        for method in args.methods:
            tic = time.perf_counter()
            if method == "naive":
                x, nfe = naive_inverse(task, op, y).float(), 0
            else:
                xm, nfe = run_method(model, method, op, y_model, sigma_model, args)
                x = inverse_data_scaler(xm, cfg.data.centered)
            sec = (time.perf_counter() - tic) / args.num
            s = scores(x, clean, clf, clean_class)
            print(f"| {task} | {method} | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['agree']:.2f} | {s['bad']} | {nfe} "
                  f"| {sec:.3f} |", flush=True)
            columns.append(torch.nan_to_num(x[:4].float(), nan=0.0).clamp(0, 1))
        panel.append(torch.stack(columns, dim=1).flatten(0, 1))
    if args.panel:
        path = save_image_grid(torch.cat(panel), args.panel, nrow=2 + len(args.methods))
        print(f"panel: rows = 4 digits per task ({', '.join(args.tasks)}); columns = original, measurement, "
              f"{', '.join(args.methods)}; written to {path}")


if __name__ == "__main__":
    main()
