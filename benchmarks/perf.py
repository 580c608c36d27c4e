"""Speed and memory of the Score SDE CIFAR-10 presets, one row per fast-path option (issue 16).

For ``ve/cifar10_ncsnpp_continuous`` (NCSN++) and ``vp/cifar10_ddpmpp_continuous`` (DDPM++), reduced (``--size
reduced``: nf=64, 2 residual blocks per resolution, 32x32, batch 8: the settings of the issue's comparison with the
original code) or at paper size (``--size paper``: nf=128, 4 blocks), it times

* ``forward``: one network call in eval mode under ``torch.no_grad()``;
* ``train step``: the preset's loss (continuous DSM, ``training.build.compute_loss``), backward, gradient clipping
  at ``optim.grad_clip`` (as the trainer), Adam (``build_optimizer``) and the EMA update, dropout on;
* ``per NFE``: the preset's PC sampler (reverse diffusion + Langevin) over ``--sample-steps`` steps, divided by the
  NFE it counted;

and reports medians over ``--rounds`` interleaved rounds (every option once per round, so that load changes on a
shared machine hit all options alike), images/s of the training step, and the peak memory of one training step:
the growth of the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) in a fresh subprocess on
CPU, ``torch.cuda.max_memory_allocated`` on CUDA. The load average (``os.getloadavg``) is printed with the table.

Options (``--options``, default all that apply to the device):

* ``baseline``      -- float32, contiguous, eager, multi-tensor Adam and EMA (this repository's defaults);
* ``loop_optim``    -- the pre-change per-parameter Adam (``foreach=False``) and EMA loop, for contrast;
* ``channels_last`` -- ``model.channels_last`` (the network's convolutions in NHWC order) and NHWC inputs;
* ``checkpointing`` -- ``model.checkpointing`` (activation checkpointing per U-Net block);
* ``compile``       -- ``torch.compile`` of the network (slow to start: the first call is excluded from the times);
* ``bf16``          -- bf16 autocast of the network (``ScoreModel(precision='bf16')``, training under autocast);
  refused in one line where the device has no native bf16 (``scoresde.models.score_model.autocast_dtype``).

Attention goes through ``scaled_dot_product_attention`` in every row (it is the implementation, not an option).

Examples::

    OMP_NUM_THREADS=1 python benchmarks/perf.py --rounds 3                       # reduced, every CPU option
    OMP_NUM_THREADS=1 python benchmarks/perf.py --size paper --rounds 2 --options baseline checkpointing
    python benchmarks/perf.py --device cuda --size paper --batch 128 --rounds 10
    OMP_NUM_THREADS=1 python benchmarks/perf.py --memory-256 --batch 2            # 256x256 NCSN++ peak memory
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from scoresde.cli.batch_size import peak_memory_growth
from scoresde.config import build_score_model, load_config
from scoresde.sampling import sample
from scoresde.training.build import build_optimizer, compute_loss
from scoresde.training.ema import EMA

PRESETS = {"ncsnpp": "ve/cifar10_ncsnpp_continuous", "ddpmpp": "vp/cifar10_ddpmpp_continuous"}
SIZES = {"reduced": ["model.nf=64", "model.num_res_blocks=2"], "paper": []}
OPTIONS = ("baseline", "loop_optim", "channels_last", "checkpointing", "compile", "bf16")
PRESET_256 = "ve/celebahq_256_ncsnpp_continuous"


class LoopEMA(EMA):
    """The pre-change EMA update (a Python loop of ``shadow -= (1 - d)(shadow - p)``), for the ``loop_optim`` row."""

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, p in module.named_parameters():
            if name in self.shadow:
                self.shadow[name].sub_((1.0 - d) * (self.shadow[name] - p.detach()))


class Setup:
    """One preset under one option: the model, its optimizer and EMA, inputs, and the three timed operations."""

    def __init__(self, preset: str, overrides: list[str], option: str, batch: int, device: torch.device,
                 sample_steps: int) -> None:
        runtime = {"checkpointing": ["model.checkpointing=true"], "channels_last": ["model.channels_last=true"]}
        self.cfg = load_config(preset, [*overrides, *runtime.get(option, [])])
        torch.manual_seed(0)
        self.model = build_score_model(self.cfg).to(device)
        self.device, self.option, self.sample_steps = device, option, sample_steps
        size, channels = self.cfg.data.image_size, self.cfg.data.num_channels
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(batch, channels, size, size, generator=g).to(device)  # data in [0, 1]
        self.t = torch.rand(batch, generator=g).to(device) * (1 - 1e-3) + 1e-3
        self.amp = None
        if option == "channels_last":  # (the network is NHWC through the config; NHWC inputs save the first copy)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        if option == "bf16":
            self.model = self.model.with_precision("bf16")
            self.model.net_output(self.x[:1], self.t[:1])  # refused here when the device has no native bf16
            self.amp = torch.bfloat16
        if option == "compile":
            self.model = self.model.with_net(torch.compile(self.model.net))
        params = list(self.model.net.parameters())
        if option == "loop_optim":
            o = self.cfg.optim
            self.optimizer = torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, 0.999), eps=o.eps, foreach=False)
            self.ema = LoopEMA(self.model.net, 0.9999)
        else:
            self.optimizer = build_optimizer(self.cfg, params)
            self.ema = EMA(self.model.net, 0.9999)

    @torch.no_grad()
    def forward(self) -> None:
        self.model.net.eval()
        self.model.net_output(self.x, self.t)

    def train_step(self) -> None:
        self.model.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            loss = compute_loss(self.cfg, self.model, self.x)
        loss.backward()
        if self.cfg.optim.grad_clip >= 0:  # as the trainer (and the original's optimization_manager) do
            torch.nn.utils.clip_grad_norm_(self.model.net.parameters(), max_norm=self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model.net)

    @torch.no_grad()
    def sample_per_nfe(self) -> float:
        """Seconds per network evaluation of the preset's sampler over ``sample_steps`` steps."""
        self.model.net.eval()
        name, options = self.cfg.sampling.sampler_call()
        options["steps"] = self.sample_steps
        start = time.perf_counter()
        _, info = sample(self.model, tuple(self.x.shape), name, generator=torch.Generator().manual_seed(1),
                         device=self.device, return_info=True, **options)
        _sync(self.device)
        return (time.perf_counter() - start) / info.nfe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def peak_train_memory(preset: str, overrides: list[str], option: str, batch: int, device: torch.device,
                      warmup: bool = True) -> int:
    """Peak memory of one training step (after one warm-up step unless ``warmup=False``) in bytes: CUDA max allocated
    growth, or on CPU the growth of the peak resident set over the resident set before the step (``VmHWM`` reset via
    ``clear_refs``). Without warm-up the step also allocates Adam's two moment buffers (2 x the parameters)."""
    setup = Setup(preset, overrides, option, batch, device, 1)
    if warmup:
        setup.train_step()
    return peak_memory_growth(setup.train_step, device)  # the probe of `--batch-size auto`


