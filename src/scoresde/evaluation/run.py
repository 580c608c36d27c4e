"""The evaluation protocol: per-sample-seeded generation in resumable sharded rounds, Inception features at
generation time, FID / IS / KID against hashed reference statistics, bits/dim on a data split, and a
``metrics.json`` that records everything needed to reproduce the numbers.

Besides the sample metrics: ``bpd`` (bits/dim through the probability-flow ODE; for a phase-space run the
entropy-corrected augmented bound, an upper bound on bits/dim, over ``bpd_probes`` momentum draws) and ``fpe`` (the
mean squared score Fokker–Planck residual per dimension on perturbed data of the bpd split,
:func:`scoresde.losses.fpe.fpe_residual`)."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checkpoint.atomic import atomic_write
from ..data import inverse_data_scaler, preprocess
from ..likelihood import data_nll
from ..losses.fpe import fpe_residual
from ..metrics import FeatureStats, frechet_distance, inception_score, kernel_inception_distance, load_reference_stats
from ..metrics.inception import load_inception
from ..numerics.seeding import sample_seed
from ..sampling import sample, sampler_options
from ..sdes.base import SDE, ScoreFn
from ..training.data import build_dataset
from ..training.distributed import DistEnv
from .rounds import check_protocol, gather_rounds, run_rounds
from .seeding import batch_coupled, per_sample_generators

#: the installed scoresde version, recorded in metrics.json (read from the distribution: no import of the top level)
CODE_VERSION = importlib.metadata.version("scoresde")

METRICS = ("fid", "is", "kid", "bpd", "fpe")
#: the metrics computed from generated samples (the others read data only: no sampler runs for them)
SAMPLE_METRICS = ("fid", "is", "kid")
FPE_DTYPES = ("float64", "float32")


def to_uint8(x: Tensor) -> Tensor:
    """Images in ``[0, 1]`` to uint8 as Score SDE's ``run_lib.evaluate``: ``clip(255 x, 0, 255)`` truncated."""
    return (x * 255.0).clamp(0, 255).to(torch.uint8)


def generate_images(sde: SDE, score_fn: ScoreFn, data_shape: tuple[int, ...], indices: range, *, seed: int,
                    sampler: str, options: dict[str, Any], batch_size: int, centered: bool,
                    device: torch.device | str = "cpu") -> tuple[Tensor, list[int]]:
    """uint8 samples ``indices`` (``(n, C, H, W)``), drawn in batches of ``batch_size`` with per-sample generators
    (:func:`~scoresde.evaluation.seeding.per_sample_generators`), and the NFE of each batch."""

    images, nfes = [], []
    for start in range(indices.start, indices.stop, batch_size):
        batch = range(start, min(start + batch_size, indices.stop))
        with per_sample_generators(seed, batch, device) as g:
            x, info = sample(sde, score_fn, (len(batch), *data_shape), sampler, generator=g, device=device,
                             return_info=True,
                             **options)
        images.append(to_uint8(inverse_data_scaler(x, centered)).cpu())
        nfes.append(info.nfe)
    return torch.cat(images), nfes


@dataclass
class EvalSettings:
    """What ``scoresde eval`` measures and how (the protocol's knobs; recorded in ``metrics.json``)."""

    metrics: tuple[str, ...] = ("fid", "is", "kid")
    num_samples: int = 50_000                # generated samples for FID/IS/KID
    batch_size: int = 500                    # samples per sampler call
    round_size: int = 5_000                  # samples per resumable round (one file)
    seed: int = 0                            # sample i is seeded from (seed, i)
    ref_stats: str | None = None             # .npz from `scoresde fid-stats` (FID, KID)
    inception_weights: str | None = None     # local torch-fidelity weights file; None: torch-fidelity fetches it
    is_splits: int = 10
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    bpd_split: str = "test"
    bpd_num: int | None = None               # examples of the split for bits/dim (None: all)
    bpd_batch_size: int = 100
    bpd_trace: str = "hutchinson-rademacher"
    bpd_probes: int = 1                      # Hutchinson probes; momentum draws of the phase-space bound
    fpe_num: int | None = None               # examples of the bpd split for fpe (None: bpd_num)
    fpe_times: int = 10                      # fpe time grid linspace(fpe_eps, T, fpe_times)
    fpe_eps: float | None = None             # first grid time; None: 1e-3, or 1e-2 for PSLD/CLD (finite-difference
                                             # error of the stiff phase-space kernel dominates below it)
    fpe_divergence: str = "hutchinson"       # unbiased two-probe-set estimate (see fpe_residual)
    fpe_probes: int = 1
    fpe_batch_size: int = 100
    fpe_dtype: str = "float64"               # the model is evaluated in this precision (finite differences in t)

    def validate(self) -> None:
        """Refuse unknown metrics and missing inputs before any work starts."""
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown or not self.metrics:
            raise ValueError(f"unknown metric(s) {unknown}; valid metrics are: {', '.join(METRICS)}")
        if {"fid", "kid"} & set(self.metrics) and self.ref_stats is None:
            raise ValueError("fid and kid need reference statistics: --ref-stats STATS.npz (see `scoresde fid-stats`)")
        if "kid" in self.metrics and self.num_samples < self.kid_subset_size:
            raise ValueError(f"kid needs --num-samples >= its subset size {self.kid_subset_size}")
        if "is" in self.metrics and self.num_samples < self.is_splits:
            raise ValueError(f"is needs at least {self.is_splits} samples (one per split)")
        if "fpe" in self.metrics:
            if self.fpe_dtype not in FPE_DTYPES:
                raise ValueError(f"unknown fpe_dtype {self.fpe_dtype!r}; valid values are: {', '.join(FPE_DTYPES)}")
            if not (isinstance(self.fpe_times, int) and self.fpe_times >= 1):
                raise ValueError(f"fpe_times must be a positive integer, got {self.fpe_times!r}")


