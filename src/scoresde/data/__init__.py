"""Data: built-in 2-D toys and digits (no download), CIFAR-10 and image folders, Score SDE preprocessing, EDM's
non-leaking augmentation (:class:`AugmentPipe`)."""

from .augment import AugmentPipe
from .images import (
    DATASETS,
    ImageFolderDataset,
    TensorImageDataset,
    data_scaler,
    estimate_sigma_max,
    inverse_data_scaler,
    load_cifar10,
    load_dataset,
    load_digits16,
    preprocess,
    read_cifar_batch,
)
from .toy2d import LABELLED_TOY_2D, TOY_2D, sample_toy_2d

__all__ = [
    "DATASETS",
    "LABELLED_TOY_2D",
    "TOY_2D",
    "AugmentPipe",
    "ImageFolderDataset",
    "TensorImageDataset",
    "data_scaler",
    "estimate_sigma_max",
    "inverse_data_scaler",
    "load_cifar10",
    "load_dataset",
    "load_digits16",
    "preprocess",
    "read_cifar_batch",
    "sample_toy_2d",
]
