"""The training loop of noise-conditional classifiers: :class:`ClassifierTrainer` (single process, resumable exactly)
on in-memory labelled tensors, which :func:`labelled_tensors` reads from a dataset."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ...checkpoint.native import load_training_state
from ...data import preprocess
from ...models.classifier import ClassifierModel
from ..data import global_batch_indices
from ..ema import EMA
from ..trainer import step_seed
from .config import ClassifierConfig
from .objective import classifier_loss, perturbation_draws

__all__ = ["ClassifierTrainer", "labelled_tensors"]


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
