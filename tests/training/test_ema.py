"""The EMA of the weights: Score SDE's decay rule (unchanged) and EDM's half-life rule (beta sequence against EDM's
formula, the half-life's meaning, counters that a checkpoint carries)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scoresde.config import ConfigError, load_config
from scoresde.training.ema import EMA, edm_ema_beta, ema_from_config


def _module(value: float = 0.0) -> nn.Module:
    net = nn.Linear(3, 2).double()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    return net


def _set(net: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)


def _edm_betas(steps: int, batch: int, halflife_kimg: float, rampup: float | None) -> list[float]:
    """EDM training_loop.py's update, written out: cur_nimg starts at 0 and grows by the batch after each update."""
    out, cur_nimg = [], 0
    for _ in range(steps):
        nimg = halflife_kimg * 1000
        if rampup is not None:
            nimg = min(nimg, cur_nimg * rampup)
        out.append(0.5 ** (batch / max(nimg, 1e-8)))
        cur_nimg += batch
    return out


@pytest.mark.parametrize("rampup", [0.05, None])
def test_halflife_beta_sequence_and_averages_follow_edm(rampup: float | None) -> None:
    batch, halflife = 64, 0.5  # ramp-up: the half-life is 500 images from update 157 on (157 * 64 * 0.05 > 500)
    want = _edm_betas(200, batch, halflife, rampup)
    net = _module(0.0)
    ema = EMA(net, halflife_kimg=halflife, rampup_ratio=rampup, batch_size=batch)
    shadow = 0.0
    for k, beta in enumerate(want):
        assert ema.next_decay() == beta, k
        value = float(k % 7) - 3.0  # weights that move every step
        _set(net, value)
        ema.update(net)
        shadow = value + beta * (shadow - value)  # EDM: p_ema = p_net.lerp(p_ema, beta)
        torch.testing.assert_close(ema.shadow["weight"], torch.full((2, 3), shadow, dtype=torch.float64),
                                   rtol=1e-12, atol=1e-12)
    assert ema.num_updates == 200 and ema.num_images == 200 * batch
    if rampup is not None:
        assert want[0] == 0.0 and want[1] == 0.5 ** (64 / (64 * 0.05))  # starts at the weights, then ramps up
    assert want[-1] == pytest.approx(0.5 ** (64 / 500), abs=0)


def test_halflife_halves_the_weight_of_the_past_every_halflife_images() -> None:
    """Without ramp-up, after ``halflife_kimg * 1000`` images the initial average keeps weight one half, whatever the
    batch size."""
    for batch in (10, 25, 50):
        net = _module(0.0)
        ema = EMA(net, halflife_kimg=1.0, rampup_ratio=None, batch_size=batch)
        _set(net, 1.0)
        for _ in range(1000 // batch):
            ema.update(net)
        assert float(ema.shadow["bias"][0]) == pytest.approx(0.5, abs=1e-12)  # 1 - beta ** (1000 / batch)


def test_decay_rule_is_score_sde_warmup() -> None:
    net = _module(0.0)
    ema = EMA(net, 0.999)
    for n in range(1, 30):
        assert ema.next_decay() == min(0.999, (1 + n) / (10 + n))
        ema.update(net)
    assert ema.num_images == 0 and ema.trainer_state()["ema_decay"] == 0.999
    assert edm_ema_beta(10**9, 512, 500.0) == 0.5 ** (512 / 500_000)  # EDM's CIFAR-10: beta 0.99929
    assert round(edm_ema_beta(10**9, 512, 500.0), 5) == 0.99929


def test_counters_round_trip_and_default_image_count() -> None:
    net = _module(1.0)
    ema = EMA(net, halflife_kimg=0.2, batch_size=16)
    for _ in range(5):
        ema.update(net)
    state = ema.trainer_state()
    assert state == {"ema_num_updates": 5, "ema_num_images": 80, "ema_decay": None, "ema_halflife_kimg": 0.2,
                     "ema_rampup_ratio": 0.05}
    other = EMA(net, halflife_kimg=0.2, batch_size=16)
    other.load_full_state_dict(ema.full_state_dict(net), 5, num_images=80)
    assert other.next_decay() == ema.next_decay()
    other.load_full_state_dict(ema.full_state_dict(net), 7)  # a decay run's checkpoint: 7 updates of 16 images
    assert other.num_images == 112


def test_exactly_one_rule() -> None:
    net = _module()
    with pytest.raises(ValueError, match=r"exactly one of decay \(None\) and halflife_kimg \(None\)"):
        EMA(net)
    with pytest.raises(ValueError, match=r"exactly one of decay \(0.9\) and halflife_kimg \(1\)"):
        EMA(net, 0.9, halflife_kimg=1)
    with pytest.raises(ValueError, match="needs the images per update, batch_size"):
        EMA(net, halflife_kimg=1)
    with pytest.raises(ValueError, match=r"halflife_kimg \(-1\) and rampup_ratio \(0.05\) must be > 0"):
        EMA(net, halflife_kimg=-1, batch_size=4)


def test_config_chooses_one_rule() -> None:
    base = ["model.nf=8", "model.ch_mult=[1]", "model.attn_resolutions=[]", "training.batch_size=8"]
    edm = load_config("digits/vp_ddpmpp", [*base, "training.ema_halflife_kimg=0.5", "model.ema_rate=none"])
    ema = ema_from_config(edm, _module())
    assert (ema.decay, ema.halflife_kimg, ema.rampup_ratio, ema.batch_size) == (None, 0.5, 0.05, 8)
    score_sde = ema_from_config(load_config("digits/vp_ddpmpp", base), _module())
    assert (score_sde.decay, score_sde.halflife_kimg) == (0.999, None)
    with pytest.raises(ConfigError, match=r"^training.ema_halflife_kimg=0.5 and model.ema_rate=0.999 both choose the "
                                          r"EMA; keep one \(model.ema_rate=none for EDM's half-life\)$"):
        load_config("digits/vp_ddpmpp", [*base, "training.ema_halflife_kimg=0.5"])
    with pytest.raises(ConfigError, match=r"training.ema_rampup_ratio=None applies to training.ema_halflife_kimg"):
        load_config("digits/vp_ddpmpp", [*base, "training.ema_rampup_ratio=none"])
