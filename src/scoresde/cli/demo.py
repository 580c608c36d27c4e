"""The end-to-end demo: train a score model on a built-in 2-D Gaussian mixture and check it against the truth.

Data -> VP SDE perturbation -> MLP -> DSM loss; prior -> PC and ODE samplers -> samples -> distances to the
true law; and the probability-flow ODE likelihood against the exact log-density. The mixture has exact scores,
so every number is also reported for the exact score: the gap between the two is the learning error alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..likelihood import log_likelihood
from ..nets.toy import ToyMLP
from ..objectives import sde_loss
from ..sampling import sample
from ..sdes import VPSDE
from ..toy import GaussianMixture, energy_distance
from .plots import scatter_panels


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo` (all have working defaults for 2 CPU cores)."""

    steps: int = 5000
    batch_size: int = 512
    lr: float = 2e-3
    hidden: int = 128
    depth: int = 3
    ema_decay: float = 0.995
    num_samples: int = 2000
    pc_steps: int = 500
    num_likelihood: int = 500
    seed: int = 0


def _eps_score_fn(net: torch.nn.Module, sde: VPSDE) -> Callable[[Tensor, Tensor], Tensor]:
    """Noise-prediction parameterisation: ``score(x, t) = -net(x, 999 t) / sigma(t)`` (Ho et al. 2020; Song 2021)."""

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        return -net(x, 999 * t) / sde.sigma(t)[:, None]

    return score_fn


def _train(cfg: DemoConfig, gm: GaussianMixture, sde: VPSDE, progress: bool) -> tuple[ToyMLP, list[float]]:
    """Adam on the continuous DSM loss (eq. 7, ``reduce_mean``) with an EMA of the weights for evaluation."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = ToyMLP(dim=gm.dim, hidden=cfg.hidden, depth=cfg.depth)
    ema = ToyMLP(dim=gm.dim, hidden=cfg.hidden, depth=cfg.depth)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    score_fn = _eps_score_fn(net, sde)
    losses = []
    bar = tqdm(range(cfg.steps), desc="training", disable=not progress)
    for step in bar:
        batch = gm.sample(cfg.batch_size, g).to(torch.float32)
        loss = sde_loss(score_fn, sde, batch, reduce_mean=True, generator=g)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
                p_ema.lerp_(p, 1 - cfg.ema_decay)
        losses.append(loss.item())
        if step % 100 == 0:
            bar.set_postfix(loss=f"{sum(losses[-100:]) / len(losses[-100:]):.4f}")
    return ema.eval(), losses


def _sample_metrics(x: Tensor, gm: GaussianMixture, reference: Tensor, baseline: float) -> dict[str, float]:
    props = torch.bincount(gm.responsibilities(x).argmax(1), minlength=gm.num_components) / x.shape[0]
    return {
        "energy_distance_ratio": energy_distance(x, reference) / baseline,
        "max_weight_error": float((props.double() - gm.weights).abs().max()),
    }


def run_demo(out_dir: str | Path, cfg: DemoConfig | None = None, progress: bool = True) -> dict:
    """Train, sample and evaluate on :meth:`GaussianMixture.example_2d`; write ``metrics.json`` and ``samples.png``.

    Returns the metrics dictionary (also written to ``out_dir/metrics.json``).
    """
    cfg = cfg or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gm, sde = GaussianMixture.example_2d(), VPSDE(N=cfg.pc_steps)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    reference = gm.sample(cfg.num_samples, g)
    baseline = sum(energy_distance(gm.sample(cfg.num_samples, g), reference) for _ in range(4)) / 4

    t0 = time.perf_counter()
    net, losses = _train(cfg, gm, sde, progress)
    train_s = time.perf_counter() - t0
    learned = _eps_score_fn(net, sde)
    exact = gm.score_fn(sde)

    metrics: dict = {"config": asdict(cfg), "train_seconds": train_s, "final_loss": sum(losses[-200:]) / 200,
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
                x, info = sample(sde, score_fn, (cfg.num_samples, gm.dim), sampler, torch.Generator().manual_seed(7),
                                 return_info=True, **options)
            entry = {"nfe": info.nfe, "seconds": time.perf_counter() - t0,
                     **_sample_metrics(x, gm, reference, baseline)}
            metrics["samplers"][f"{name}/{sampler}"] = entry
            if name == "learned":
                panels.append((f"learned score, {sampler} (NFE {info.nfe})", x))
        logp, info = log_likelihood(sde, score_fn, x_test.to(torch.float32), generator=torch.Generator().manual_seed(3))
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
