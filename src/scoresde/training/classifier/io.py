"""Classifier checkpoints: :func:`save_classifier` writes a scoresde checkpoint directory (atomic, safetensors
weights, step-checked; :func:`scoresde.checkpoint.save_checkpoint`) whose config holds the SDE's config
(:func:`sde_config`) and the classifier's (:class:`ClassifierConfig`); :func:`load_classifier` rebuilds the
:class:`~scoresde.models.ClassifierModel` from it, reading weights only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ...checkpoint.native import load_training_state, save_checkpoint
from ...config import Config, build_sde
from ...models.classifier import ClassifierModel
from ...nets.classifier import NCSNppClassifier
from ...sdes import CONFIG_SDES
from ...sdes.base import same_sde
from ..ema import EMA
from .build import build_classifier
from .config import ClassifierConfig

__all__ = ["CLASSIFIER_KIND", "RUN_CHECKPOINT", "RUN_SETTINGS", "load_classifier", "save_classifier", "sde_config"]

#: ``kind`` of a classifier checkpoint's config (what :func:`load_classifier` checks)
CLASSIFIER_KIND = "noise-conditional-classifier"
#: in a ``scoresde train-classifier`` output folder: the checkpoint directory and the settings file
RUN_CHECKPOINT, RUN_SETTINGS = "checkpoint", "classifier.json"


def sde_config(config: Config | Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run config that :func:`scoresde.config.build_sde` reads (``training.sde``, ``continuous`` and
    the SDE's ``model`` keys): what a classifier checkpoint carries to rebuild its SDE."""
    values = config.to_dict() if isinstance(config, Config) else dict(config)
    name = str(values["training"]["sde"]).lower()
    sde_cls = CONFIG_SDES[name]
    keys = (*sde_cls.config_keys, *sde_cls.config_options, "num_scales")
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
    return path / RUN_CHECKPOINT if (path / RUN_SETTINGS).is_file() and (path / RUN_CHECKPOINT).is_dir() else path


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
