"""The sub-commands of ``scoresde``: each a small function of its parsed arguments that returns an exit code."""

from __future__ import annotations

import argparse
import gc
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..config import Config, apply_overrides, config_from_dict, load_config


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


def _saved_config(workdir: Path) -> Config:
    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{workdir} is not a scoresde run folder (no config.json); train or import first")
    return config_from_dict(json.loads(path.read_text()))


def _checkpoint_path(workdir: Path, step: int | None) -> Path:
    from ..checkpoint.run import list_checkpoints

    found = list_checkpoints(workdir)
    if not found:
        raise FileNotFoundError(f"no checkpoints in {workdir / 'checkpoints'}")
    if step is None:
        return found[0][2]
    for s, kind, path in found:
        if s == step and kind == "checkpoint":
            return path
    steps = sorted({s for s, _, _ in found})
    raise FileNotFoundError(f"no checkpoint of step {step} in {workdir}; available steps: {steps}")


def cmd_train(args: argparse.Namespace) -> int:
    """``scoresde train``: validate everything, then train (resuming from the workdir's newest checkpoint)."""
    from ..training import Trainer

    workdir = Path(args.workdir)
    if args.config is None:
        cfg = _saved_config(workdir)
        if args.set:
            cfg = config_from_dict(apply_overrides(cfg.to_dict(), args.set))
    else:
        cfg = load_config(args.config, args.set)
    trainer = Trainer(cfg, workdir, device=args.device, progress=not args.quiet)  # validates data and model first
    resumed = trainer.resume()
    loaded = trainer.init_from(args.init_from) if args.init_from and not resumed else None
    if trainer.env.is_main:
        if loaded:
            print(f"initialised from {loaded}")
        elif args.init_from:
            print(f"--init-from {args.init_from} ignored: {workdir} has checkpoints, resuming the fine-tuning run")
        print(f"{'resuming' if resumed else 'starting'} at step {trainer.step} of {cfg.training.n_iters} in {workdir}")
    last = trainer.train(max_steps=args.max_steps)
    if trainer.env.is_main:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
        print(f"stopped at step {trainer.step}: {summary}; checkpoints in {workdir / 'checkpoints'}")
    return 0


def with_precision(model, precision: str, device: str):
    """``model`` computing its network in ``precision`` (``ScoreModel.with_precision``); checked on ``device`` now, so
    that an unsupported choice is one error before any sampling. ``ValueError`` for a model without the option."""
    if precision == "fp32":
        return model
    if not hasattr(model, "with_precision"):
        raise ValueError(f"--precision {precision}: {type(model).__name__} models have no precision option (only "
                         "ScoreModel); use --precision fp32")
    from ..models.score_model import autocast_dtype

    autocast_dtype(precision, torch.device(device))  # refuses bf16/fp16 where the device lacks them
    return model.with_precision(precision)


def _load_model(workdir: Path, step: int | None, use_ema: bool, device: str):
    from ..checkpoint import load_checkpoint

    path = _checkpoint_path(workdir, step)
    model = load_checkpoint(path, use_ema=use_ema, map_location=device)
    return model, model.step, path


def _instead(key: str, value: str, command: str) -> str:
    """What to use instead of ``--set key=value``, which ``command`` cannot apply (it samples a trained model)."""
    section, _, name = key.partition(".")
    if key == "model.num_scales":
        return f"for the number of sampling steps use --steps {value}"
    if key == "seed":
        return f"for the seed of the samples use --seed {value}"
    if key == "training.sde":
        return "to sample another SDE, train or import a run with it"
    if section == "eval" and command == "eval":
        option = {"batch_size": "--batch-size", "num_samples": "--num-samples", "bpd_dataset": "--bpd-split",
                  "begin_ckpt": "--step", "end_ckpt": "--step"}.get(name, "--metrics")
        return f"for the eval settings use {option}"
    if section in ("model", "training", "optim", "data"):
        return "to change them, train or import another run"
    return "e.g. --set sampling.corrector=none"


def _sampling_overrides(overrides: list[str], command: str) -> list[str]:
    """The ``--set`` items of ``sample``/``eval``, which must all be ``sampling.*``: the model, its SDE and data
    come from the checkpoint, so anything else would be silently ignored. Refuse it, saying what to use instead."""
    for item in overrides:
        key, _, value = item.partition("=")
        if not key.strip().startswith("sampling."):
            raise ValueError(f"--set {item}: `scoresde {command}` takes sampling.* overrides only (the model, its "
                             f"SDE and data are the checkpoint's); {_instead(key.strip(), value, command)}")
    return list(overrides)