def evaluate(model, cfg, *, step: int, ema: bool, out_dir: Path, settings: EvalSettings, env: DistEnv,
             sampler: str, options: dict[str, Any], checkpoint: str | None = None,
             progress: bool = False) -> dict[str, Any] | None:
    """Run the protocol for a loaded ``model`` (:class:`~scoresde.models.ScoreModel`) of run config ``cfg``.

    Writes ``out_dir/samples`` (rounds of uint8 images with their Inception features), ``out_dir/bpd`` (rounds of
    per-example bits/dim) and ``out_dir/metrics.json``; returns that record on rank 0 (``None`` elsewhere).
    """
    settings.validate()
    wanted = set(settings.metrics)
    images_needed = bool(wanted & set(SAMPLE_METRICS))
    toy = cfg.model.get("name") == "toy_mlp"
    if toy and images_needed:
        raise ValueError("fid, is and kid are image metrics; this run models 2-D points (use --metrics bpd)")
    reference = _load_reference(settings) if {"fid", "kid"} & wanted else None
    options = {k: v for k, v in {**sampler_options(sampler), **options}.items() if k != "progress"}
    if options.get("steps", 0) is None and options.get("times") is None:
        options["steps"] = model.sde.N  # record the step count the sampler runs (its default is the SDE's N)
    if options.get("eps", 0) is None:
        options["eps"] = model.sde.sampling_eps  # record the end time the sampler runs to (the SDE's by default)
    coupled = batch_coupled(sampler, options)
    record: dict[str, Any] = {
        "checkpoint": checkpoint, "checkpoint_step": step, "ema": ema, "code_version": CODE_VERSION,
        **({"sampler": sampler, "sampler_options": options, "eps": options.get("eps"),
            "denoise": options.get("denoise")} if images_needed else {}),  # bpd / fpe sample nothing
        "seed": settings.seed, "world_size": env.world_size, "settings": used_settings(settings), "metrics": {},
    }
    if images_needed:
        samples = _generate_and_extract(model, cfg, out_dir / "samples", settings, env, sampler, options, coupled,
                                        progress, record)
    if "bpd" in wanted:
        bpd = _bits_per_dim(model, cfg, out_dir / "bpd", settings, env, progress)
    if "fpe" in wanted and env.is_main:  # cheap next to the ODE: one process, no rounds
        fpe = _fpe_residual(model, cfg, settings, env)
    if not env.is_main:
        return None
    if images_needed:
        record.update(num_samples=settings.num_samples, batch_coupled=coupled,
                      nfe={"mean": float(np.mean(samples["nfe"])), "min": int(np.min(samples["nfe"])),
                           "max": int(np.max(samples["nfe"]))})
        record["metrics"].update(_image_metrics(samples, reference, settings, wanted))
        if reference is not None:
            record["reference_stats"] = {"path": settings.ref_stats, "sha256": reference[1], "num": reference[0].num,
                                         "meta": reference[0].meta}
    if "bpd" in wanted:
        record["metrics"]["bpd"] = bpd
    if "fpe" in wanted:
        record["metrics"]["fpe"] = fpe
    atomic_write(out_dir / "metrics.json", lambda tmp: tmp.write_text(json.dumps(record, indent=2, default=str)))
    return record


