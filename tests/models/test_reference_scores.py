"""All six reference fixtures' ``score_model`` / ``score_ema`` through ``load_score_sde_checkpoint``.

float32 against the float32 keys with the README §5 per-sample tolerance (1e-4 of ``max(1, max|b|)``), float64
against the ``*_f64`` keys with ``rtol=1e-9``, and the labels fed to the network equal ``score_labels``.
"""

from __future__ import annotations

import functools
import json

import pytest
import torch

from scoresde import load_score_sde_checkpoint
from scoresde.models import ScoreModel
from tests.reference import load_reference, per_sample_close, require_reference

FIXTURES = ("ncsnpp_ve", "ncsnpp_deep_skip", "ddpmpp_vp", "ddpm_vp", "ncsnv2", "ncsn")
F32_REL, F64_RTOL, F64_ATOL = 1e-4, 1e-9, 1e-12


@functools.cache
def _model(name: str, weights: str, dtype: torch.dtype) -> ScoreModel:
    config = json.loads(require_reference(f"{name}.config.json").read_text())
    loaded = load_score_sde_checkpoint(require_reference(f"{name}.ckpt.pt"), config, use_ema=weights == "ema",
                                       dtype=None if dtype == torch.float32 else dtype)
    assert loaded.step == 3
    return loaded


@functools.cache
def _io(name: str) -> dict:
    return load_reference(f"{name}.io.pt")


@pytest.mark.parametrize("weights", ["model", "ema"])
@pytest.mark.parametrize("name", FIXTURES)
def test_score_float32(name: str, weights: str) -> None:
    io = _io(name)
    with torch.no_grad():
        score = _model(name, weights, torch.float32).score(io["x"], io["t"])
    assert score.dtype == torch.float32 and score.shape == io["x"].shape
    ok, ratio = per_sample_close(score, io[f"score_{weights}"], rel=F32_REL)
    assert ok, f"{name}/{weights}: per-sample error ratio {ratio:.3g} > {F32_REL}"


@pytest.mark.parametrize("weights", ["model", "ema"])
@pytest.mark.parametrize("name", FIXTURES)
def test_score_float64(name: str, weights: str) -> None:
    io = _io(name)
    with torch.no_grad():
        score = _model(name, weights, torch.float64).score(io["x"].double(), io["t"].double())
    assert score.dtype == torch.float64
    torch.testing.assert_close(score, io[f"score_{weights}_f64"], rtol=F64_RTOL, atol=F64_ATOL)


@pytest.mark.parametrize("name", FIXTURES)
def test_labels_fed_to_the_network(name: str) -> None:
    """What the wrapper feeds the net is what the original ``get_score_fn`` fed it (dtype and values)."""
    io = _io(name)
    model = _model(name, "ema", torch.float32)
    seen = []
    handle = model.net.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    try:
        with torch.no_grad():
            model(io["x"], io["t"])
    finally:
        handle.remove()
    assert len(seen) == 1
    assert seen[0].dtype == io["score_labels"].dtype
    assert torch.equal(seen[0], io["score_labels"])
    assert torch.equal(model.labels(io["t"]), io["score_labels"])
    assert model.continuous == bool(io["continuous"])


@pytest.mark.parametrize("name", ["ncsnpp_ve", "ddpm_vp"])
def test_raw_network_call(name: str) -> None:
    """``call_net`` on the raw fixture labels gives the network outputs ``out_ema``."""
    io = _io(name)
    with torch.no_grad():
        out = _model(name, "ema", torch.float32).call_net(io["x"], io["labels"])
    ok, ratio = per_sample_close(out, io["out_ema"], rel=F32_REL)
    assert ok, ratio
