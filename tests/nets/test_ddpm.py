"""The DDPM U-Net reproduces the Score SDE reference net (``../shared/reference/ddpm_vp.*``).

Same comparisons as ``test_ncsnpp.py``: README §5 per-sample tolerance in float32, ``rtol=1e-9`` in float64.
"""

from __future__ import annotations

import pytest
import torch

from scoresde.checkpoint.state_dict import load_original_state_dict, to_original_state_dict
from scoresde.nets.ddpm import DDPM
from tests.nets.test_ncsnpp import check_against_reference, check_ema_names, check_key_roundtrip, load_fixture

SMALL = dict(image_size=16, nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("weights", ["model", "ema"])
def test_matches_reference(weights: str, dtype: torch.dtype) -> None:
    check_against_reference("ddpm_vp", weights, dtype)


def test_ema_parameter_order() -> None:
    check_ema_names("ddpm_vp")


def test_checkpoint_keys_roundtrip() -> None:
    check_key_roundtrip("ddpm_vp")


def test_float_timesteps_equal_integer_timesteps() -> None:
    """``get_score_fn`` passes ``t * 999`` as float labels; integral values embed like the integers."""
    torch.manual_seed(0)
    net = DDPM(**SMALL).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x, torch.tensor([5, 999])), net(x, torch.tensor([5.0, 999.0])),
                                   rtol=0, atol=0)


@pytest.mark.parametrize(
    "options",
    [
        dict(resamp_with_conv=False),
        dict(conditional=False),
        dict(scale_by_sigma=True, centered=False),
        dict(in_channels=6, out_channels=3, nonlinearity="elu"),
        dict(ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(16, 4)),
    ],
)
def test_options_build_run_and_roundtrip(options: dict) -> None:
    kwargs = dict(SMALL, **options)
    torch.manual_seed(0)
    net = DDPM(**kwargs).eval()
    clone = DDPM(**kwargs).eval()
    load_original_state_dict(clone, to_original_state_dict(net))
    x, labels = torch.randn(2, net.in_channels, 16, 16), torch.tensor([0, 999])
    with torch.no_grad():
        out = net(x, labels)
        torch.testing.assert_close(clone(x, labels), out, rtol=0, atol=0)
    assert out.shape == (2, net.out_channels, 16, 16) and out.dtype == torch.float32


def test_named_submodules_and_key_map() -> None:
    net = DDPM(**SMALL)
    key_map = net.original_key_map()
    assert key_map["all_modules.0.weight"] == "temb_dense0.weight"
    assert key_map["all_modules.2.weight"] == "conv_in.weight"
    assert key_map["all_modules.4.Conv_0.weight"] == "enc.8x8_down.Conv_0.weight"
    assert key_map["sigmas"] == "sigmas"


def test_bad_config() -> None:
    cfg, _, _ = load_fixture("ddpm_vp")
    with pytest.raises(ValueError, match=r"expected 'ddpm'"):
        DDPM.from_config(dict(cfg["model"], name="ncsnpp"), cfg["data"])
    with pytest.raises(ValueError, match=r"unknown model config keys \['fir'\]"):
        DDPM.from_config(dict(cfg["model"], fir=True), cfg["data"])
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        DDPM.from_config(dict(cfg["model"], nonlinearity="tanh"), cfg["data"])
    with pytest.raises(ValueError, match=r"unsupported model\.normalization"):
        DDPM.from_config(dict(cfg["model"], normalization="InstanceNorm++"), cfg["data"])
