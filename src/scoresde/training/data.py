"""Resumable, rank-sharded batches: the data position is a function of the step, never hidden iterator state.

The sample order is a sequence of seeded permutations of the dataset (one per epoch). Optimizer step ``s`` uses
global positions ``[s B, (s + 1) B)`` of that sequence; rank ``r`` of ``W`` takes its contiguous share and
splits it into ``grad_accum`` micro-batches. So a run resumed at step ``s`` sees exactly the batches it would
have seen, and ``W`` ranks together see exactly the batches of one process with the same global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import DataConfig
from ..data import load_dataset, sample_toy_2d
from ..data.toy2d import LABELLED_TOY_2D, TOY_2D


class PointDataset(Dataset):
    """A fixed set of float points ``(N, d)`` (the 2-D toys), returned as ``(point, label)``: the int64 ``labels``
    ``(N,)`` if given (e.g. the mixture components), else ``-1`` (no class)."""

    def __init__(self, points: Tensor, labels: Tensor | None = None) -> None:
        if labels is not None and tuple(labels.shape) != (points.shape[0],):
            raise ValueError(f"labels must have shape ({points.shape[0]},), got {tuple(labels.shape)}")
        self.points, self.labels = points, labels

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.points[index], -1 if self.labels is None else int(self.labels[index])


def dataset_labels(ds: Dataset) -> Tensor | None:
    """The int64 class labels ``(N,)`` of a dataset of this package, read without decoding any image (``-1`` for an
    unlabelled example), or ``None`` when it has no labels at all."""
    labels = getattr(ds, "labels", None)
    if labels is None:
        return None
    if isinstance(labels, dict):  # an image folder's dataset.json: {relative path: label}
        return torch.tensor([labels.get(f, -1) for f in ds.files], dtype=torch.int64)
    return torch.as_tensor(labels, dtype=torch.int64)


def check_dataset_labels(ds: Dataset, num_classes: int, what: str) -> None:
    """Refuse to train a class-conditional model (``num_classes`` > 0) on ``ds`` unless every example has a label in
    ``[0, num_classes)`` (``what`` names the dataset in the error)."""
    labels = dataset_labels(ds)
    if labels is None or (labels < 0).all():
        raise ValueError(f"model.num_classes={num_classes} trains a class-conditional model, but dataset {what} has "
                         "no class labels (labelled: digits, CIFAR10, the gaussian_mixture toy, an image folder with "
                         "EDM's dataset.json labels)")
    if (labels < 0).any():
        raise ValueError(f"dataset {what}: {int((labels < 0).sum())} of {labels.numel()} examples have no label "
                         "(every example of a class-conditional run needs one)")
    if int(labels.max()) >= num_classes:
        raise ValueError(f"dataset {what} has labels up to {int(labels.max())} but model.num_classes={num_classes} "
                         f"(labels must lie in [0, {num_classes}))")


def build_dataset(cfg: DataConfig, split: str, seed: int, toy_size: int = 100_000) -> Dataset:
    """The dataset of ``cfg`` for ``split``: a 2-D toy (``toy_size`` points drawn from ``seed``), the digits,
    CIFAR-10, or an image folder/zip (``CELEBA``, ``CelebAHQ``, ``FFHQ``, ``LSUN``, ``folder``) at ``data.root``,
    whose files are checked now: an unreadable one is one error naming it, or left out with a warning under
    ``data.skip_bad_files``."""
    name = cfg.dataset
    if name in TOY_2D:
        offset = 0 if split == "train" else 1_000_003
        points, labels = sample_toy_2d(name, toy_size, torch.Generator().manual_seed(seed + offset), return_labels=True)
        return PointDataset(points, labels if name in LABELLED_TOY_2D else None)
    if name == "digits":
        ds = load_dataset("digits", split=split, resolution=cfg.image_size)
    elif name == "CIFAR10":
        if cfg.root is None:
            raise ValueError("data.dataset CIFAR10 needs data.root (where cifar-10-batches-py is or will be "
                             "downloaded with data.download=true)")
        ds = load_dataset("cifar10", split=split, root=cfg.root, resolution=cfg.image_size, download=cfg.download)
    elif name in ("CELEBA", "CelebAHQ", "FFHQ", "LSUN", "folder"):
        if cfg.root is None:
            raise ValueError(f"data.dataset {name} is read from an image folder or zip: set data.root")
        ds = load_dataset("folder", root=cfg.root, resolution=cfg.image_size, channels=cfg.num_channels,
                          skip_bad_files=cfg.skip_bad_files)
    else:
        valid = ["CIFAR10", "CELEBA", "CelebAHQ", "FFHQ", "LSUN", "folder", "digits", *sorted(TOY_2D)]
        raise ValueError(f"unknown data.dataset {name!r}; valid datasets are: {', '.join(valid)}")
    shape = tuple(ds.image_shape)
    expected = (cfg.num_channels, cfg.image_size, cfg.image_size)
    if shape != expected:
        raise ValueError(f"dataset {name} has images of shape {shape} (C, H, W) but the config expects {expected} "
                         "(data.num_channels, data.image_size)")
    return ds


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def global_batch_indices(step: int, n: int, batch_size: int, seed: int) -> Tensor:
    """Dataset indices of the global batch of optimizer step ``step`` (positions ``[step B, (step+1) B)``)."""
    start = step * batch_size
    pos = torch.arange(start, start + batch_size)
    epochs, within = pos // n, pos % n
    out = torch.empty(batch_size, dtype=torch.int64)
    for epoch in torch.unique(epochs).tolist():
        sel = epochs == epoch
        out[sel] = _permutation(n, seed, epoch)[within[sel]]
    return out


class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches for steps ``start_step, start_step + 1, ...`` (``grad_accum`` per step)."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int, rank: int, world_size: int,
                 grad_accum: int, num_steps: int) -> None:
        per_rank, rem = divmod(batch_size, world_size * grad_accum)
        if rem or per_rank == 0:
            raise ValueError(f"training.batch_size ({batch_size}) must be a multiple of world size x grad_accum "
                             f"({world_size} x {grad_accum})")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.num_steps = start_step, num_steps
        self.rank, self.world_size, self.grad_accum, self.micro = rank, world_size, grad_accum, per_rank

    def __len__(self) -> int:
        return max(0, self.num_steps - self.start_step) * self.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        share = self.micro * self.grad_accum
        for step in range(self.start_step, self.num_steps):
            idx = global_batch_indices(step, self.n, self.batch_size, self.seed)
            mine = idx[self.rank * share:(self.rank + 1) * share]
            for m in range(self.grad_accum):
                yield mine[m * self.micro:(m + 1) * self.micro].tolist()


def make_loader(dataset: Dataset, sampler: StepBatchSampler, num_workers: int, pin_memory: bool = False,
                prefetch_factor: int = 2) -> DataLoader:
    """A DataLoader over ``sampler``'s micro-batches (default collation: ``(images, labels)``).

    ``num_workers`` processes (``training.num_workers``, kept alive across epochs) each prepare ``prefetch_factor``
    micro-batches ahead; ``pin_memory`` (the trainer sets it on CUDA) collates into page-locked memory so that the
    host-to-device copy can run asynchronously (``.to(device, non_blocking=True)``). Neither changes the batches:
    the sampler fixes their content and order.
    """
    if num_workers < 0 or prefetch_factor < 1:
        raise ValueError(f"num_workers must be >= 0 and prefetch_factor >= 1, got {num_workers}, {prefetch_factor}")
    extra = {"prefetch_factor": prefetch_factor, "persistent_workers": True} if num_workers > 0 else {}
    return _WorkerErrorLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                              **extra)


def worker_error(err: Exception) -> Exception | None:
    """The dataset's own error inside a DataLoader worker's re-raised one, or ``None`` for any other error.

    A worker's exception reaches the main process as ``Caught ValueError in DataLoader worker process 0.`` followed
    by the worker's traceback; its last line is the dataset's message (e.g. the unreadable image it names). The error
    returned has the same type and that message alone, so that the CLI reports it as one line."""
    text = str(err)
    first = text.splitlines()[0] if text else ""
    if not (first.startswith("Caught ") and "DataLoader worker" in first and "Original Traceback" in text):
        return None
    last = text.strip().splitlines()[-1]
    name, _, message = last.partition(": ")
    try:
        return type(err)(message if name.split(".")[-1] == type(err).__name__ and message else last)
    except TypeError:  # an exception type whose constructor takes other arguments
        return RuntimeError(last)


class _WorkerErrorLoader(DataLoader):
    """A DataLoader whose worker errors are the dataset's own one-line errors (:func:`worker_error`)."""

    def __iter__(self):
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as err:
                plain = worker_error(err)
                if plain is None:
                    raise
                raise plain from None
            yield batch
