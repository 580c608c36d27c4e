"""The sampling precision option of ScoreModel: float32 by default, autocast bf16/fp16 around the network only,
refused on devices without native support (fallback only for 'auto')."""

from __future__ import annotations

import pytest
import torch

from scoresde.models import score_model as sm
from scoresde.models.score_model import ScoreModel, autocast_dtype
from scoresde.nets import NCSNpp
from scoresde.sdes import VPSDE

SMALL = dict(image_size=8, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0)


def _model() -> ScoreModel:
    torch.manual_seed(0)
    net = NCSNpp(**SMALL).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ScoreModel(net, VPSDE(), continuous=True)


def test_unsupported_precision_is_one_clear_error_and_auto_falls_back(monkeypatch) -> None:
    monkeypatch.setattr(sm, "native_low_precision", lambda dtype, device: False)
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="precision 'bf16' is not supported natively on cpu"):
        autocast_dtype("bf16", cpu)
    with pytest.raises(ValueError, match="unknown precision 'float8'; valid values are: fp32, bf16, fp16, auto"):
        autocast_dtype("float8", cpu)
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    model = _model()
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        torch.testing.assert_close(model.with_precision("auto").eps(x, t), model.eps(x, t), rtol=0, atol=0)
        with pytest.raises(ValueError, match="not supported natively"):
            model.with_precision("bf16").score(x, t)
    with pytest.raises(ValueError, match="unknown precision"):
        model.with_precision("half")


@pytest.mark.parametrize("precision,dtype,tol", [("bf16", torch.bfloat16, 3e-2), ("fp16", torch.float16, 3e-3)])
def test_low_precision_network_call_is_close_and_returns_the_input_dtype(monkeypatch, precision, dtype, tol) -> None:
    # emulate a device with native support, so the autocast path itself is exercised on this CPU
    monkeypatch.setattr(sm, "native_low_precision", lambda d, device: True)
    assert autocast_dtype(precision, torch.device("cpu")) is dtype
    assert autocast_dtype("auto", torch.device("cpu")) is torch.bfloat16
    model = _model()
    low = model.with_precision(precision)
    assert low.net is model.net and f"precision='{precision}'" in repr(low)
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        ref, out = model.net_output(x, t), low.net_output(x, t)
        score_ref, score = model.score(x, t), low.score(x, t)
    assert out.dtype == score.dtype == torch.float32
    scale = float(ref.abs().max())
    assert scale > 1e-2
    err = float((out - ref).abs().max()) / scale
    assert 0 < err < tol  # really computed in low precision, and close
    torch.testing.assert_close(score, score_ref, rtol=0, atol=tol * float(score_ref.abs().max()))


def test_cli_precision_option(monkeypatch) -> None:
    from scoresde.cli.common import with_precision

    monkeypatch.setattr(sm, "native_low_precision", lambda dtype, device: False)
    model = _model()
    assert with_precision(model, "fp32", "cpu") is model
    assert with_precision(model, "auto", "cpu").precision == "auto"
    with pytest.raises(ValueError, match="precision 'bf16' is not supported natively on cpu"):
        with_precision(model, "bf16", "cpu")
    with pytest.raises(ValueError, match="Linear models have no precision option"):
        with_precision(torch.nn.Linear(2, 2), "auto", "cpu")
