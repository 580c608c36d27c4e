"""Forward and forward+backward time (and peak memory) of the Score SDE CIFAR-10 networks.

Networks (hyper-parameters of the original configs, 32x32, batch 8 by default):

* ``ncsnpp``      -- ``configs/ve/cifar10_ncsnpp_continuous.py`` (NCSN++: Fourier embedding, FIR, residual
  input pyramid)
* ``ncsnpp_deep`` -- ``configs/ve/cifar10_ncsnpp_deep_continuous.py`` (the same, 8 blocks per resolution)
* ``ddpmpp``      -- ``configs/vp/cifar10_ddpmpp_continuous.py`` (DDPM++, positional embedding, no FIR)

"forward" is inference (``eval()``, ``torch.no_grad()``); "fwd+bwd" is a training step without the
optimizer (``train()``, dropout on, ``loss = out.square().mean()``, ``backward()``). Times are medians over
``--repeats`` iterations after ``--warmup`` iterations.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated()`` minus the memory held before the phase. On CPU,
each (network, phase) runs in a fresh subprocess and reports the growth of the peak resident set size
(``VmHWM``, reset after building the network) over the resident size before the first iteration; this
includes allocator caching and thread stacks, so read it as an estimate of the peak working set, not an
exact tensor count.

Variants: on CPU fp32 and fp32 + channels_last; on ``--device cuda`` fp32 eager, bf16 autocast, bf16
autocast + channels_last, and the last one under ``torch.compile`` when available (``--variants`` picks).

Examples::

    python benchmarks/nets.py --quick                 # smoke run: small widths, batch 2, 1 repeat
    python benchmarks/nets.py --repeats 3 --models ncsnpp ddpmpp
    python benchmarks/nets.py --device cuda --repeats 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from scoresde.nets.ncsnpp import NCSNpp

_COMMON = dict(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), dropout=0.1,
               resamp_with_conv=True, conditional=True, fir_kernel=(1, 3, 3, 1), skip_rescale=True,
               resblock_type="biggan", progressive="none", progressive_combine="sum", attention_type="ddpm",
               init_scale=0.0, fourier_scale=16, conv_size=3, nonlinearity="swish", normalization="GroupNorm",
               sigma_min=0.01, sigma_max=50, num_scales=1000)
CONFIGS = {
    "ncsnpp": (dict(_COMMON, name="ncsnpp", scale_by_sigma=True, fir=True, progressive_input="residual",
                    embedding_type="fourier"), dict(image_size=32, num_channels=3, centered=False)),
    "ncsnpp_deep": (dict(_COMMON, name="ncsnpp", scale_by_sigma=True, fir=True, progressive_input="residual",
                         embedding_type="fourier", num_res_blocks=8),
                    dict(image_size=32, num_channels=3, centered=False)),
    "ddpmpp": (dict(_COMMON, name="ncsnpp", scale_by_sigma=False, fir=False, progressive_input="none",
                    embedding_type="positional"), dict(image_size=32, num_channels=3, centered=True)),
}


def build(name: str, quick: bool) -> NCSNpp:
    model, data = CONFIGS[name]
    if quick:  # the same architectures, narrower and shallower
        model = dict(model, nf=32, num_res_blocks=model["num_res_blocks"] // 4)
    return NCSNpp.from_config(model, data)


def make_inputs(net: NCSNpp, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    if net.embedding_type == "fourier":
        labels = 0.01 * (50 / 0.01) ** torch.rand(batch, generator=g)  # σ(t) for t ~ U(0, 1)
    else:
        labels = 999 * torch.rand(batch, generator=g)
    return x.to(device), labels.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); harmless where unsupported."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def time_phase(net: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, phase: str, variant: str,
               warmup: int, repeats: int) -> tuple[float, float | None]:
    """Median milliseconds per iteration and peak memory (MiB, None if unknown) of one phase."""
    device = x.device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if "bf16" in variant
                else contextlib.nullcontext())
    if phase == "forward":
        net.eval()

        def step() -> None:
            with torch.no_grad(), autocast:
                net(x, labels)
    else:
        net.train()

        def step() -> None:
            with autocast:
                loss = net(x, labels).float().square().mean()
            loss.backward()
            net.zero_grad(set_to_none=True)

    if device.type == "cpu":
        # Peak RSS of this process from here on (the subprocess runs only this phase).
        _reset_peak_rss()
        base = _proc_kib("VmRSS")
    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        hwm = _proc_kib("VmHWM")
        peak = (hwm - base) / 1024 if hwm is not None and base is not None else None
    return statistics.median(times), peak


def run_case(name: str, phase: str, variant: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = build(name, args.quick).to(device)
    x, labels = make_inputs(net, args.batch, device)
    if "channels_last" in variant:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model: torch.nn.Module = torch.compile(net) if "compile" in variant else net
    ms, peak = time_phase(model, x, labels, phase, variant, args.warmup, args.repeats)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    return dict(model=name, phase=phase, variant=variant, ms=ms, peak_mib=peak, params_m=params)


def cpu_case_in_subprocess(name: str, phase: str, variant: str, args: argparse.Namespace) -> dict:
    """A fresh process per case, so that its peak resident set size belongs to that case alone."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, phase, variant,
           "--device", "cpu", "--batch", str(args.batch), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup)] + (["--quick"] if args.quick else [])
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


