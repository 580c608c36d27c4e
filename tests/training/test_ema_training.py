"""EDM's EMA half-life and augmentation through the :class:`~scoresde.training.Trainer`: exact resumption (the EMA's
image count and the augmentation draws come from the checkpoint and the step's stream), the augmentation labels
reaching the network as ``cond["augment_labels"]`` for the rows they belong to, and sampling without them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scoresde.config import ConfigError, load_config
from scoresde.data.augment import AugmentPipe
from scoresde.training import Trainer
from scoresde.training.trainer import step_seed
from tests.training.test_trainer import _assert_same, _params

TINY = ["model.nf=8", "model.ch_mult=[1]", "model.attn_resolutions=[]", "model.num_res_blocks=1",
        "model.dropout=0.0", "training.batch_size=8", "training.n_iters=6", "training.snapshot_freq=4",
        "training.snapshot_freq_for_preemption=2", "training.eval_freq=0", "training.snapshot_sampling=false",
        "training.log_freq=2", "optim.warmup=2"]
EDM = ["training.ema_halflife_kimg=0.02", "model.ema_rate=none", "training.augment_p=0.5", "model.augment_dim=9"]


def _cfg(*extra: str):
    return load_config("digits/vp_ddpmpp", [*TINY, *extra])


def _record_augment_labels(trainer: Trainer) -> list:
    """The ``augment_labels`` of every network call (None where absent)."""
    seen: list = []
    trainer.model.net.register_forward_pre_hook(lambda _m, _a, kw: seen.append(kw.get("augment_labels")),
                                                with_kwargs=True)
    return seen


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Trainer:
    tr = Trainer(_cfg(*EDM), tmp_path_factory.mktemp("edm_full"))
    tr.train()
    return tr


def test_resume_with_halflife_ema_and_augmentation_continues_exactly(uninterrupted: Trainer, tmp_path: Path) -> None:
    full = uninterrupted
    assert full.ema.num_images == 6 * 8 and full.ema.decay is None
    first = Trainer(_cfg(*EDM), tmp_path)
    first.train(max_steps=5)  # checkpoints at 2 and 4; step 5 is lost
    second = Trainer(_cfg(*EDM), tmp_path)
    assert second.resume() and second.step == 4 and second.ema.num_images == 4 * 8
    second.train()
    _assert_same(_params(second), _params(full))
    _assert_same(second.ema.shadow, full.ema.shadow)
    # and both options matter: without augmentation, or with Score SDE's EMA, the run ends elsewhere
    key = next(iter(full.ema.shadow))
    plain = Trainer(_cfg(*EDM[:2]), tmp_path / "no_augment")
    plain.train()
    assert not torch.equal(_params(plain)[key], _params(full)[key])
    decay = Trainer(_cfg(*EDM[2:]), tmp_path / "decay")
    decay.train()
    assert torch.equal(_params(decay)[key], _params(full)[key])  # the EMA rule changes the average only
    assert not torch.equal(decay.ema.shadow[key], full.ema.shadow[key])


def test_augment_labels_reach_the_network_row_by_row(tmp_path: Path) -> None:
    """Each micro-batch's network call gets the labels of its rows of the step's draws (preprocessing stream, after
    the other preprocessing draws); gradient accumulation equals one big batch."""
    tr = Trainer(_cfg(*EDM, "training.grad_accum=2"), tmp_path / "accum")
    seen = _record_augment_labels(tr)
    tr.train(max_steps=1)
    pipe = AugmentPipe(p=0.5)
    draws = pipe.draw((8, 1, 16, 16), torch.Generator().manual_seed(step_seed(tr.cfg.seed, 0, 0)))
    _, want = pipe.apply(torch.zeros(8, 1, 16, 16), draws)
    assert len(seen) == 2 and all(s.shape == (4, 9) for s in seen)
    assert torch.equal(torch.cat(seen), want) and want.any()
    assert set(want[:, 0].tolist()) <= {0.0, 1.0}  # the x-flip column
    one = Trainer(_cfg(*EDM), tmp_path / "one")
    one.train(max_steps=1)
    _assert_same(_params(tr), _params(one), atol=1e-5)


def test_default_passes_no_augment_labels_and_sampling_passes_none(uninterrupted: Trainer, tmp_path: Path) -> None:
    tr = Trainer(_cfg("model.augment_dim=9"), tmp_path)
    assert tr.augment is None
    seen = _record_augment_labels(tr)
    tr.train(max_steps=1)
    assert seen == [None]
    sampled = []
    model = uninterrupted.ema_model()
    model.net.register_forward_pre_hook(lambda _m, _a, kw: sampled.append(kw.get("augment_labels")), with_kwargs=True)
    uninterrupted.ema_model = lambda: model  # the snapshot sampler on the augmented run's EMA weights
    x = uninterrupted.snapshot_samples(num=2)
    assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all() and sampled and all(s is None for s in sampled)


def test_augmentation_without_network_input_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^training.augment_p=0.5 needs a network built for its augmentation labels: "
                                          r"model.augment_dim=9, got model.augment_dim=0$"):
        _cfg("training.augment_p=0.5")
