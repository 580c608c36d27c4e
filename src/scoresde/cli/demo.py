"""The 2-D demo (``scoresde demo --toy``): train on a built-in Gaussian mixture and check against the truth.

Data -> VP SDE perturbation -> MLP -> DSM loss (the ``toy/gaussian_mixture`` preset and the library's trainer);
prior -> PC and ODE samplers -> samples -> distances to the true law; and the probability-flow ODE likelihood
against the exact log-density. The mixture has exact scores, so every number is also reported for the exact
score: the gap between the two is the learning error alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..config import load_config
from ..likelihood import log_likelihood
from ..models import ScoreModel
from ..sampling import sample
from ..toy import GaussianMixture, energy_distance
from ..training import Trainer
from ..training.plots import scatter_panels


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo` (all have working defaults for 2 CPU cores); the model, SDE and optimiser are
    the ``toy/gaussian_mixture`` preset's."""

    steps: int = 5000
    num_samples: int = 2000
    num_likelihood: int = 500
    seed: int = 0


def _train(cfg: DemoConfig, out: Path, progress: bool) -> tuple[ScoreModel, dict[str, float]]:
    """Train the ``toy/gaussian_mixture`` preset with the library's :class:`~scoresde.training.Trainer`."""
    run_cfg = load_config("toy/gaussian_mixture", [f"training.n_iters={cfg.steps}", f"seed={cfg.seed}",
                                                   "training.snapshot_sampling=false", "training.eval_freq=0",
                                                   f"training.snapshot_freq={cfg.steps}"])
    trainer = Trainer(run_cfg, out / "run", progress=progress)
    trainer.resume()
    last = trainer.train()
    return trainer.ema_model(), last


def _sample_metrics(x: Tensor, gm: GaussianMixture, reference: Tensor, baseline: float) -> dict[str, float]:
    props = torch.bincount(gm.responsibilities(x).argmax(1), minlength=gm.num_components) / x.shape[0]
    return {
        "energy_distance_ratio": energy_distance(x, reference) / baseline,
        "max_weight_error": float((props.double() - gm.weights).abs().max()),
    }


def run_demo(out_dir: str | Path, cfg: DemoConfig | None = None, progress: bool = True) -> dict:
    """Train, sample and evaluate on :meth:`GaussianMixture.example_2d`; write ``metrics.json`` and ``samples.png``
    (the run folder is ``out_dir/run``; running again resumes it).

    Returns the metrics dictionary (also written to ``out_dir/metrics.json``).
    """
    cfg = cfg or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gm = GaussianMixture.example_2d()
    g = torch.Generator().manual_seed(cfg.seed + 1)
    reference = gm.sample(cfg.num_samples, g)
    baseline = sum(energy_distance(gm.sample(cfg.num_samples, g), reference) for _ in range(4)) / 4

    t0 = time.perf_counter()
    model, last = _train(cfg, out, progress)
    train_s = time.perf_counter() - t0
    sde = model.sde
    learned, exact = model.score, gm.score_fn(sde)

    metrics: dict = {"config": asdict(cfg), "train_seconds": train_s, "final_loss": last.get("train/loss"),
                     "true_vs_true_energy_distance": baseline, "samplers": {}}
    panels = [("data (true mixture)", reference)]
    x_test = gm.sample(cfg.num_likelihood, g)
    true_nll = float(-gm.log_prob(x_test).mean()) / gm.dim
    metrics["likelihood"] = {"true_nll_per_dim": true_nll}
    for name, score_fn in (("learned", learned), ("exact", exact)):
        for sampler, options in (("pc", {"predictor": "reverse_diffusion", "corrector": "langevin"}),
                                 ("ode", {"method": "dopri5"})):
            t0 = time.perf_counter()
            with torch.no_grad():
                x, info = sample(sde, score_fn, (cfg.num_samples, gm.dim), sampler,
                                 generator=torch.Generator().manual_seed(7),
                                 return_info=True, **options)
            entry = {"nfe": info.nfe, "seconds": time.perf_counter() - t0,
                     **_sample_metrics(x, gm, reference, baseline)}
            metrics["samplers"][f"{name}/{sampler}"] = entry
            if name == "learned":
                panels.append((f"learned score, {sampler} (NFE {info.nfe})", x))
        logp, info = log_likelihood(sde, score_fn, x_test.to(torch.float32), generator=torch.Generator().manual_seed(3),
                                    return_info=True)
        logp = logp.detach()
        metrics["likelihood"][f"{name}_nll_per_dim"] = float(-logp.mean()) / gm.dim
        metrics["likelihood"][f"{name}_nfe"] = info.nfe
    png = scatter_panels(panels, out / "samples.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    metrics["files"] = {"png": str(png), "metrics": str(out / "metrics.json")}
    return metrics


def format_summary(metrics: dict) -> str:
    """A short human-readable report of :func:`run_demo`'s metrics."""
    lines = [f"trained {metrics['config']['steps']} steps in {metrics['train_seconds']:.1f}s "
             f"(final DSM loss {metrics['final_loss']:.4f})",
             "sampler          NFE   energy-dist/baseline  max weight err   seconds"]
    for name, m in metrics["samplers"].items():
        lines.append(f"{name:<15} {m['nfe']:>5}   {m['energy_distance_ratio']:>19.2f}  "
                     f"{m['max_weight_error']:>14.3f}  {m['seconds']:>8.2f}")
    lk = metrics["likelihood"]
    lines.append(f"NLL [nats/dim]: true {lk['true_nll_per_dim']:.4f}, exact-score ODE {lk['exact_nll_per_dim']:.4f}, "
                 f"learned ODE {lk['learned_nll_per_dim']:.4f}")
    if "files" in metrics:
        lines.append(f"wrote {metrics['files']['png']} and {metrics['files']['metrics']}")
    return "\n".join(lines)


__all__ = ["DemoConfig", "format_summary", "run_demo"]
