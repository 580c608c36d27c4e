"""CLD's mixed score: a Gaussian reference score plus the network's residual (Dockhorn et al. 2022, §3.2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scoresde.losses import sde_loss
from scoresde.models import PhaseSpaceScoreModel
from scoresde.models.phase_space_model import reference_score
from scoresde.sdes import CLD, PSLD
from scoresde.toy import GaussianMixture
from scoresde.toy.phase_space_mixture import PhaseSpaceMixture


class Zero(nn.Module):
    """A network that predicts zero noise: the mixed model is then its reference score alone."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return z.new_zeros(z.shape[0], self.out_channels)


@pytest.mark.parametrize("sde", [PSLD(), CLD(), PSLD(score_matching="dsm")], ids=["psld", "cld", "psld-dsm"])
def test_reference_is_the_exact_score_of_standard_normal_data(sde) -> None:
    gaussian = PhaseSpaceMixture(GaussianMixture([1.0], [[0.0, 0.0]], [torch.eye(2).tolist()]), sde)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 4, generator=g, dtype=torch.float64) * 2
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.99 + 0.01
    torch.testing.assert_close(reference_score(sde, z, t, "all", 1.0), gaussian.score(z, t), rtol=1e-9, atol=1e-9)


def test_momentum_reference_is_clds_formula() -> None:
    sde = CLD()  # HSM: kernel from x_0 fixed and m_0 ~ N(0, gamma M): CLD's var(t, 0, gamma M)
    z = torch.randn(16, 4, dtype=torch.float64)
    t = torch.linspace(0.01, 1.0, 16, dtype=torch.float64)
    expected = torch.cat([torch.zeros(16, 2, dtype=torch.float64), -z[:, 2:] / sde.kernel_cov(t)[:, 1, 1, None]], 1)
    torch.testing.assert_close(reference_score(sde, z, t, "momentum", 0.0), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("blocks", "channels"), [("all", 4), ("momentum", 2)])
def test_mixed_score_needs_no_training_for_gaussian_data(blocks: str, channels: int) -> None:
    sde = CLD()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    draws = {"t": torch.rand(20000, generator=g, dtype=torch.float64) * 0.99 + 0.01,
             "noise": torch.randn(20000, 4, generator=g, dtype=torch.float64)}
    plain = PhaseSpaceScoreModel(Zero(channels), sde, blocks=blocks)
    mixed = PhaseSpaceScoreModel(Zero(channels), sde, blocks=blocks, mixed_score=True, mixed_data_var=1.0)
    exact = PhaseSpaceMixture(GaussianMixture([1.0], [[0.0, 0.0]], [torch.eye(2).tolist()]), sde).score_fn()
    loss = {name: float(sde_loss(m, sde, x, blocks=blocks, **draws))
            for name, m in (("plain", plain), ("mixed", mixed), ("exact", exact))}
    if blocks == "all":  # the reference is the exact score of N(0, I) data: the minimum of the loss
        assert loss["mixed"] == pytest.approx(loss["exact"], rel=1e-12)
    assert loss["mixed"] < 0.5 * loss["plain"]
    assert "mixed_score=True" in repr(mixed) and mixed.with_net(Zero(channels)).mixed_score


def test_mixed_score_options_are_validated_and_built_from_the_config() -> None:
    with pytest.raises(ValueError, match="mixed_data_var must be"):
        PhaseSpaceScoreModel(Zero(4), CLD(), mixed_score=True, mixed_data_var=0.0)
    from scoresde.config import load_config
    from scoresde.training.build import build_model

    model = build_model(load_config("toy/gaussian_mixture_cld", ["model.mixed_score=true", "model.blocks=momentum"]))
    assert model.mixed_score and model.mixed_data_var == 0.0 and model.blocks == "momentum"
    small = ["model.nf=16", "model.ch_mult=[1]", "model.attn_resolutions=[]"]
    model = build_model(load_config("digits/psld_ddpmpp", ["model.mixed_score=true", "model.mixed_data_var=0.25",
                                                           *small]))
    assert model.mixed_score and model.mixed_data_var == 0.25 and model.net.out_channels == 2
