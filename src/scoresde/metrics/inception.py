"""Inception-v3 features through torch-fidelity's port of the TF 2015-12-05 graph (the network TF-GAN,
pytorch-fid, torch-fidelity and clean-fid agree on), imported lazily: ``pip install 'scoresde[metrics]'``.

FID and KID use the 2048-d pool features, the Inception Score the 1008 ``logits_unbiased`` (torch-fidelity's
choice). Images enter as uint8 ``(N, C, H, W)``; torch-fidelity resizes them to 299x299 with TF1's bilinear rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

POOL_DIM = 2048
LOGITS_DIM = 1008
_FEATURES = ("2048", "logits_unbiased")


class InceptionOutput(NamedTuple):
    """Features of a batch: ``pool`` ``(N, 2048)`` (FID, KID) and ``logits`` ``(N, 1008)`` (IS), float32 on CPU."""

    pool: Tensor
    logits: Tensor


class InceptionFeatures:
    """Callable feature extractor: uint8 images ``(N, 1 or 3, H, W)`` -> :class:`InceptionOutput`.

    Build it with :func:`load_inception`. Grayscale images are repeated to three channels.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module = module
        self.device = device

    @torch.no_grad()
    def __call__(self, images: Tensor) -> InceptionOutput:
        """Pool features and logits of one batch (the network sees the batch as given)."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 images of shape (N, 1 or 3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        pool, logits = self.module(images.to(self.device))
        return InceptionOutput(pool.float().cpu(), logits.float().cpu())

    def extract(self, images: Iterable[Tensor]) -> InceptionOutput:
        """Features of an iterable of uint8 batches, concatenated in order."""
        outs = [self(batch) for batch in images]
        if not outs:
            raise ValueError("no images to extract features from")
        return InceptionOutput(torch.cat([o.pool for o in outs]), torch.cat([o.logits for o in outs]))


def load_inception(weights: str | Path | None = None, device: torch.device | str = "cpu",
                   internal_dtype: str = "float32") -> InceptionFeatures:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (Szegedy et al. 2016, TF graph of 2015-12-05).

    Args:
        weights: a local weights file in torch-fidelity's format (a ``torch.save``'d state dict, e.g.
            ``weights-inception-2015-12-05-6726825d.pth``) for offline use; ``None`` lets torch-fidelity fetch the
            standard file into the torch hub cache. The file is first opened with ``weights_only=True`` so a file
            holding pickled code is refused before torch-fidelity loads it.
        device: where the network runs.
        internal_dtype: ``"float32"`` (standard) or ``"float64"``.
    """
    try:
        # optional dependency (the 'metrics' extra): imported where the features are needed
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("Inception features need torch-fidelity: pip install 'scoresde[metrics]'") from err
    path = None
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"no Inception weights at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path} is not a plain state dict of tensors (refusing to unpickle it): "
                             f"{str(err).splitlines()[0]}") from None
        if not isinstance(state, dict) or "fc.weight" not in state or tuple(state["fc.weight"].shape) != (
                LOGITS_DIM, POOL_DIM):
            raise ValueError(f"{path} is not torch-fidelity's Inception-v3 state dict (no fc.weight of shape "
                             f"({LOGITS_DIM}, {POOL_DIM}))")
        del state
        path = str(path)
    module = FeatureExtractorInceptionV3("inception-v3-compat", list(_FEATURES), feature_extractor_weights_path=path,
                                         feature_extractor_internal_dtype=internal_dtype)
    device = torch.device(device)
    return InceptionFeatures(module.to(device), device)


def write_random_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """Write a weights file in torch-fidelity's Inception-v3 format (same keys and shapes, ``torch.save``'d state
    dict) with seeded random values: He-scaled conv/fc weights, small biases and running means, running variances
    in ``[0.5, 1.5)``. For offline tests and timing only; its features mean nothing.

    The layers are built with torch-fidelity's loading switched off only to learn the keys; the file is then
    loaded through the normal path (:func:`load_inception` with ``weights=path``).
    """
    from unittest import mock  # only here: patches torch-fidelity's loader while the layers are built

    from torch_fidelity import feature_extractor_inceptionv3 as fidelity  # optional dependency ('metrics' extra)

    cls = fidelity.FeatureExtractorInceptionV3
    with mock.patch.object(fidelity, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(cls, "load_state_dict", lambda self, sd: None):
        keys = cls("inception-v3-compat", ["2048"]).state_dict()
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in keys.items():
        if value.dim() >= 2:  # conv / fc weights: variance-preserving scale so the input still matters
            value = torch.randn(value.shape, generator=g) * (2.0 / value[0].numel()) ** 0.5
        elif key.endswith("running_var"):
            value = torch.rand(value.shape, generator=g) + 0.5
        elif key.endswith("running_mean") or key.endswith(".bias"):
            value = torch.randn(value.shape, generator=g) * 0.1
        state[key] = value.clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