def resolve_sampler(cfg: Config, args: argparse.Namespace, command: str) -> tuple[Config, str, dict]:
    """``(config, sampler name, options)`` of ``sample``/``eval``: the run's ``sampling`` section with ``--set
    sampling.*`` and ``--sampler`` applied, and ``--steps`` for a fixed-step sampler."""
    from ..sampling import SAMPLERS

    sets = _sampling_overrides(args.set, command) + ([f"sampling.method={args.sampler}"] if args.sampler else [])
    if sets:
        cfg = config_from_dict(apply_overrides(cfg.to_dict(), sets))
    name, options = cfg.sampling.sampler_call()
    if args.steps is not None:
        if not SAMPLERS[name].fixed_steps:
            fixed = [n for n, spec in SAMPLERS.items() if spec.fixed_steps]
            raise ValueError(f"--steps needs a fixed-step sampler ({', '.join(fixed)}); {name} has no fixed number "
                             f"of steps (its options: {', '.join(SAMPLERS[name].options())})")
        options["steps"] = args.steps
    return cfg, name, options


def cmd_sample(args: argparse.Namespace) -> int:
    """``scoresde sample``: draw ``--num`` samples from a checkpoint and save them as PNG and/or NPZ."""
    from ..sampling import SAMPLERS, sample
    from ..training.trainer import save_samples_png

    workdir = Path(args.workdir)
    cfg, name, options = resolve_sampler(_saved_config(workdir), args, "sample")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, step, path = _load_model(workdir, args.checkpoint, not args.no_ema, device)
    model = with_precision(model, args.precision, device)
    toy = cfg.model["name"] == "toy_mlp"
    shape_one = (2,) if toy else (cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size)
    bar = {"progress": not args.quiet} if "progress" in SAMPLERS[name].options() else {}
    from .controllable_commands import conditioned_model  # --class / --guidance (controllable generation)

    model, labels = conditioned_model(args, model, args.num, device, None if toy else shape_one)
    if args.batch_size == "auto":  # the samples depend on the batch size (one generator per batch)
        cond_fn = None if labels is None else (lambda n: {"class_labels": labels[:1].repeat(n).to(device)})
        args.batch_size = autotune_batch_size(model, shape_one, device, args.num, cond_fn=cond_fn)
        if not args.quiet:
            print(f"--batch-size auto: {args.batch_size}")
    chunks, nfe = [], 0
    for start in range(0, args.num, args.batch_size):
        n = min(args.batch_size, args.num - start)
        cond = None if labels is None else {"class_labels": labels[start:start + n].to(device)}
        g = torch.Generator(device).manual_seed(args.seed * 1_000_003 + start)
        x, info = sample(model, (n, *shape_one), name, generator=g, cond=cond, device=device, return_info=True,
                         **bar, **options)
        chunks.append(x.cpu())
        nfe = info.nfe
    x = torch.cat(chunks)
    if not toy:
        from ..data import inverse_data_scaler

        x = inverse_data_scaler(x, cfg.data.centered).clamp(0, 1)
    out = Path(args.out) if args.out else workdir / "samples" / f"sample_step_{step}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        arr = x.numpy() if toy else (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.savez(out, samples=arr, step=step, sampler=name, nfe=nfe, options=json.dumps(options),
                 **({} if labels is None else {"labels": labels.numpy()}))
    elif out.suffix == ".png":
        save_samples_png(x, out)
    else:
        raise ValueError(f"--out must end in .png or .npz, got {out.name!r}")
    print(f"wrote {args.num} samples of {path} (step {step}, sampler {name}, NFE {nfe} per batch) to {out}")
    return 0


