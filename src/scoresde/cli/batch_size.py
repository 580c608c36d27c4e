"""``--batch-size`` of ``sample`` and ``eval``: a positive integer or ``auto``, the largest sampling batch that fits in
a fraction of the free memory, measured with one probe call of the network (:func:`autotune_batch_size`)."""

from __future__ import annotations

import argparse
import gc

import torch


def batch_size_arg(value: str) -> int | str:
    """``--batch-size`` of ``sample`` / ``eval``: a positive integer, or ``auto`` (:func:`autotune_batch_size`)."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"--batch-size must be a positive integer or 'auto', got {value!r}")
    return number


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} missing from /proc/self/status")


def peak_memory_growth(fn, device: torch.device | str) -> int:
    """Bytes by which ``fn()`` raises the peak memory above the memory in use before it: ``max_memory_allocated``
    on CUDA; on CPU (Linux) the peak resident set ``VmHWM`` (reset through ``/proc/self/clear_refs``) minus the
    resident set before. The CPU figure is an estimate: memory that the allocator had cached is reused unseen."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    gc.collect()  # free earlier garbage now, not inside fn (the resident set would shrink under the measurement)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status_bytes("VmRSS")
    fn()
    return max(0, _status_bytes("VmHWM") - before)


def free_memory(device: torch.device | str) -> int:
    """Bytes free for new tensors: ``cuda.mem_get_info`` on CUDA, ``MemAvailable`` of ``/proc/meminfo`` on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable missing from /proc/meminfo")


def autotune_batch_size(model, shape_one: tuple[int, ...], device: torch.device | str, upper: int,
                        memory_fraction: float = 0.5, probe: int = 2, cond_fn=None) -> int:
    """The largest sampling batch (at most ``upper``) whose network call fits in ``memory_fraction`` of the free
    memory: one probe call of ``probe`` samples (``torch.no_grad``, ``t = 0.5``) measures the memory per sample
    (:func:`peak_memory_growth`), the batch is ``memory_fraction * free / per_sample``; on CUDA a call at that
    batch is tried and the batch halved on ``OutOfMemoryError``. Use ``--batch-size auto`` rather than a fixed size
    when the same command runs on machines of different memory; ``memory_fraction`` leaves room for the sampler's
    own state (a few tensors of the batch) and the CPU estimate's error. ``cond_fn(n)`` gives the conditioning
    keywords of a batch of ``n`` (e.g. class labels), or None."""
    if not 0 < memory_fraction <= 1 or probe < 1 or upper < 1:
        raise ValueError(f"need 0 < memory_fraction <= 1, probe >= 1 and upper >= 1; got {memory_fraction}, {probe}, "
                         f"{upper}")
    device = torch.device(device)

    @torch.no_grad()
    def call(n: int) -> None:
        x = torch.randn(n, *shape_one, device=device)
        model.score(x, torch.full((n,), 0.5, device=device), **(cond_fn(n) if cond_fn else {}))

    call(1)  # warm-up: lazy initialisation is not per-sample memory
    per_sample = max(peak_memory_growth(lambda: call(probe), device) / probe, 1.0)
    batch = max(1, min(upper, int(memory_fraction * free_memory(device) / per_sample)))
    while device.type == "cuda" and batch > 1:
        try:
            call(batch)
            break
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            batch //= 2
    return batch
