"""torch.compile of the networks does not change their outputs (no custom kernels: inductor sees plain ops)."""

from __future__ import annotations

import pytest
import torch

from scoresde.nets import NCSNpp

SMALL = dict(image_size=16, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)


@pytest.mark.parametrize("fir", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_compiled_ncsnpp_matches_eager(fir: bool) -> None:
    torch.manual_seed(0)
    net = NCSNpp(**SMALL, fir=fir, progressive_input="residual" if fir else "none").eval()
    for p in net.parameters():  # non-zero output layers (init_scale=0 would make the comparison trivial)
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 3, 16, 16)
    noise_labels = torch.tensor([0.5, 20.0])
    with torch.no_grad():
        eager = net(x, noise_labels)
        # Keywords (and the class_labels=None check in forward) trace like the positional call.
        compiled = torch.compile(net)(x, noise_labels=noise_labels, class_labels=None)
    scale = eager.abs().max()
    assert scale > 1e-3
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-4 * float(scale))