def cmd_likelihood(args: argparse.Namespace) -> int:
    """``scoresde likelihood``: bits/dim (images) or nats/dim (2-D toys) of a data split under a checkpoint; for
    phase-space runs the entropy-corrected augmented bound (``--n-probes`` momentum draws per example)."""
    from ..likelihood import data_nll
    from ..training.data import build_dataset

    workdir = Path(args.workdir)
    cfg = _saved_config(workdir)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, step, path = _load_model(workdir, args.checkpoint, not args.no_ema, device)
    dataset = build_dataset(cfg.data, args.split, cfg.seed)
    num = min(args.num, len(dataset))
    values, errors = [], []
    for start in range(0, num, args.batch_size):
        items = range(start, min(num, start + args.batch_size))
        batch = torch.stack([dataset[i][0] for i in items])
        # example i draws from (seed, i), as eval --metrics bpd; phase space: the bound over momentum draws
        v, se = data_nll(model.sde, model.score, batch.to(device), centered=cfg.data.centered, trace=args.trace,
                         n_probes=args.n_probes, seed=args.seed, indices=items)
        values.append(v.detach().cpu())
        errors.append(se.detach().cpu())
    v, se = torch.cat(values), torch.cat(errors)
    unit = "bits/dim" if dataset[0][0].dtype == torch.uint8 else "nats/dim"
    result = {"value": float(v.mean()), "unit": unit, "stderr_over_examples": float(v.std() / math.sqrt(len(v))),
              "mean_probe_stderr": float(se.nanmean()) if len(se) else float("nan"), "num": len(v),
              "split": args.split, "checkpoint": str(path), "step": step, "ema": not args.no_ema,
              "trace": args.trace, "n_probes": args.n_probes}
    out = workdir / "eval" / f"likelihood_{args.split}_step_{step}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{result['value']:.4f} {unit} ± {result['stderr_over_examples']:.4f} on {len(v)} {args.split} examples "
          f"(step {step}); wrote {out}")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    """``scoresde configs``: list preset names (optionally those containing ``--filter``)."""
    from ..config import list_presets

    names = [n for n in list_presets() if args.filter is None or args.filter in n]
    print("\n".join(names))
    return 0


IMPORT_FORMATS = ("auto", "score-sde", "psld")


def _read_import_state(path: Path, fmt: str, sections: dict):
    """``(format, TrainingState)`` of a checkpoint to import: a Score SDE ``.pth`` or a PSLD Lightning ``.ckpt``
    (``fmt='auto'``: a file with a Lightning ``state_dict`` is PSLD's, anything else Score SDE's)."""
    from ..checkpoint.native import read_original_training_state
    from ..checkpoint.psld import (
        is_lightning_checkpoint,
        load_weights_only,
        read_psld_checkpoint,
        read_psld_training_state,
    )

    if fmt not in IMPORT_FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; valid values are: {', '.join(IMPORT_FORMATS)}")
    if fmt == "auto":
        ckpt = load_weights_only(path)  # Score SDE files are read again by their reader
        if is_lightning_checkpoint(ckpt):
            return "psld", read_psld_training_state(ckpt, sections)
        del ckpt
        fmt = "score-sde"
    if fmt == "psld":
        return fmt, read_psld_training_state(read_psld_checkpoint(path), sections)
    return fmt, read_original_training_state(path, sections)


def cmd_import(args: argparse.Namespace) -> int:
    """``scoresde import``: an original Score SDE checkpoint or a PSLD (Lightning) checkpoint becomes a run folder
    (sample, evaluate, fine-tune)."""
    from ..checkpoint.run import save_training_checkpoint
    from ..config import build_network, resolve_config
    from ..training.build import build_optimizer
    from ..training.trainer import prepare_workdir

    workdir = Path(args.workdir)
    if (workdir / "config.json").exists():
        raise ValueError(f"{workdir} already holds a run; import into a new --workdir")
    cfg = config_from_dict(apply_overrides(resolve_config(args.config), args.set))
    sections = cfg.to_dict()
    fmt, state = _read_import_state(Path(args.checkpoint), getattr(args, "format", "auto"), sections)
    if state.ema_state is None:
        raise ValueError(f"{args.checkpoint} has no EMA weights")
    net = build_network(sections)
    net.load_state_dict(state.model_state)
    optimizer = build_optimizer(cfg, net.parameters())
    if state.optimizer_state is not None and state.optimizer_state.get("state"):
        optimizer.load_state_dict(state.optimizer_state)
    prepare_workdir(workdir, cfg)
    trainer_state = {"ema_num_updates": int(state.trainer_state["ema_num_updates"]),
                     "ema_decay": float(cfg.model.get("ema_rate", 0.999)),
                     "scaler": {}, "skipped_steps": 0, "world_size": 1}
    path = save_training_checkpoint(workdir, state.step, kind="checkpoint", net=net, ema_state=state.ema_state,
                                    optimizer=optimizer, config=sections, trainer_state=trainer_state)
    print(f"imported {args.checkpoint} ({fmt} checkpoint, step {state.step}) as {path}")
    return 0
