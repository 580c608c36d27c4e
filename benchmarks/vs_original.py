"""Side by side with the original Score SDE PyTorch code: same config, same weights, same inputs (issue 16).

For ``configs/ve/cifar10_ncsnpp_continuous.py`` (NCSN++) and ``configs/vp/cifar10_ddpmpp_continuous.py`` (DDPM++)
of a ``yang-song/score_sde_pytorch`` checkout (``--original DIR``), reduced by default to the settings of the issue's
table (``--size reduced``: ``model.nf=64``, ``model.num_res_blocks=2``, 32x32, batch 8), this script

1. builds the original network (``models.utils.create_model``: ``DataParallel`` around the ``ncsnpp`` class, as its
   training does) and scoresde's network from the same config file (:func:`scoresde.config.load_config` parses it
   with :mod:`ast`), copies the original's weights into ours (:func:`~scoresde.checkpoint.state_dict.
   load_original_state_dict`), and checks that the two score functions agree on the same inputs (the maximum
   absolute difference relative to the largest output is printed; the run stops if it exceeds ``--tol``);
2. times, in ``--rounds`` interleaved rounds (original, then every scoresde option, each round), the median of

   * ``forward``: one network call in eval mode under ``torch.no_grad()``;
   * ``train step``: the original's ``losses.get_step_fn`` (continuous DSM loss, backward, ``optimization_manager``
     with warm-up and gradient clipping at ``optim.grad_clip``, Adam, EMA update), against scoresde's
     :class:`benchmarks.perf.Setup` step (the same operations, :func:`~scoresde.training.build.compute_loss`);
   * ``per NFE``: the config's PC sampler (VE: reverse diffusion + Langevin; VP: Euler-Maruyama, no corrector) over
     ``--sample-steps`` steps, divided by the number of network calls counted by a forward hook (the original's
     returned NFE counts a corrector that makes no call);

3. prints a Markdown table with speed-ups (original time / scoresde time).

The original's CUDA extensions (``op/upfirdn2d``, ``op/fused_act``) are compiled at import by
``torch.utils.cpp_extension.load``; this script replaces that loader by a no-op while importing them, so that the
original runs its own CPU fallbacks (``upfirdn2d_native``, the PyTorch leaky ReLU): exactly what it does on a CPU
once its extensions exist. ``ml_collections`` is not needed (the config is a plain attribute dict).

Example (one thread, as in the issue's table)::

    OMP_NUM_THREADS=1 python benchmarks/vs_original.py --original /path/to/score_sde_pytorch --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf import SIZES, Setup, _timed
from scoresde.checkpoint.state_dict import load_original_state_dict
from scoresde.config import apply_overrides
from scoresde.config.pyfile import parse_config_file

CONFIGS = {"ncsnpp": "configs/ve/cifar10_ncsnpp_continuous.py", "ddpmpp": "configs/vp/cifar10_ddpmpp_continuous.py"}
OURS = ("baseline", "channels_last", "loop_optim", "checkpointing")


class AttrDict(dict):
    """The original code reads its config as ``config.model.nf``; a dict with attribute access is enough."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    @classmethod
    def deep(cls, d: Any) -> Any:
        return cls({k: cls.deep(v) for k, v in d.items()}) if isinstance(d, dict) else d


@contextlib.contextmanager
def _no_extension_build() -> Iterator[None]:
    import torch.utils.cpp_extension as ext

    real = ext.load
    ext.load = lambda *args, **kwargs: None  # the original's CPU paths never touch the compiled module
    try:
        yield
    finally:
        ext.load = real


def import_original(root: Path) -> dict[str, ModuleType]:
    """The original's modules (``models.utils``, ``losses``, ``sampling``, ``sde_lib``, ``models.ema``)."""
    if not (root / "models" / "ncsnpp.py").is_file():
        raise SystemExit(f"--original {root}: not a score_sde_pytorch checkout (no models/ncsnpp.py)")
    sys.path.insert(0, str(root))
    with _no_extension_build():
        names = ["models.ncsnpp", "models.ddpm", "models.utils", "models.ema", "losses", "sampling", "sde_lib"]
        mods = {n: importlib.import_module(n) for n in names}
    return mods


def _count_calls(net: torch.nn.Module) -> list[int]:
    counter = [0]
    net.register_forward_pre_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


