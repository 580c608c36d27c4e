"""Throughput of the evaluation pipeline of ``scoresde eval``: per-sample-seeded sampling, Inception features and
the FID matrix square root, each timed on its own, on CPU (or GPU with ``--device cuda``).

Stages (images/s; the model is a randomly initialised network of ``--config``, which costs what a trained one does):

* ``sampling`` -- :func:`scoresde.evaluation.generate_images` (the real path: per-sample generators, uint8
  conversion) with the config's sampler at ``--steps`` steps; the row ``at N=...`` extrapolates to the config's own
  number of steps (time is linear in the NFE for PC samplers);
* ``inception`` -- torch-fidelity's Inception-v3 on uint8 images of the config's size (resized to 299x299), with a
  random-valued local weights file unless ``--inception-weights`` is given (speed does not depend on the values);
* ``fid sqrtm`` -- one :func:`scoresde.metrics.frechet_distance` on 2048-d statistics (once per evaluation).

The last line estimates the wall-clock time of a 50k-sample evaluation at the config's step count.

Examples::

    python benchmarks/eval_pipeline.py --quick                               # digits DDPM++, a few seconds
    python benchmarks/eval_pipeline.py --config vp/cifar10_ddpmpp_continuous --steps 25 --batch-size 8
    python benchmarks/eval_pipeline.py --config vp/cifar10_ddpmpp_continuous --device cuda --batch-size 500
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scoresde.config import load_config
from scoresde.evaluation import generate_images
from scoresde.metrics import frechet_distance
from scoresde.metrics.inception import load_inception, write_random_inception_weights
from scoresde.training.build import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampling(preset: str, device: torch.device, steps: int, batch_size: int, num: int) -> tuple[float, int]:
    """Images/s of per-sample-seeded sampling at ``steps`` steps, and the NFE per sample."""
    cfg = load_config(preset, [f"model.num_scales={steps}"])
    model = build_model(cfg).to(device).eval()
    name, options = cfg.sampling.sampler_call()
    shape = (cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size)
    run = dict(seed=0, sampler=name, options=options, batch_size=batch_size, centered=cfg.data.centered,
               device=device)
    generate_images(model.sde, model.score_fn, shape, range(min(batch_size, 2)), **run)  # warm-up
    _sync(device)
    start = time.perf_counter()
    _, nfes = generate_images(model.sde, model.score_fn, shape, range(num), **run)
    _sync(device)
    return num / (time.perf_counter() - start), int(np.mean(nfes))


def time_inception(extractor, image_size: int, channels: int, batch_size: int, num: int,
                   device: torch.device) -> float:
    """Images/s of Inception pool features + logits on uint8 images."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (num, channels, image_size, image_size), generator=g, dtype=torch.uint8)
    extractor(images[:2])  # warm-up
    _sync(device)
    start = time.perf_counter()
    extractor.extract(images.split(batch_size))
    _sync(device)
    return num / (time.perf_counter() - start)


def time_fid() -> float:
    """Seconds of one Fréchet distance between 2048-d statistics (scipy ``sqrtm``)."""
    rng = np.random.default_rng(0)
    stats = []
    for _ in range(2):
        x = rng.standard_normal((2500, 2048)).astype(np.float32)
        stats += [x.mean(0, dtype=np.float64), np.cov(x, rowvar=False)]
    start = time.perf_counter()
    frechet_distance(*stats)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="digits/vp_ddpmpp", help="preset whose network and sampler are timed")
    parser.add_argument("--steps", type=int, default=25,
                        help="sampler steps actually run (default: %(default)s; VP reverse diffusion needs > 20)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num", type=int, default=32, help="images per timed stage")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--inception-weights", default=None, help="a weights file (default: random, generated)")
    parser.add_argument("--quick", action="store_true", help="4 images, 25 steps, no FID timing")
    args = parser.parse_args()
    if args.quick:
        args.num, args.steps, args.batch_size = 4, 25, 4
    device = torch.device(args.device)
    cfg = load_config(args.config, [])
    full_steps = cfg.model.get("num_scales", 1000)
    print(f"{args.config} on {device} ({torch.get_num_threads()} threads), batch {args.batch_size}, "
          f"{args.num} images per stage", flush=True)
    ips, nfe = time_sampling(args.config, device, args.steps, args.batch_size, args.num)
    nfe_full = nfe * full_steps / args.steps
    rows = [(f"sampling, N={args.steps} (NFE {nfe})", ips),
            (f"sampling at N={full_steps} (NFE {nfe_full:.0f}, extrapolated)", ips * args.steps / full_steps)]
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.inception_weights or write_random_inception_weights(Path(tmp) / "inception.pth")
        extractor = load_inception(weights, device)
        rows.append(("inception features (pool + logits)", time_inception(
            extractor, cfg.data.image_size, cfg.data.num_channels, args.batch_size, args.num, device)))
    width = max(len(r[0]) for r in rows)
    print(f"{'stage':<{width}}  images/s")
    for label, value in rows:
        print(f"{label:<{width}}  {value:8.3f}")
    per_image = 1 / rows[1][1] + 1 / rows[2][1]
    fid_s = 0.0 if args.quick else time_fid()
    if not args.quick:
        print(f"{'fid sqrtm (2048-d), seconds':<{width}}  {fid_s:8.1f}")
    print(f"estimated 50k-sample evaluation at N={full_steps}: {(50_000 * per_image + fid_s) / 3600:.1f} h")


if __name__ == "__main__":
    main()