def used_settings(settings: EvalSettings) -> dict[str, Any]:
    """The fields of ``settings`` that its metrics read, for ``metrics.json``: a record of ``--metrics bpd`` has no
    ``num_samples`` or sampler settings (nothing is sampled), one of ``fid`` no bits/dim settings. ``bpd_split`` and
    ``bpd_num`` belong to ``fpe`` too (its data); ``metrics`` and ``seed`` always."""
    wanted = set(settings.metrics)
    groups = {"num_samples": SAMPLE_METRICS, "batch_size": SAMPLE_METRICS, "round_size": SAMPLE_METRICS,
              "inception_weights": SAMPLE_METRICS, "ref_stats": ("fid", "kid"), "is_splits": ("is",),
              "kid_subsets": ("kid",), "kid_subset_size": ("kid",), "bpd_split": ("bpd", "fpe"),
              "bpd_num": ("bpd", "fpe")}
    out = {}
    for key, value in asdict(settings).items():
        prefix = key.split("_", 1)[0]
        readers = groups.get(key, (prefix,) if prefix in ("bpd", "fpe") else METRICS)
        if wanted & set(readers):
            out[key] = value
    return out


def _load_reference(settings: EvalSettings):

    stats, digest = load_reference_stats(settings.ref_stats)
    if "kid" in settings.metrics and stats.features is None:
        raise ValueError(f"{settings.ref_stats} has no features for KID; recompute it with `scoresde fid-stats` "
                         "(without --no-features)")
    return stats, digest


def _generate_and_extract(model, cfg, directory: Path, settings: EvalSettings, env: DistEnv, sampler: str,
                          options: dict[str, Any], coupled: bool, progress: bool, record: dict[str, Any]):

    protocol = {key: record[key] for key in ("checkpoint_step", "ema", "code_version", "sampler", "seed")}
    protocol.update(sampler_options=options, round_size=settings.round_size,
                    inception_weights=settings.inception_weights, batch_size=settings.batch_size if coupled else None)
    check_protocol(directory, protocol, env)
    extractor = load_inception(settings.inception_weights, env.device)
    record["inception"] = {"weights": settings.inception_weights or "torch-fidelity download (2015-12-05)",
                           "pool": "2048", "logits": "logits_unbiased"}
    shape = (cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size)

    def compute(items: range) -> dict[str, np.ndarray]:
        images, nfes = generate_images(model.sde, model.score, shape, items, seed=settings.seed, sampler=sampler,
                                       options=options, batch_size=settings.batch_size, centered=cfg.data.centered,
                                       device=env.device)
        feats = extractor.extract(images.split(settings.batch_size))
        per_sample_nfe = np.repeat(nfes, [min(settings.batch_size, len(items) - i)
                                          for i in range(0, len(items), settings.batch_size)])
        return {"images": images.numpy(), "pool": feats.pool.numpy(), "logits": feats.logits.numpy(),
                "nfe": per_sample_nfe}

    run_rounds(directory, settings.num_samples, settings.round_size, env, compute, progress=progress,
               desc="sampling rounds")
    return gather_rounds(directory, settings.num_samples, settings.round_size) if env.is_main else None


def _image_metrics(samples, reference, settings: EvalSettings, wanted: set[str]) -> dict[str, Any]:

    out: dict[str, Any] = {}
    if "fid" in wanted:
        ref = reference[0]
        stats = FeatureStats.from_features(samples["pool"])
        out["fid"] = frechet_distance(stats.mu, stats.sigma, ref.mu, ref.sigma)
    if "is" in wanted:
        score = inception_score(samples["logits"], settings.is_splits)
        out["is"] = {"mean": score.mean, "std": score.std, "splits": settings.is_splits}
    if "kid" in wanted:
        kid = kernel_inception_distance(samples["pool"], reference[0].features, settings.kid_subsets,
                                        settings.kid_subset_size, generator=settings.seed)
        out["kid"] = {"mean": kid.mean, "std": kid.std, "subsets": settings.kid_subsets,
                      "subset_size": settings.kid_subset_size}
    return out


