"""The network of a noise-conditional classifier: :func:`build_classifier` maps a :class:`ClassifierConfig`, the data's
shape and the SDE to a :class:`~scoresde.models.ClassifierModel` (NCSN++ encoder for images, MLP for points)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...models.classifier import ClassifierModel
from ...nets.classifier import MLPClassifier, NCSNppClassifier
from ...sdes.base import SDE
from .config import ClassifierConfig

__all__ = ["build_classifier"]


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
