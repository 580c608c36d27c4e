"""The NCSN++ options that EDM's SongUNet needs (issue 23 item 5): Fourier features of the labels themselves
(``fourier_log=False``, fed ``c_noise``) and a noise embedding width of its own (``noise_channels``); the defaults
stay the original network's (tests/nets check those bit for bit)."""

from __future__ import annotations

import math

import pytest
import torch

from scoresde.nets import NCSNpp
from scoresde.nets.embeddings import GaussianFourierProjection

SMALL = dict(image_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0)


def test_fourier_of_labels_equals_fourier_of_log_of_exp() -> None:
    torch.manual_seed(0)
    a = NCSNpp(**SMALL, embedding_type="fourier", fourier_log=False).eval()
    torch.manual_seed(0)
    b = NCSNpp(**SMALL, embedding_type="fourier").eval()
    x, c = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.tensor([-1.3, 0.4], dtype=torch.float64)
    a, b = a.double(), b.double()
    with torch.no_grad():
        torch.testing.assert_close(a(x, c), b(x, c.exp()), rtol=1e-9, atol=1e-12)


def test_noise_channels_sets_the_embedding_width() -> None:
    net = NCSNpp(**SMALL, embedding_type="fourier", fourier_log=False, noise_channels=12, num_classes=3,
                 augment_dim=2)
    assert tuple(net.fourier_proj.W.shape) == (6,) and net.temb_dense0.in_features == 12
    assert tuple(net.label_embed.weight.shape) == (4, 12) and tuple(net.augment_embed.weight.shape) == (12, 2)
    assert NCSNpp(**SMALL, noise_channels=16).temb_dense0.in_features == 16  # positional
    assert NCSNpp(**SMALL).temb_dense0.in_features == 8
    assert NCSNpp(**SMALL, embedding_type="fourier").noise_channels == 16


def test_bad_options_are_one_line() -> None:
    with pytest.raises(ValueError, match="fourier_log=False needs embedding_type='fourier' and scale_by_sigma=False"):
        NCSNpp(**SMALL, embedding_type="fourier", fourier_log=False, scale_by_sigma=True)
    with pytest.raises(ValueError, match="fourier_log=False needs"):
        NCSNpp(**SMALL, fourier_log=False)
    with pytest.raises(ValueError, match=r"noise_channels must be an even integer >= 4 \(None: 8\), got 7"):
        NCSNpp(**SMALL, noise_channels=7)


def test_scale_first_is_the_same_function() -> None:
    proj = GaussianFourierProjection(8, scale=16.0).double()
    x = torch.tensor([0.3, -2.0], dtype=torch.float64)
    torch.testing.assert_close(proj(x, scale_first=True), proj(x), rtol=1e-12, atol=1e-12)
    arg = 2 * math.pi * x[:, None] * proj.W
    expected = torch.cat([torch.sin(arg), torch.cos(arg)], 1)
    torch.testing.assert_close(proj(x), expected.detach(), rtol=1e-12, atol=1e-12)
