"""Training noise-conditional classifiers ``p_t(y | x_t)`` for classifier guidance (Song et al. 2021, §5 and App.
I.4; Dhariwal & Nichol 2021, §4): cross-entropy on labelled data perturbed by the SDE's marginal at ``t ~ U(eps, T)``.

* :func:`noisy_state` draws ``x_t ~ p_t(. | x_0)`` through the SDE's hooks (``initial_state``, ``marginal_prob``,
  ``apply_std``), so on PSLD/CLD the classifier sees the whole state ``z_t = [x_t, m_t]`` with the initial momentum
  marginalised, exactly the variable whose law ``p_t`` the sampler follows.
* :func:`classifier_loss` is the objective, :class:`ClassifierTrainer` a small single-process loop (Adam with linear
  warm-up and gradient clipping, optional EMA, every random draw of step ``s`` from generators seeded by ``(seed,
  s)``, so a resumed run continues exactly), :func:`accuracy_by_time` the held-out accuracy per bin of ``t``.
* Checkpoints are scoresde checkpoint directories (:func:`scoresde.checkpoint.save_checkpoint`: atomic,
  safetensors weights, step-checked) whose config holds the SDE's config and the classifier's
  (:class:`ClassifierConfig`); :func:`load_classifier` rebuilds a :class:`~scoresde.models.ClassifierModel` from them,
  reading weights only.
* :func:`train_classifier` is ``scoresde train-classifier``: a run config (preset, ``.json``, original ``.py``) gives
  the data and the SDE, ``--set classifier.KEY=VALUE`` the classifier's options.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..checkpoint.native import load_training_state, save_checkpoint
from ..config import Config, ConfigError, build_sde, load_config
from ..config.factory import SDE_TABLE
from ..data import preprocess
from ..losses.dsm import check_reduction
from ..models.classifier import ClassifierModel
from ..nets.classifier import MLPClassifier, NCSNppClassifier
from ..numerics.times import check_eps, check_times, draw_times
from ..sdes.base import SDE, randn_like, same_sde
from ..sdes.scalar import ScalarSDE
from .data import build_dataset, global_batch_indices
from .ema import EMA
from .trainer import step_seed

__all__ = ["CLASSIFIER_KIND", "NETWORKS", "ClassifierConfig", "ClassifierTrainer", "accuracy_by_time",
           "apply_classifier_overrides", "build_classifier", "classifier_loss", "format_accuracy_table",
           "labelled_tensors", "load_classifier", "noisy_state", "perturbation_draws", "save_classifier",
           "sde_config", "train_classifier"]

#: ``kind`` of a classifier checkpoint's config (what :func:`load_classifier` checks)
CLASSIFIER_KIND = "noise-conditional-classifier"
#: ``classifier.network`` values: the NCSN++ encoder for images, the MLP for points
NETWORKS = ("ncsnpp", "mlp")
_CHECKPOINT, _SETTINGS, _ACCURACY, _METRICS = ("checkpoint", "classifier.json", "accuracy_by_time.json",
                                               "metrics.jsonl")


@dataclass
class ClassifierConfig:
    """The ``classifier`` options of ``scoresde train-classifier`` (``--set classifier.KEY=VALUE``).

    ``None`` defaults are derived from the data and the SDE, as documented per field.
    """

    network: str | None = None              # 'ncsnpp' (images) | 'mlp' (points); None: by the data's shape
    num_classes: int | None = None          # None: 1 + the largest training label
    nf: int = 32                            # NCSN++ encoder: base channels
    ch_mult: tuple[int, ...] = (1, 2, 2)    #   channel multiplier per resolution
    num_res_blocks: int = 1                 #   residual blocks per resolution
    attn_resolutions: tuple[int, ...] = ()  #   resolutions with self-attention
    dropout: float = 0.0                    #   dropout in the residual blocks
    resblock_type: str = "biggan"           #   'biggan' | 'ddpm'
    embedding_type: str | None = None       #   None: 'positional' for 999t labels (VP/sub-VP), else 'fourier'
    fir: bool = False                       #   FIR downsampling
    hidden: int = 128                       # MLP: width
    depth: int = 3                          #   residual layers
    time_embed_dim: int = 32                #   sinusoidal features
    max_period: float | None = None         #   None: 1e-3 for raw-t labels (PSLD/CLD), else 1e4
    steps: int = 2000                       # optimizer steps
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 100                       # steps of linear learning-rate warm-up; 0 disables it
    grad_clip: float = 1.0                  # max global gradient norm; negative disables clipping
    weight_decay: float = 0.0
    ema_rate: float = 0.999                 # EMA decay of the weights (Score SDE's rule); 0 disables the EMA
    eps: float = 1e-5                       # smallest training time: t ~ U(eps, T)
    seed: int = 0
    log_freq: int = 100                     # steps between logged losses
    checkpoint_freq: int = 500              # steps between checkpoints (and at the end)
    eval_bins: int = 10                     # bins of t in the accuracy table
    eval_num: int | None = None             # held-out examples for the table; None: the whole split
    eval_split: str = "test"
    eval_batch_size: int = 500

    def validate(self) -> ClassifierConfig:
        """Check the values the types alone do not; return ``self``."""
        if self.network is not None and self.network not in NETWORKS:
            raise ConfigError(f"classifier.network = {self.network!r} is not allowed; valid values: "
                              f"{', '.join(NETWORKS)} (or null: by the data's shape)")
        for name in ("nf", "num_res_blocks", "hidden", "depth", "time_embed_dim", "steps", "batch_size", "log_freq",
                     "checkpoint_freq", "eval_bins", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"classifier.{name} must be a positive integer, got {getattr(self, name)}")
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"classifier.num_classes must be >= 2 or null, got {self.num_classes}")
        if self.eval_num is not None and self.eval_num < 1:
            raise ConfigError(f"classifier.eval_num must be positive or null, got {self.eval_num}")
        if not self.lr > 0 or self.warmup < 0 or not 0 <= self.ema_rate < 1 or not 0 < self.eps < 1:
            raise ConfigError(f"classifier.lr ({self.lr}) must be > 0, warmup ({self.warmup}) >= 0, ema_rate "
                              f"({self.ema_rate}) in [0, 1) and eps ({self.eps}) in (0, 1)")
        if self.eval_split not in ("train", "test"):
            raise ConfigError(f"classifier.eval_split = {self.eval_split!r}; valid values: train, test")
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ClassifierConfig:
        """A validated config from plain values (JSON types; lists become tuples); unknown keys are an error."""
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(values) - set(hints))
        if unknown:
            raise ConfigError(f"unknown classifier config keys {unknown}; valid keys: {', '.join(hints)}")
        return cls(**{k: _coerce(f"classifier.{k}", v, hints[k]) for k, v in values.items()}).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _coerce(path: str, value: Any, hint: Any) -> Any:
    """``value`` as the field type ``hint`` (``X | None``, ``int``, ``float``, ``bool``, ``str``, ``tuple[int, ...]``)
    or a :class:`ConfigError` naming the key."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple and isinstance(value, (list, tuple)):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
    elif hint is bool and isinstance(value, bool):
        return value
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{path} must be of type {getattr(hint, '__name__', hint)}, got {value!r}")