VARIANTS = ("fp32", "fp32+channels_last", "bf16", "bf16+channels_last", "bf16+channels_last+compile")


def variants_for(device: torch.device, requested: list[str] | None) -> list[str]:
    if requested:
        return requested
    if device.type != "cuda":
        return ["fp32", "fp32+channels_last"]
    variants = ["fp32", "bf16", "bf16+channels_last"]
    if hasattr(torch, "compile"):
        variants.append("bf16+channels_last+compile")
    return variants


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    device = args.device
    if device.startswith("cuda") and torch.cuda.is_available():
        device = f"{device} ({torch.cuda.get_device_name()})"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    mode = "QUICK (nf=32, 1/4 of the blocks) " if args.quick else ""
    print(f"\n{mode}batch {args.batch}, 32x32, {device}, torch {torch.__version__}, "
          f"median of {args.repeats} after {args.warmup} warm-up")
    mem = "peak CUDA alloc" if args.device.startswith("cuda") else "peak RSS growth"
    header = (f"{'model':<12} {'params':>7} {'variant':<27} {'forward ms':>11} {'fwd+bwd ms':>11} "
              f"{'fwd MiB':>8} {'f+b MiB':>8}  ({mem})")
    print(header)
    print("-" * len(header))
    table: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        table.setdefault((row["model"], row["variant"]), {})[row["phase"]] = row

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    for (model, variant), phases in table.items():
        fwd, bwd = phases.get("forward", {}), phases.get("fwd+bwd", {})
        params = (fwd or bwd)["params_m"]
        print(f"{model:<12} {params:>6.1f}M {variant:<27} {fmt(fwd.get('ms'), '11.1f')} "
              f"{fmt(bwd.get('ms'), '11.1f')} {fmt(fwd.get('peak_mib'), '8.0f')} "
              f"{fmt(bwd.get('peak_mib'), '8.0f')}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS),
                        default=["ncsnpp", "ncsnpp_deep", "ddpmpp"])
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda[:i]'")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations (median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--phases", nargs="+", choices=["forward", "fwd+bwd"],
                        default=["forward", "fwd+bwd"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS,
                        help="default: fp32 and fp32+channels_last on CPU; on CUDA also bf16 autocast and "
                             "torch.compile")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: nf=32, a quarter of the blocks, batch 2, 1 repeat")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "PHASE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(run_case(*args.child, args)))
        return
    if args.quick:
        args.batch, args.repeats, args.warmup = min(args.batch, 2), 1, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    rows = []
    for name in args.models:
        for variant in variants_for(device, args.variants):
            for phase in args.phases:
                if device.type == "cpu":
                    row = cpu_case_in_subprocess(name, phase, variant, args)
                else:
                    try:
                        row = run_case(name, phase, variant, args)
                    except Exception as err:  # e.g. torch.compile unavailable for this toolchain
                        print(f"{name} {phase} {variant}: failed ({type(err).__name__}: {err})",
                              file=sys.stderr)
                        continue
                rows.append(row)
                print(f"  done {name} {variant} {phase}: {row['ms']:.1f} ms", file=sys.stderr)
    print_table(rows, args)


if __name__ == "__main__":
    main()