def _memory_in_subprocess(args: argparse.Namespace, preset: str, overrides: list[str], option: str,
                          warmup: bool = True) -> int | None:
    """:func:`peak_train_memory` in a fresh interpreter (so that earlier allocations do not hide the peak). glibc's
    malloc gets a fixed mmap threshold of 128 KiB, so that every tensor buffer is mapped on allocation and unmapped
    when freed: the resident set then follows the live tensors instead of the allocator's cache."""
    cmd = [sys.executable, __file__, "--_memory", preset, option, json.dumps(overrides), str(int(warmup)),
           "--batch", str(args.batch), "--device", args.device]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        print(f"  memory of {preset} {option} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return int(out.stdout.strip().splitlines()[-1])


def run_table(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    overrides = [*SIZES[args.size], f"training.batch_size={args.batch}"]
    setups: dict[tuple[str, str], Setup] = {}
    for model in args.models:
        for option in args.options:
            try:
                setups[model, option] = Setup(PRESETS[model], overrides, option, args.batch, device, args.sample_steps)
            except (ValueError, RuntimeError) as err:
                print(f"{model:7s} {option:14s} not run: {str(err).splitlines()[0]}")
    for s in setups.values():  # warm-up (and compilation) outside the timed rounds
        s.forward(), s.train_step()
    times: dict[tuple[str, str], dict[str, list[float]]] = {k: {"fwd": [], "train": [], "nfe": []} for k in setups}
    for r in range(args.rounds):
        for key, s in setups.items():
            times[key]["fwd"].append(_timed(s.forward, device))
            times[key]["train"].append(_timed(s.train_step, device))
            times[key]["nfe"].append(s.sample_per_nfe())
        print(f"round {r + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
    memory = {k: _memory_in_subprocess(args, PRESETS[k[0]], overrides, k[1]) for k in setups} if args.memory else {}
    load = os.getloadavg()
    print(f"\n{args.size} size, batch {args.batch}, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {args.rounds} interleaved rounds, medians; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| model | option | forward ms | train step ms | train images/s | per NFE ms | peak train memory MiB |")
    print("|---|---|---|---|---|---|---|")
    for (model, option), t in times.items():
        fwd, train, nfe = (statistics.median(t[k]) * 1e3 for k in ("fwd", "train", "nfe"))
        mem = memory.get((model, option))
        mem_text = "-" if mem is None else f"{mem / 2**20:.0f}"
        print(f"| {model} | {option} | {fwd:.0f} | {train:.0f} | {args.batch * 1e3 / train:.2f} | {nfe:.0f} | "
              f"{mem_text} |")


def run_memory_256(args: argparse.Namespace) -> None:
    """Peak memory of one 256x256 NCSN++ (CelebA-HQ preset) training step with and without checkpointing."""
    overrides = [f"training.batch_size={args.batch}"]
    print(f"{PRESET_256}, batch {args.batch}, {args.device}")
    for option in ("checkpointing", "baseline"):
        start = time.perf_counter()
        mem = _memory_in_subprocess(args, PRESET_256, overrides, option, warmup=False)
        text = "failed" if mem is None else f"{mem / 2**30:.2f} GiB"
        print(f"| {option} | {text} | {time.perf_counter() - start:.0f} s for one step (with Adam's state) |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="reduced")
    p.add_argument("--models", nargs="+", choices=sorted(PRESETS), default=sorted(PRESETS))
    p.add_argument("--options", nargs="+", choices=OPTIONS, default=None,
                   help="default: every option but compile on CPU (slow to start), all on CUDA")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sample-steps", type=int, default=2, help="PC steps per sampling measurement (>= 1)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses")
    p.add_argument("--memory-256", action="store_true", help=f"only the {PRESET_256} memory comparison")
    p.add_argument("--_memory", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch < 1 or args.rounds < 1 or args.sample_steps < 1:
        p.error(f"--batch, --rounds and --sample-steps must be >= 1, got {args.batch}, {args.rounds}, "
                f"{args.sample_steps}")
    if args._memory:
        preset, option, overrides, warmup = args._memory
        print(peak_train_memory(preset, json.loads(overrides), option, args.batch, torch.device(args.device),
                                warmup=warmup == "1"))
        return
    if args.memory_256:
        run_memory_256(args)
        return
    if args.options is None:
        args.options = [o for o in OPTIONS if args.device.startswith("cuda") or o != "compile"]
    run_table(args)


if __name__ == "__main__":
    main()
