"""Tiny random diffusers ``UNet2DModel``\\ s in the two layouts scoresde reads, written with ``save_pretrained``.

Everything is offline: the networks are built here with random weights (perturbed away from diffusers' zero
initialisations, so that every tensor matters) and saved to ``tmp_path``. ``diffusers`` is a test-only dependency
(the ``dev`` extra); without it these tests are skipped.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from tests.metrics.conftest import _one_thread  # noqa: F401 (autouse: tiny networks, one thread)

diffusers = pytest.importorskip("diffusers")
# diffusers imports its classes lazily (several seconds on first use): resolve them at collection, not in a test
_CLASSES = (diffusers.UNet2DModel, diffusers.DDPMPipeline, diffusers.ScoreSdeVePipeline, diffusers.DDPMScheduler,
            diffusers.DDIMScheduler, diffusers.DPMSolverMultistepScheduler, diffusers.ScoreSdeVeScheduler)


def randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Add ``scale * N(0, 1)`` to every parameter (diffusers zero-initialises nothing we rely on, but GroupNorm
    weights of 1 and biases of 0 would hide a swapped weight/bias)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return module


def ddpm_unet(**overrides) -> diffusers.UNet2DModel:
    """The ``google/ddpm-cifar10-32`` layout, scaled down: 16x16, two levels, attention at 8x8."""
    torch.manual_seed(0)
    config = dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                  attention_head_dim=None, norm_eps=1e-6, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1,
                  dropout=0.0)
    config.update(overrides)
    return randomise(diffusers.UNet2DModel(**config).eval())


def ncsnpp_unet(**overrides) -> diffusers.UNet2DModel:
    """The ``google/ncsnpp-*`` layout (skip blocks, FIR, Fourier embedding), scaled down: 8x8, two levels, attention
    at 4x4; 128 channels so that diffusers' 32-group attention norms equal NCSN++'s min(C/4, 32)."""
    torch.manual_seed(0)
    config = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(128, 128), layers_per_block=1,
                  down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
                  up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"), attention_head_dim=None, norm_eps=1e-6,
                  norm_num_groups=None, mid_block_scale_factor=math.sqrt(2.0), time_embedding_type="fourier",
                  center_input_sample=True, dropout=0.0)
    config.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return randomise(diffusers.UNet2DModel(**config).eval())


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a - b| / |b|`` (Frobenius norms)."""
    return float((a - b).detach().norm() / b.detach().norm())