def apply_classifier_overrides(cfg: ClassifierConfig, overrides: Sequence[str]) -> ClassifierConfig:
    """``cfg`` with ``classifier.KEY=VALUE`` overrides applied (values are JSON, or text for strings;
    ``none``/``null`` is ``None``)."""
    values = cfg.to_dict()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.startswith("classifier."):
            raise ConfigError(f"override {item!r} must look like classifier.KEY=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if isinstance(value, str) and value.lower() in ("none", "null"):
            value = None
        values[key.removeprefix("classifier.")] = value
    return ClassifierConfig.from_dict(values)


# ---- the objective -----------------------------------------------------------------------------------------


def noisy_state(sde: SDE, x: Tensor, t: Tensor, *, momentum: Tensor | None = None, noise: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """A draw of ``z_t ~ p_t(. | x_0 = x)``: the initial state ``z_0 = sde.initial_state(x, momentum)`` (``x`` itself
    for scalar SDEs; ``[x, 0]`` with the momentum in the HSM kernel, or ``[x, m_0]`` with ``m_0 ~ N(0, Sigma_0)``, for
    PSLD/CLD: both give the law of ``z_t`` given ``x_0`` with ``m_0`` marginalised), then ``z_t = mean_t(z_0) + L_t
    noise`` (``sde.marginal_prob``, ``sde.apply_std``; Song et al. 2021, eq. 29; Dockhorn et al. 2022, §3.2).

    The draws come from ``generator`` in the losses' order (the DSM momentum, then ``noise``) unless passed.
    """
    z0 = sde.initial_state(x, momentum, generator)
    if noise is None:
        noise = randn_like(z0, generator)
    elif noise.shape != z0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, the state z_0 of the batch has {tuple(z0.shape)}")
    mean, std = sde.marginal_prob(z0, t)
    return mean + sde.apply_std(std, noise)


def perturbation_draws(sde: SDE, shape: Sequence[int], t_range: tuple[float, float],
                       generator: torch.Generator | None = None) -> dict[str, Tensor | None]:
    """The random inputs of one perturbation of a data batch of shape ``shape``, drawn on the CPU (the same numbers
    on every device) in the order of the score losses: ``t ~ U(lo, hi)`` ``(B,)``, the DSM-mode initial momentum
    (``None`` unless ``sde.random_initial_state``), and the noise of the state. ``t_range = (eps, T)`` is the
    training draw (:func:`scoresde.numerics.times.draw_times`'s ``rand * (T - eps) + eps``)."""
    shape = tuple(int(s) for s in shape)
    lo, hi = t_range
    t = torch.rand(shape[0], generator=generator) * (hi - lo) + lo
    momentum = sde.initial_state(torch.zeros(shape), generator=generator)[:, shape[1]:] \
        if sde.random_initial_state else None
    return {"t": t, "momentum": momentum, "noise": torch.randn(sde.state_shape(shape), generator=generator)}


def classifier_loss(classifier: ClassifierModel, x: Tensor, y: Tensor, *, t: Tensor | None = None,
                    momentum: Tensor | None = None, noise: Tensor | None = None, eps: float = 1e-5,
                    generator: torch.Generator | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy ``-log p_t(y | x_t)`` of a noise-conditional classifier at ``t ~ U(eps, T)``, ``x_t`` drawn by
    :func:`noisy_state` from clean data ``x``: the training objective of the time-dependent classifiers of Song et al.
    2021 (App. I.4) and Dhariwal & Nichol 2021 (§4). Minimised over the classifier, it is minimised by the exact
    noisy posterior ``p_t(y | x_t)``.

    Args:
        classifier: the :class:`~scoresde.models.ClassifierModel` (its SDE perturbs the data).
        x: clean data ``(B, C, ...)`` (the data, not the state, for phase-space SDEs).
        y: integer class labels ``(B,)`` in ``[0, num_classes)``.
        t, momentum, noise: draws to replay (``t`` ``(B,)``; the DSM momentum; ``noise`` of the state's shape), else
            drawn from ``generator`` in that order.
        eps: smallest training time (the default is the score losses').
        generator: random generator of the draws (torch's global stream when ``None``).
        reduction: ``"mean"`` (batch mean) or ``"none"`` (per-example values).
    """
    check_reduction(reduction)
    sde = classifier.sde
    check_eps(eps, sde)
    y = classifier.check_labels(y, x.shape[0]).to(x.device)
    t = draw_times(x.shape[0], sde, eps, generator, dtype=x.dtype, device=x.device) if t is None \
        else check_times(t, x.shape[0])
    z_t = noisy_state(sde, x, t, momentum=momentum, noise=noise, generator=generator)
    per_example = F.cross_entropy(classifier(z_t, t), y, reduction="none")
    return per_example.mean() if reduction == "mean" else per_example


@torch.no_grad()
def accuracy_by_time(classifier: ClassifierModel, x: Tensor, y: Tensor, *, num_bins: int = 10, eps: float = 1e-5,
                     batch_size: int = 500, generator: torch.Generator | None = None) -> list[dict[str, float]]:
    """Held-out accuracy and cross-entropy of a noise-conditional classifier per bin of the forward time: bin ``i``
    covers ``[eps + i h, eps + (i + 1) h)``, ``h = (T - eps) / num_bins``, and every example is perturbed once per bin
    at ``t ~ U(bin)`` (:func:`noisy_state`; draws on the CPU from ``generator``, :func:`perturbation_draws`).
    Accuracy must fall from the clean classifier's towards the prior's (the share of the largest class) as ``t``
    grows.

    Returns one row per bin: ``t_lo``, ``t_hi``, ``accuracy``, ``nll`` (mean cross-entropy, nats) and ``n``; for
    scalar SDEs also ``snr`` (``alpha(t) / sigma(t)`` at the bin's middle).
    """
    if num_bins < 1 or batch_size < 1:
        raise ValueError(f"num_bins and batch_size must be positive, got {num_bins}, {batch_size}")
    sde = classifier.sde
    check_eps(eps, sde)
    y = classifier.check_labels(y, x.shape[0])
    edges = torch.linspace(eps, sde.T, num_bins + 1, dtype=torch.float64).tolist()
    rows = []
    for lo, hi in itertools.pairwise(edges):
        correct, nll = 0.0, 0.0
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size].to(x.device)
            draws = {k: (None if v is None else v.to(xb.device, xb.dtype))
                     for k, v in perturbation_draws(sde, xb.shape, (lo, hi), generator).items()}
            t = draws.pop("t")
            logits = classifier(noisy_state(sde, xb, t, **draws), t)
            correct += float((logits.argmax(dim=1) == yb).sum())
            nll += float(F.cross_entropy(logits.double(), yb, reduction="sum"))
        row = {"t_lo": lo, "t_hi": hi, "accuracy": correct / x.shape[0], "nll": nll / x.shape[0], "n": x.shape[0]}
        if isinstance(sde, ScalarSDE):
            mid = torch.tensor([0.5 * (lo + hi)], dtype=torch.float64)
            row["snr"] = float(sde.alpha(mid) / sde.sigma(mid))
        rows.append(row)
    return rows


def format_accuracy_table(rows: Sequence[Mapping[str, float]]) -> str:
    """:func:`accuracy_by_time`'s rows as a Markdown table (t range, alpha/sigma where known, accuracy, NLL)."""
    snr = all("snr" in r for r in rows)
    head = "| t | " + ("alpha/sigma | " if snr else "") + "accuracy | NLL (nats) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['t_lo']:.3f}-{r['t_hi']:.3f} | " + (f"{r['snr']:.3g} | " if snr else "")
                     + f"{r['accuracy']:.3f} | {r['nll']:.3f} |")
    return "\n".join(lines)


# ---- building, saving, loading -----------------------------------------------------------------------------


def build_classifier(sde: SDE, data_shape: Sequence[int], num_classes: int, cfg: ClassifierConfig | None = None, *,
                     continuous: bool = True) -> ClassifierModel:
    """A randomly initialised :class:`~scoresde.models.ClassifierModel` for data of shape ``data_shape`` (one
    example: ``(C, H, W)`` images or ``(d,)`` points) under ``sde``: an
    :class:`~scoresde.nets.classifier.NCSNppClassifier` for images, an :class:`~scoresde.nets.classifier.MLPClassifier`
    for points (``cfg.network`` may say which), sized for the SDE's state (``2 C`` channels / ``2 d`` dimensions for
    PSLD/CLD) and fed the labels of the SDE's convention (``continuous`` as in the score models)."""
    cfg = (cfg or ClassifierConfig()).validate()
    state = sde.state_shape((1, *data_shape))[1:]
    network = cfg.network or ("ncsnpp" if len(state) == 3 else "mlp")
    model = ClassifierModel(torch.nn.Identity(), sde, num_classes=num_classes, continuous=continuous)
    raw_t = model.label_type == "t"
    if network == "ncsnpp":
        if len(state) != 3 or state[1] != state[2]:
            raise ValueError(f"classifier.network 'ncsnpp' needs square images (C, H, H), got data of shape "
                             f"{tuple(data_shape)}")
        embedding = cfg.embedding_type or ("positional" if model.label_type in ("time", "timestep") else "fourier")
        net = NCSNppClassifier(state[1], state[0], num_classes, nf=cfg.nf, ch_mult=cfg.ch_mult,
                               num_res_blocks=cfg.num_res_blocks, attn_resolutions=cfg.attn_resolutions,
                               dropout=cfg.dropout, resblock_type=cfg.resblock_type, embedding_type=embedding,
                               fir=cfg.fir)
    else:
        if len(state) != 1:
            raise ValueError(f"classifier.network 'mlp' needs points (d,), got data of shape {tuple(data_shape)}")
        max_period = cfg.max_period if cfg.max_period is not None else (1e-3 if raw_t else 1e4)
        net = MLPClassifier(state[0], num_classes, hidden=cfg.hidden, depth=cfg.depth,
                            time_embed_dim=cfg.time_embed_dim, max_period=max_period)
    return model.with_net(net)


def sde_config(config: Config | Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run config that :func:`scoresde.config.build_sde` reads (``training.sde``, ``continuous`` and
    the SDE's ``model`` keys): what a classifier checkpoint carries to rebuild its SDE."""
    values = config.to_dict() if isinstance(config, Config) else dict(config)
    name = str(values["training"]["sde"]).lower()
    spec = SDE_TABLE[name]
    keys = (*spec.required, *spec.optional, "num_scales")
    return {"training": {"sde": name, "continuous": bool(values["training"].get("continuous", True))},
            "model": {k: values["model"][k] for k in keys if k in values["model"]}}


def save_classifier(directory: str | Path, classifier: ClassifierModel, cfg: ClassifierConfig,
                    sde_cfg: Mapping[str, Any], data_shape: Sequence[int], *, step: int = 0, ema: EMA | None = None,
                    optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write a classifier checkpoint (a scoresde checkpoint directory, written atomically): the weights (and the EMA's,
    the optimizer state and the EMA's update count) and a config holding ``kind``, the SDE's config (``sde_cfg``,
    :func:`sde_config`), the classifier's (``cfg`` with the resolved ``network`` and ``num_classes``), the label type
    and the data shape. The SDE given must be the one ``sde_cfg`` builds."""
    if not same_sde(build_sde(sde_cfg), classifier.sde):
        raise ValueError("sde_cfg does not build the classifier's SDE")
    net = classifier.net
    values = {**cfg.to_dict(), "network": "ncsnpp" if isinstance(net, NCSNppClassifier) else "mlp",
              "num_classes": classifier.num_classes}
    if isinstance(net, NCSNppClassifier):
        values["embedding_type"] = net.embedding_type
    meta = {"kind": CLASSIFIER_KIND, "sde": dict(sde_cfg), "classifier": values, "label_type": classifier.label_type,
            "data_shape": [int(s) for s in data_shape]}
    trainer_state = {"ema_num_updates": ema.num_updates} if ema is not None else None
    return save_checkpoint(directory, net, meta, step=step, ema=None if ema is None else ema.full_state_dict(net),
                           optimizer=optimizer, trainer_state=trainer_state)


def _checkpoint_directory(path: Path) -> Path:
    """A classifier checkpoint directory, or the ``checkpoint/`` of a ``train-classifier`` output folder."""
    return path / _CHECKPOINT if (path / _SETTINGS).is_file() and (path / _CHECKPOINT).is_dir() else path


def load_classifier(path: str | Path, *, use_ema: bool = True, map_location: str | torch.device = "cpu"
                    ) -> ClassifierModel:
    """The :class:`~scoresde.models.ClassifierModel` of a checkpoint written by :func:`save_classifier` (or the output
    folder of ``scoresde train-classifier``), in eval mode, with the EMA weights unless ``use_ema=False`` and the
    training step as ``.step``. Tensors are
    read from safetensors and the optimizer state with ``weights_only=True``: nothing in the files is executed."""
    directory = _checkpoint_directory(Path(path))
    state = load_training_state(directory, map_location=map_location)
    meta = state.config
    if meta.get("kind") != CLASSIFIER_KIND:
        raise ValueError(f"{directory} is not a classifier checkpoint (a score model's? load it with "
                         "scoresde.load_checkpoint)")
    if use_ema and state.ema_state is None:
        raise ValueError(f"{directory} was saved without EMA weights (classifier.ema_rate=0); pass use_ema=False")
    sde = build_sde(meta["sde"])
    cfg = ClassifierConfig.from_dict(meta["classifier"])
    classifier = build_classifier(sde, meta["data_shape"], cfg.num_classes, cfg,
                                  continuous=bool(meta["sde"]["training"]["continuous"]))
    if classifier.label_type != meta["label_type"]:
        raise ValueError(f"{directory}: label type {meta['label_type']!r} differs from the rebuilt "
                         f"{classifier.label_type!r}")
    classifier.net.load_state_dict(state.ema_state if use_ema else state.model_state)
    classifier.step = state.step
    return classifier.to(map_location).eval()


# ---- data --------------------------------------------------------------------------------------------------


def labelled_tensors(dataset: Any, name: str = "data") -> tuple[Tensor, Tensor]:
    """``(examples, labels)`` of a dataset yielding ``(example, label)`` (in-memory tensors as they are; others item
    by item), or a ``ValueError`` when it is unlabelled (label ``-1``): a classifier needs class labels."""
    if getattr(dataset, "images", None) is not None and hasattr(dataset, "labels"):
        examples, labels = dataset.images, dataset.labels
    else:
        items = [dataset[i] for i in range(len(dataset))]
        examples = torch.stack([torch.as_tensor(item[0]) for item in items])
        labels = torch.as_tensor([int(item[1]) for item in items], dtype=torch.int64)
    missing = len(examples) if labels is None else int((labels < 0).sum())
    if missing or len(examples) == 0:
        raise ValueError(f"{name} is unlabelled ({missing} of {len(examples)} examples have label -1): a classifier "
                         "needs labelled data (digits, CIFAR10, an image folder with dataset.json labels)")
    return examples, labels.to(torch.int64)


# ---- the training loop -------------------------------------------------------------------------------------


class ClassifierTrainer:
    """Train a noise-conditional classifier on in-memory labelled data with :func:`classifier_loss` (single process).

    Step ``s`` uses the examples at positions ``[s B, (s + 1) B)`` of a sequence of seeded permutations
    (:func:`scoresde.training.data.global_batch_indices`) and draws its preprocessing (stream 0), its ``t``, DSM
    momentum and noise (stream 1) and its dropout (stream 2) from generators seeded by ``(cfg.seed, s)``
    (:func:`scoresde.training.trainer.step_seed`), on the CPU whatever the device: a run resumed from a checkpoint
    continues exactly as if it had not stopped. Adam with a linear warm-up of the learning rate, global-norm gradient
    clipping, and (``ema_rate > 0``) an EMA of the weights with Score SDE's update rule.

    Args:
        classifier: the :class:`~scoresde.models.ClassifierModel` to train (moved to ``device``).
        cfg: the training options (``steps``, ``batch_size``, ``lr``, ``warmup``, ``grad_clip``, ``weight_decay``,
            ``ema_rate``, ``eps``, ``seed``).
        x: training examples: ``uint8`` images ``(N, C, H, W)`` (preprocessed per batch like the score trainer's) or
            float data ``(N, ...)`` used as they are.
        y: their labels ``(N,)`` in ``[0, num_classes)``.
        centered, random_flip, uniform_dequantization: the ``data`` options of the preprocessing of ``uint8`` images.
        device: where to train (default: CPU).
    """

    def __init__(self, classifier: ClassifierModel, cfg: ClassifierConfig, x: Tensor, y: Tensor, *,
                 centered: bool = False, random_flip: bool = False, uniform_dequantization: bool = False,
                 device: str | torch.device | None = None) -> None:
        self.cfg = cfg.validate()
        self.device = torch.device(device or "cpu")
        self.classifier = classifier.to(self.device).train()
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"x and y must have the same positive number of rows, got {x.shape[0]} and {y.shape[0]}")
        self.x, self.y = x, classifier.check_labels(y, y.shape[0])
        self.preprocessing = {"centered": centered, "random_flip": random_flip,
                              "uniform_dequantization": uniform_dequantization}
        self.optimizer = torch.optim.Adam(classifier.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ema = EMA(classifier.net, cfg.ema_rate) if cfg.ema_rate > 0 else None
        self.step = 0

    def _batch(self) -> tuple[Tensor, Tensor]:
        idx = global_batch_indices(self.step, self.x.shape[0], self.cfg.batch_size, self.cfg.seed)
        xb, yb = self.x[idx], self.y[idx]
        if xb.dtype == torch.uint8:
            g = torch.Generator().manual_seed(step_seed(self.cfg.seed, self.step, 0))
            xb = preprocess(xb, generator=g, **self.preprocessing)
        return xb.to(self.device, torch.get_default_dtype() if not xb.is_floating_point() else xb.dtype), yb

    def train_step(self) -> float:
        """One optimizer step; returns the batch's mean cross-entropy (nats)."""
        xb, yb = self._batch()
        g = torch.Generator().manual_seed(step_seed(self.cfg.seed, self.step, 1))
        sde = self.classifier.sde
        draws = {k: (None if v is None else v.to(self.device, xb.dtype))
                 for k, v in perturbation_draws(sde, xb.shape, (self.cfg.eps, sde.T), g).items()}
        dropout_seed = step_seed(self.cfg.seed, self.step, 2)
        if self.device.type == "cpu":  # torch.manual_seed also seeds every accelerator (3 ms a call here)
            torch.default_generator.manual_seed(dropout_seed)
        else:
            torch.manual_seed(dropout_seed)
        lr = self.cfg.lr * min(self.step / self.cfg.warmup, 1.0) if self.cfg.warmup > 0 else self.cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss = classifier_loss(self.classifier, xb, yb.to(self.device), eps=self.cfg.eps, **draws)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite classifier loss {float(loss)} at step {self.step}")
        loss.backward()
        if self.cfg.grad_clip >= 0:
            torch.nn.utils.clip_grad_norm_(self.classifier.net.parameters(), max_norm=self.cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.classifier.net)
        self.step += 1
        return float(loss.detach())

    def train(self, steps: int | None = None, *, progress: bool = False,
              checkpoint: Callable[[ClassifierTrainer], None] | None = None,
              log: Callable[[dict[str, float]], None] | None = None) -> float:
        """Train up to ``cfg.steps`` (or ``steps`` more steps, not past it); calls ``checkpoint(self)`` every
        ``cfg.checkpoint_freq`` steps and at the end, and ``log({"step", "loss", "lr"})`` every ``cfg.log_freq`` steps
        and at the end (``loss``: the mean over the steps since the last call). Returns the last logged loss."""
        end = self.cfg.steps if steps is None else min(self.cfg.steps, self.step + steps)
        bar = tqdm(total=end, initial=self.step, desc="classifier", disable=not progress)
        window: list[float] = []
        last = float("nan")
        while self.step < end:
            window.append(self.train_step())
            bar.update(1)
            if self.step % self.cfg.log_freq == 0 or self.step == end:
                last = sum(window) / len(window)
                bar.set_postfix(loss=f"{last:.4f}")
                window = []
                if log is not None:
                    log({"step": self.step, "loss": last, "lr": self.optimizer.param_groups[0]["lr"]})
            if checkpoint is not None and (self.step % self.cfg.checkpoint_freq == 0 or self.step == end):
                checkpoint(self)
        bar.close()
        return last

    def eval_classifier(self) -> ClassifierModel:
        """A copy of the classifier with the EMA weights (the online ones without EMA), in eval mode."""
        net = copy.deepcopy(self.classifier.net)
        if self.ema is not None:
            self.ema.copy_to(net)
        return self.classifier.with_net(net).eval()

    def load(self, directory: str | Path) -> None:
        """Resume from a checkpoint of :func:`save_classifier` (weights, EMA and its update count, optimizer, step)."""
        state = load_training_state(directory, map_location=self.device)
        self.classifier.net.load_state_dict(state.model_state)
        if self.ema is not None:
            if state.ema_state is None:
                raise ValueError(f"{directory} has no EMA weights but classifier.ema_rate is {self.cfg.ema_rate}")
            self.ema.load_full_state_dict(state.ema_state, int(state.trainer_state["ema_num_updates"]))
        if state.optimizer_state is not None:
            self.optimizer.load_state_dict(state.optimizer_state)
        self.step = state.step


# ---- scoresde train-classifier ------------------------------------------------------------------------------

#: options that may change when a run resumes (how long and how it is logged and evaluated)
_RESUMABLE = frozenset({"steps", "log_freq", "checkpoint_freq", "eval_bins", "eval_num", "eval_split",
                        "eval_batch_size"})


def _settings(config: Any, workdir: Path, overrides: Sequence[str]) -> tuple[Config, ClassifierConfig]:
    """The run config and classifier config of a ``train-classifier`` run: from ``config`` (or the workdir's saved
    settings when ``None``) with ``overrides`` (``classifier.*`` keys to the classifier, others to the run config)."""
    clf_over = [o for o in overrides if o.partition("=")[0].startswith("classifier.")]
    run_over = [o for o in overrides if o not in clf_over]
    saved_path = workdir / _SETTINGS
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else None
    if config is None and saved is None:
        raise FileNotFoundError(f"{saved_path} not found: pass --config to start a classifier run in {workdir}")
    run = load_config(saved["run"] if config is None else config, run_over)
    base = ClassifierConfig.from_dict(saved["classifier"]) if config is None else ClassifierConfig()
    clf = apply_classifier_overrides(base, clf_over)
    if saved is not None:
        old = ClassifierConfig.from_dict(saved["classifier"]).to_dict()
        changed = sorted(k for k, v in clf.to_dict().items() if old[k] != v and k not in _RESUMABLE)
        if changed or sde_config(run) != sde_config(saved["run"]) or run.data != load_config(saved["run"]).data:
            what = ", ".join(changed) or "data or SDE"
            raise ValueError(f"{workdir} holds a classifier run with other settings ({what}); use a new --workdir")
    return run, clf


def train_classifier(config: Any, workdir: str | Path, *, overrides: Sequence[str] = (), max_steps: int | None = None,
                     device: str | None = None, progress: bool = False) -> dict[str, Any]:
    """``scoresde train-classifier``: train a noise-conditional classifier on the labelled training split of a run
    config's data, perturbed by its SDE, then measure :func:`accuracy_by_time` on the held-out split (EMA weights).

    Args:
        config: the run config (preset name, ``.json``, original ``.py``, dict): ``data`` and the SDE
            (``training.sde`` and the ``model`` section's SDE keys); ``None`` resumes ``workdir`` with its settings.
        workdir: output folder: ``classifier.json`` (settings), ``checkpoint/`` (:func:`load_classifier`),
            ``metrics.jsonl`` (the training loss every ``log_freq`` steps), ``accuracy_by_time.json``. An existing
            one resumes (same settings; ``steps`` and evaluation options may change).
        overrides: ``classifier.KEY=VALUE`` (:class:`ClassifierConfig`) and ``section.key=value`` for the run config.
        max_steps: stop after this many more steps.
        device: ``"cpu"``, ``"cuda"``, ... (default: CPU).
        progress: show a progress bar.

    Returns ``{"step", "loss", "accuracy_by_time"}`` (the table's rows).
    """
    workdir = Path(workdir)
    run, cfg = _settings(config, workdir, overrides)
    sde = build_sde(run.to_dict())
    x, y = labelled_tensors(build_dataset(run.data, "train", run.seed), f"the {run.data.dataset} training split")
    num_classes = cfg.num_classes or int(y.max()) + 1
    classifier = build_classifier(sde, tuple(x.shape[1:]), num_classes, cfg, continuous=run.training.continuous)
    d = run.data
    trainer = ClassifierTrainer(classifier, cfg, x, y, centered=d.centered, random_flip=d.random_flip,
                                uniform_dequantization=d.uniform_dequantization, device=device)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / _SETTINGS).write_text(json.dumps({"run": run.to_dict(), "classifier": cfg.to_dict()}, indent=2) + "\n")
    if (workdir / _CHECKPOINT / "checkpoint.json").is_file():
        trainer.load(workdir / _CHECKPOINT)
    sde_cfg = sde_config(run)

    def checkpoint(t: ClassifierTrainer) -> None:
        save_classifier(workdir / _CHECKPOINT, t.classifier, cfg, sde_cfg, tuple(x.shape[1:]), step=t.step,
                        ema=t.ema, optimizer=t.optimizer)

    def log(scalars: dict[str, float]) -> None:
        with open(workdir / _METRICS, "a") as handle:
            handle.write(json.dumps(scalars) + "\n")

    loss = trainer.train(max_steps, progress=progress, checkpoint=checkpoint, log=log)
    xe, ye = labelled_tensors(build_dataset(run.data, cfg.eval_split, run.seed), f"the {d.dataset} {cfg.eval_split} "
                              "split")
    xe, ye = xe[:cfg.eval_num], ye[:cfg.eval_num]
    if xe.dtype == torch.uint8:
        xe = preprocess(xe, centered=d.centered)
    rows = accuracy_by_time(trainer.eval_classifier(), xe.to(trainer.device), ye, num_bins=cfg.eval_bins,
                            eps=cfg.eps, batch_size=cfg.eval_batch_size,
                            generator=torch.Generator().manual_seed(cfg.seed))
    report = {"step": trainer.step, "sde": sde_cfg, "split": cfg.eval_split, "accuracy_by_time": rows}
    (workdir / _ACCURACY).write_text(json.dumps(report, indent=2) + "\n")
    return {"step": trainer.step, "loss": loss, "accuracy_by_time": rows}
