"""Cost of the sha256 checksums of scoresde checkpoints (issue 22 item 1): writing a training checkpoint, verifying
its files, and loading it, with and without recorded checksums.

Builds the network of ``--preset`` (default the Score SDE CIFAR-10 DDPM++ config), an Adam state after one step, and
writes a training checkpoint (online + EMA weights, optimizer, trainer state) to a temporary directory. Prints one
table row per operation: seconds (best of ``--repeats``), the bytes it reads or writes and MB/s. Files are in the
page cache after writing, so the reads measure hashing and parsing, not the disk.

    OMP_NUM_THREADS=1 python benchmarks/checkpoint_checksum.py [--preset vp/cifar10_ddpmpp] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from scoresde.checkpoint.native import file_sha256, load_checkpoint_directory, save_checkpoint, verify_files
from scoresde.config import build_network, resolve_config


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vp/cifar10_ddpmpp")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = resolve_config(args.preset)
    net = build_network(config)
    optimizer = torch.optim.Adam(net.parameters())
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "ckpt"

        def save() -> None:
            save_checkpoint(directory, net, config, step=1, ema=net, optimizer=optimizer,
                            trainer_state={"ema_num_updates": 1})

        t_save = _best(save, args.repeats)
        files = [p for p in directory.iterdir() if p.name != "checkpoint.json"]
        total = sum(p.stat().st_size for p in files)
        big = max(files, key=lambda p: p.stat().st_size)
        big_size = big.stat().st_size
        t_hash = _best(lambda: file_sha256(big), args.repeats)
        t_verify = _best(lambda: verify_files(directory), args.repeats)
        t_load = _best(lambda: load_checkpoint_directory(directory), args.repeats)
        meta = json.loads((directory / "checkpoint.json").read_text())
        del meta["sha256"]
        (directory / "checkpoint.json").write_text(json.dumps(meta))
        t_load_old = _best(lambda: load_checkpoint_directory(directory), args.repeats)
    mb = 1e6
    rows = [("save_checkpoint (writes + hashes every file)", t_save, total),
            (f"file_sha256 of {big.name}", t_hash, big_size),
            ("verify_files (every file)", t_verify, total),
            ("load_checkpoint_directory, checksums verified", t_load, total),
            ("load_checkpoint_directory, no checksums recorded", t_load_old, None)]
    print(f"preset {args.preset}: {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters, checkpoint "
          f"files {total / mb:.0f} MB, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print("| operation | seconds | MB | MB/s |\n|---|---|---|---|")
    for name, seconds, size in rows:
        rate = f"{size / mb / seconds:.0f}" if size else ""
        print(f"| {name} | {seconds:.3f} | {size / mb if size else 0:.0f} | {rate} |")


if __name__ == "__main__":
    main()
