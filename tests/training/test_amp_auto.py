"""Issue 23 item 6: ``training.amp=auto`` trains in bf16 autocast where the device computes bf16 natively and in
float32 elsewhere: the same weights as the explicit choice, bit for bit."""

from __future__ import annotations

import torch

from scoresde.models.score_model import native_low_precision
from scoresde.training import Trainer

from .test_trainer import _cfg as small_config


def _weights(tmp_path, name, amp):
    trainer = Trainer(small_config(f"training.amp={amp}", "training.n_iters=3"), tmp_path / name)
    trainer.train()
    return trainer, [p.detach().clone() for p in trainer.model.net.parameters()]


def test_auto_is_bf16_where_native_else_float32(tmp_path):
    native = native_low_precision(torch.bfloat16, torch.device("cpu"))
    auto, w_auto = _weights(tmp_path, "auto", "auto")
    explicit, w_explicit = _weights(tmp_path, "explicit", "bf16" if native else "none")
    assert auto.amp_dtype == (torch.bfloat16 if native else None) == explicit.amp_dtype
    assert all(torch.equal(a, b) for a, b in zip(w_auto, w_explicit, strict=True))
    _, w_float = _weights(tmp_path, "float", "none")
    assert native != all(torch.equal(a, b) for a, b in zip(w_auto, w_float, strict=True))
