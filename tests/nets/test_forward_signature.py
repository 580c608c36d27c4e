"""Every network is ``forward(x, noise_labels, class_labels=None)``.

``noise_labels`` (the time / noise-level input) may be passed by keyword or positionally with the same result;
the networks have no class conditioning yet, so ``class_labels`` other than None is a ``ValueError`` naming the
network and ``class_labels`` (rather than being silently ignored).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch

from scoresde.nets.ddpm import DDPM
from scoresde.nets.ncsn import NCSN, NCSNv2
from scoresde.nets.ncsnpp import NCSNpp
from scoresde.nets.toy import ToyMLP

SMALL_UNET = dict(image_size=8, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0)

# name -> (build the network, an input batch of 2, its noise labels)
CASES: dict[str, tuple[Callable[[], torch.nn.Module], Callable[[], torch.Tensor], torch.Tensor]] = {
    "NCSNpp": (lambda: NCSNpp(**SMALL_UNET, fir=True, progressive_input="residual", embedding_type="fourier",
                              scale_by_sigma=True, centered=False),
               lambda: torch.rand(2, 3, 8, 8), torch.tensor([0.5, 20.0])),
    "NCSNpp-positional": (lambda: NCSNpp(**SMALL_UNET, scale_by_sigma=True),
                          lambda: torch.randn(2, 3, 8, 8), torch.tensor([3.0, 900.0])),
    "DDPM": (lambda: DDPM(**{**SMALL_UNET, "nf": 32}), lambda: torch.randn(2, 3, 8, 8), torch.tensor([5, 999])),
    "NCSN": (lambda: NCSN(in_channels=3, nf=4, num_scales=3), lambda: torch.rand(2, 3, 8, 8), torch.tensor([0, 2])),
    "NCSNv2": (lambda: NCSNv2("ncsnv2_64", nf=4, num_scales=5, sigma_max=10.0),
               lambda: torch.rand(2, 3, 8, 8), torch.tensor([0, 4])),
    "ToyMLP": (lambda: ToyMLP(dim=2, hidden=16, depth=2), lambda: torch.randn(2, 2), torch.tensor([10.0, 900.0])),
}


def _build(case: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    make_net, make_x, noise_labels = CASES[case]
    torch.manual_seed(0)
    net = make_net().eval()
    with torch.no_grad():  # non-zero output layers, so that equal outputs are not trivially zero
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net, make_x(), noise_labels


@pytest.mark.parametrize("case", list(CASES))
def test_signature(case: str) -> None:
    net, _, _ = _build(case)
    params = list(inspect.signature(net.forward).parameters.values())
    assert [p.name for p in params[:3]] == ["x", "noise_labels", "class_labels"]
    assert params[2].default is None
    # further conditioning inputs (augment_labels of NCSNpp/DDPM) are keyword-only and default to None
    assert all(p.kind is p.KEYWORD_ONLY and p.default is None for p in params[3:])
    assert {p.name for p in params[3:]} <= {"augment_labels"}


@pytest.mark.parametrize("case", list(CASES))
def test_keyword_noise_labels_equal_positional(case: str) -> None:
    net, x, noise_labels = _build(case)
    with torch.no_grad():
        positional = net(x, noise_labels)
        keyword = net(x, noise_labels=noise_labels)
        explicit_none = net(x, noise_labels, class_labels=None)
    assert positional.shape == x.shape and positional.abs().max() > 0
    torch.testing.assert_close(keyword, positional, rtol=0, atol=0)
    torch.testing.assert_close(explicit_none, positional, rtol=0, atol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_class_labels_rejected(case: str) -> None:
    net, x, noise_labels = _build(case)
    name = type(net).__name__
    with pytest.raises(ValueError, match=rf"^{name} was built class-unconditional .*got class_labels$") as info:
        net(x, noise_labels, class_labels=torch.tensor([1, 3]))
    message = str(info.value)
    assert "\n" not in message and "model.num_classes" in message
    with pytest.raises(ValueError, match=rf"^{name} .*class_labels"):  # also positionally
        net(x, noise_labels, torch.tensor([0, 0]))