def _bits_per_dim(model, cfg, directory: Path, settings: EvalSettings, env: DistEnv, progress: bool):
    """Per-example bits/dim (nats/dim for 2-D points) of the split in rounds of one batch, with the likelihood's
    per-example seeding convention (:func:`scoresde.likelihood.data_nll` ``seed=, indices=``: example ``i`` draws
    from ``(seed, i)``), as ``scoresde likelihood`` does, so both give the same number on the same points.

    A phase-space run (``model.sde.has_auxiliary``) has no exact likelihood of the data: it gets the entropy-corrected
    augmented bound (Dockhorn et al. 2022, App. B.4) with ``bpd_probes`` momentum draws per example, as ``scoresde
    likelihood`` does; the record says ``"bound": true`` and ``n_momentum``."""

    phase_space = model.sde.has_auxiliary
    dataset = build_dataset(cfg.data, settings.bpd_split, cfg.seed)
    num = len(dataset) if settings.bpd_num is None else min(settings.bpd_num, len(dataset))
    protocol = {"split": settings.bpd_split, "batch_size": settings.bpd_batch_size, "seed": settings.seed,
                "trace": settings.bpd_trace, "probes": settings.bpd_probes, "code_version": CODE_VERSION,
                "seeding": "per-example (seed, index)"}
    if phase_space:
        protocol["augmented_bound"] = True
    check_protocol(directory, protocol, env)

    def compute(items: range) -> dict[str, np.ndarray]:
        batch = torch.stack([dataset[i][0] for i in items]).to(env.device)
        v, se = data_nll(model.sde, model.score, batch, centered=cfg.data.centered, trace=settings.bpd_trace,
                         n_probes=settings.bpd_probes, seed=settings.seed, indices=items)
        return {"value": v.detach().cpu().double().numpy(), "probe_stderr": se.detach().cpu().double().numpy()}

    run_rounds(directory, num, settings.bpd_batch_size, env, compute, progress=progress, desc="bits/dim rounds")
    if not env.is_main:
        return None
    res = gather_rounds(directory, num, settings.bpd_batch_size)
    v = res["value"]
    unit = "bits/dim" if dataset[0][0].dtype == torch.uint8 else "nats/dim"
    return {"value": float(v.mean()), "stderr": float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None,
            "unit": unit, "num": len(v), "split": settings.bpd_split,
            "mean_probe_stderr": _finite_mean(res["probe_stderr"]), "trace": settings.bpd_trace,
            "n_probes": settings.bpd_probes,
            **({"bound": True, "n_momentum": settings.bpd_probes,
                "estimator": "entropy-corrected augmented bound (upper bound on bits/dim; Dockhorn et al. 2022, "
                             "App. B.4)"} if phase_space else {"bound": False})}


def _fpe_residual(model, cfg, settings: EvalSettings, env: DistEnv) -> dict[str, Any]:
    """:func:`~scoresde.losses.fpe.fpe_residual` of the model on the first ``fpe_num`` (default ``bpd_num``)
    examples of the bpd split, in the model's data range (``k / 255``, centred when the run is; no
    dequantisation), with the model in ``fpe_dtype``. Draws come from one generator on the device seeded from
    ``(seed, 0)``, so the value does not depend on the batch size."""


    dataset = build_dataset(cfg.data, settings.bpd_split, cfg.seed)
    wanted = settings.fpe_num if settings.fpe_num is not None else settings.bpd_num
    num = len(dataset) if wanted is None else min(wanted, len(dataset))
    dtype = getattr(torch, settings.fpe_dtype)
    batch = torch.stack([dataset[i][0] for i in range(num)])
    x0 = preprocess(batch, centered=cfg.data.centered) if batch.dtype == torch.uint8 else batch
    fpe_model = copy.deepcopy(model).to(dtype=dtype).eval()
    g = torch.Generator(env.device).manual_seed(sample_seed(settings.seed, 0))
    res = fpe_residual(fpe_model, fpe_model.sde, x0.to(env.device, dtype), n_times=settings.fpe_times,
                       eps=fpe_first_time(settings.fpe_eps, fpe_model.sde), divergence=settings.fpe_divergence,
                       n_probes=settings.fpe_probes,
                       batch_size=settings.fpe_batch_size, generator=g)
    return {"value": res.mean, "stderr": res.stderr if math.isfinite(res.stderr) else None,
            "unit": "squared FPE residual per dim", "num": num, "split": settings.bpd_split,
            "times": res.times.tolist(), "per_time": res.per_time.tolist(),
            "per_time_stderr": [v if math.isfinite(v) else None for v in res.per_time_stderr.tolist()],
            "divergence": settings.fpe_divergence, "n_probes": settings.fpe_probes,
            "unbiased": settings.fpe_divergence == "hutchinson", "time_derivative": "finite_difference",
            "h_s": 1e-3, "h_d": 5e-4, "dtype": settings.fpe_dtype,
            "definition": "mean over data and times of ||d_t s - grad B||^2 / D (Lai et al. 2023, Prop. 3.1)"}


def fpe_first_time(eps: float | None, sde) -> float:
    """The first time of the fpe grid: ``eps`` if given, else ``1e-3`` (the samplers' end time) for scalar SDEs and
    ``1e-2`` for phase-space ones, whose finite-difference error at ``t = 1e-3`` is ~1e4 even for the exact score
    (see :func:`scoresde.losses.fpe.fpe_residual`)."""
    if eps is not None:
        return float(eps)
    return sde.fd_min_time


def _finite_mean(values: np.ndarray) -> float | None:
    """Mean of the finite entries (``None`` when there are none, e.g. probe stderrs of a single probe): strict JSON
    has no NaN."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None