class Original:
    """The original code's network, training step and PC sampler for one config."""

    def __init__(self, mods: dict[str, ModuleType], config: AttrDict, x: torch.Tensor, t: torch.Tensor,
                 sample_steps: int) -> None:
        self.mods, self.config, self.x, self.t = mods, config, x, t
        mutils, losses, sde_lib = mods["models.utils"], mods["losses"], mods["sde_lib"]
        torch.manual_seed(0)
        self.model = mutils.create_model(config)
        self.calls = _count_calls(self.model.module)
        m = config.model
        if config.training.sde == "vesde":
            self.sde = sde_lib.VESDE(sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=m.num_scales)
            self.sample_sde = sde_lib.VESDE(sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=sample_steps)
        else:
            self.sde = sde_lib.VPSDE(beta_min=m.beta_min, beta_max=m.beta_max, N=m.num_scales)
            self.sample_sde = sde_lib.VPSDE(beta_min=m.beta_min, beta_max=m.beta_max, N=sample_steps)
        optimizer = losses.get_optimizer(config, self.model.parameters())
        ema = mods["models.ema"].ExponentialMovingAverage(self.model.parameters(), decay=m.ema_rate)
        self.state = {"optimizer": optimizer, "model": self.model, "ema": ema, "step": 0}
        tr = config.training
        self.step_fn = losses.get_step_fn(self.sde, train=True, optimize_fn=losses.optimization_manager(config),
                                          reduce_mean=tr.reduce_mean, continuous=tr.continuous,
                                          likelihood_weighting=tr.likelihood_weighting)
        self.sampler = mods["sampling"].get_sampling_fn(config, self.sample_sde, tuple(x.shape), lambda v: v,
                                                         eps=1e-3 if tr.sde == "vpsde" else 1e-5)

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        fn = self.mods["models.utils"].get_score_fn(self.sde, self.model, train=False, continuous=True)
        with torch.no_grad():
            return fn(x, t)

    @torch.no_grad()
    def forward(self) -> None:
        self.model.eval()
        labels = self.t * 999 if self.config.training.sde == "vpsde" else self.sde.marginal_prob(self.x, self.t)[1]
        self.model(self.x, labels)

    def train_step(self) -> None:
        self.step_fn(self.state, self.x)

    def sample_per_nfe(self) -> float:
        self.calls[0] = 0
        start = time.perf_counter()
        self.sampler(self.model)
        return (time.perf_counter() - start) / self.calls[0]


def _config(root: Path, model: str, size: str, batch: int) -> tuple[AttrDict, list[str]]:
    """The original's config as an attribute dict and the same changes as scoresde overrides."""
    overrides = [*SIZES[size], f"training.batch_size={batch}"]
    raw = apply_overrides(parse_config_file(root / CONFIGS[model]), overrides)
    raw["device"] = "cpu"
    return AttrDict.deep(raw), overrides


def run(args: argparse.Namespace) -> None:
    root = Path(args.original).resolve()
    mods = import_original(root)
    rows: list[tuple[str, str, dict[str, float]]] = []
    for model in args.models:
        config, overrides = _config(root, model, args.size, args.batch)
        ours = {o: Setup(str(root / CONFIGS[model]), overrides, o, args.batch, torch.device("cpu"), args.sample_steps)
                for o in args.options}
        base = ours[args.options[0]]
        x = base.x.contiguous() * 2 - 1 if config.data.centered else base.x.contiguous()
        orig = Original(mods, config, x, base.t, args.sample_steps)
        for setup in ours.values():
            load_original_state_dict(setup.model.net, orig.model.module.state_dict())
            setup.ema = type(setup.ema)(setup.model.net, setup.ema.decay)  # shadow = the loaded weights
            fmt = torch.channels_last if setup.option == "channels_last" else torch.contiguous_format
            setup.x = x.contiguous(memory_format=fmt)
        ref = orig.score(x, base.t)
        with torch.no_grad():
            base.model.net.eval()
            mine = base.model.score(x, base.t)
        err = float((mine - ref).abs().max() / ref.abs().max())
        print(f"{model}: score of scoresde vs original, max |diff| / max |score| = {err:.2e}", file=sys.stderr)
        if err > args.tol:
            raise SystemExit(f"{model}: outputs differ by {err:.2e} > --tol {args.tol}: not the same network")
        ops: dict[str, Callable[[], Any]] = {"original": orig}
        ops.update({f"scoresde {o}": s for o, s in ours.items()})
        for s in ops.values():  # warm-up
            s.forward(), s.train_step()
        times = {k: {"fwd": [], "train": [], "nfe": []} for k in ops}
        for r in range(args.rounds):
            for key, s in ops.items():
                times[key]["fwd"].append(_timed(s.forward, torch.device("cpu")))
                times[key]["train"].append(_timed(s.train_step, torch.device("cpu")))
                times[key]["nfe"].append(s.sample_per_nfe())
            print(f"{model}: round {r + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
        med = {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}
        rows += [(model, k, med[k]) for k in ops]
        rows.append((model, "", {"err": err}))
    _print(rows, args)


def _print(rows: list[tuple[str, str, dict[str, float]]], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"\n{args.size} size, batch {args.batch}, cpu, torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s), medians of {args.rounds} interleaved rounds, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}")
    print("| model | code | forward ms | speed-up | train step ms | speed-up | per NFE ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    orig: dict[str, float] = {}
    for model, code, t in rows:
        if not code:
            print(f"| {model} | max relative score difference {t['err']:.1e} | | | | | | |")
            continue
        if code == "original":
            orig = t
        cells = [f"{t[k] * 1e3:.0f} | {orig[k] / t[k]:.2f}x" for k in ("fwd", "train", "nfe")]
        print(f"| {model} | {code} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", required=True, help="a yang-song/score_sde_pytorch checkout")
    p.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=sorted(CONFIGS))
    p.add_argument("--options", nargs="+", choices=OURS, default=["baseline"],
                   help="scoresde rows (benchmarks/perf.py options); the first is checked against the original")
    p.add_argument("--size", choices=sorted(SIZES), default="reduced")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sample-steps", type=int, default=2, help="sampler steps per per-NFE measurement (>= 1)")
    p.add_argument("--tol", type=float, default=1e-5, help="largest allowed relative score difference")
    args = p.parse_args(argv)
    if args.batch < 1 or args.rounds < 1 or args.sample_steps < 1:
        p.error(f"--batch, --rounds and --sample-steps must be >= 1, got {args.batch}, {args.rounds}, "
                f"{args.sample_steps}")
    run(args)


if __name__ == "__main__":
    main()
