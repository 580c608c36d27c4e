"""Per-sample seeding: a sample is the same whatever batch or rank draws it; rounds resume and shard exactly."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scoresde import sample
from scoresde.evaluation import (
    batch_coupled,
    check_protocol,
    gather_rounds,
    generate_images,
    per_sample_generators,
    round_ranges,
    run_rounds,
)
from scoresde.numerics.seeding import sample_seed
from scoresde.sampling import SAMPLERS
from scoresde.sdes import CLD, PSLD, VESDE, VPSDE

SHAPE = (1, 4, 4)


def _gaussian_score(sde, std0=0.5):
    """Exact score of N(0, std0^2) data under ``sde`` (elementwise, so batch-size independent to the bit)."""
    def score(x, t):
        mean_coef = sde.marginal_prob(torch.ones_like(x), t)[0]
        std = sde.marginal_prob(torch.zeros_like(x), t)[1].view(-1, *[1] * (x.dim() - 1))
        return -x / (mean_coef**2 * std0**2 + std**2)
    return score


def _net_score():
    """A tiny conv net: batched convolutions, as a real score network."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(4, 1, 3, padding=1))
    return lambda x, t: net(x) * 0.1 - x


def _draw(sde, score, sampler, options, batch_size, n=8, seed=3):
    chunks = []
    for start in range(0, n, batch_size):
        idx = range(start, min(start + batch_size, n))
        with per_sample_generators(seed, idx) as g:
            chunks.append(sample(sde, score, (len(idx), *SHAPE), sampler, generator=g, **options))
    return torch.cat(chunks)


@pytest.mark.parametrize(("sde", "options"), [
    (VPSDE(N=40), {"predictor": "reverse_diffusion", "corrector": "none"}),
    (VPSDE(N=40), {"predictor": "ancestral_sampling", "corrector": "none", "denoise": False}),
    (VESDE(N=20, sigma_max=5.0), {"predictor": "euler_maruyama", "corrector": "ald", "snr": 0.1}),
])
def test_samples_identical_for_batch_sizes_3_and_8(sde, options):
    for score, exact in ((_gaussian_score(sde), True), (_net_score(), False)):
        a, b = _draw(sde, score, "pc", options, 3), _draw(sde, score, "pc", options, 8)
        assert torch.isfinite(a).all() and not torch.allclose(a[0], a[1])
        if exact:
            assert torch.equal(a, b)
        else:  # batched convolutions may round differently by batch size
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not batch_coupled("pc", options)


@pytest.mark.parametrize(("sde", "sampler", "options"), [
    (PSLD(N=20), "sscs", {}),
    (CLD(N=20), "sscs", {"grid": "quadratic"}),
    (VPSDE(N=20), "ddim", {"eta": 1.0}),
    (VESDE(N=20, sigma_max=5.0), "ddim", {"eta": 0.5, "steps": 7}),
])
def test_sscs_and_ddim_do_not_couple_a_batch(sde, sampler, options):
    """SSCS and DDIM treat samples independently: with per-sample seeds a sample is the same in a batch of 3 or 8,
    and the coupling flag says so (it said SSCS couples a batch: 8h)."""
    score = (lambda x, t: -x) if sde.has_auxiliary else _gaussian_score(sde)  # elementwise: exact at any batch size
    a, b = _draw(sde, score, sampler, options, 3), _draw(sde, score, sampler, options, 8)
    assert torch.isfinite(a).all() and not torch.allclose(a[0], a[1])
    assert torch.equal(a, b)
    assert not batch_coupled(sampler, options) and not batch_coupled(sampler, {})


def test_coupling_flag_is_the_registry_s():
    for name, spec in SAMPLERS.items():
        for options in ({}, {"corrector": "none"} if name == "pc" else {}):
            assert batch_coupled(name, options) == spec.is_coupled(options)
    assert batch_coupled("pc", {}) and not batch_coupled("pc", {"corrector": "ald"})  # langevin is pc's default
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        batch_coupled("nope", {})


def test_noise_streams_are_per_sample_even_for_coupled_samplers():
    """The Langevin corrector couples a batch through its step size, but each sample's draws are still its own."""
    draws = {}
    for n in (3, 5):
        with per_sample_generators(0, range(n)) as g:
            draws[n] = (torch.randn(n, 2, 3, generator=g), torch.rand((n, 4), generator=g))
    torch.testing.assert_close(draws[5][0][:3], draws[3][0], rtol=0, atol=0)
    torch.testing.assert_close(draws[5][1][:3], draws[3][1], rtol=0, atol=0)
    with per_sample_generators(7, [4]) as g:
        own = torch.randn(1, 2, 3, generator=g)
    with per_sample_generators(7, [9, 4]) as g:
        assert torch.equal(torch.randn(2, 2, 3, generator=g)[1], own[0])
    assert batch_coupled("pc", {"corrector": "langevin"}) and batch_coupled("ode", {})
    assert sample_seed(0, 1) != sample_seed(1, 0) and sample_seed(0, 1) == sample_seed(0, 1)


def test_per_sample_generator_errors():
    with per_sample_generators(0, range(3)) as g:
        with pytest.raises(ValueError, match="batch first"):
            torch.randn(2, 3, generator=g)
        with pytest.raises(NotImplementedError, match="randint"):
            torch.randint(0, 5, (3,), generator=g)
        torch.randn(3, generator=torch.Generator())  # other generators are left alone
    with pytest.raises(ValueError, match="non-negative"):
        sample_seed(-1, 0)


class _FakeRank(SimpleNamespace):
    """A rank of a ``world_size`` world whose barrier is a no-op (the ranks run one after the other)."""

    @property
    def is_main(self):
        return self.rank == 0

    def barrier(self):
        pass


@pytest.mark.filterwarnings("error::DeprecationWarning")  # 8o: generate_images passes generator=
def test_one_vs_two_ranks_and_resume(tmp_path):
    sde = VPSDE(N=30)
    score = _gaussian_score(sde)

    def compute(items):
        images, _ = generate_images(sde, score, SHAPE, items, seed=1, sampler="pc",
                                    options={"corrector": "none"}, batch_size=2, centered=True)
        return {"images": images.numpy()}

    one = tmp_path / "one"
    assert run_rounds(one, 7, 3, _FakeRank(rank=0, world_size=1), compute) == 3
    two = tmp_path / "two"
    done = [run_rounds(two, 7, 3, _FakeRank(rank=r, world_size=2), compute) for r in (1, 0)]
    assert done == [1, 2]
    a, b = gather_rounds(one, 7, 3), gather_rounds(two, 7, 3)
    np.testing.assert_array_equal(a["indices"], np.arange(7))
    np.testing.assert_array_equal(a["images"], b["images"])
    assert a["images"].dtype == np.uint8 and a["images"].shape == (7, *SHAPE)

    calls = []

    def crashing(items):
        calls.append(items)
        if items.start == 3:
            raise RuntimeError("crash")
        return compute(items)

    three = tmp_path / "three"
    with pytest.raises(RuntimeError):
        run_rounds(three, 7, 3, _FakeRank(rank=0, world_size=1), crashing)
    calls.clear()
    assert run_rounds(three, 7, 3, _FakeRank(rank=0, world_size=1), compute) == 2  # resumes at round 1
    np.testing.assert_array_equal(gather_rounds(three, 7, 3)["images"], a["images"])
    assert run_rounds(three, 9, 3, _FakeRank(rank=0, world_size=1), compute) == 1  # more samples: a new last round
    with pytest.raises(FileNotFoundError, match="round 3"):
        gather_rounds(three, 12, 3)
    assert [len(r) for r in round_ranges(7, 3)] == [3, 3, 1]


def test_protocol_mismatch_is_refused(tmp_path):
    env = _FakeRank(rank=0, world_size=1)
    check_protocol(tmp_path, {"seed": 0, "sampler": "pc"}, env)
    check_protocol(tmp_path, {"seed": 0, "sampler": "pc"}, env)
    with pytest.raises(ValueError, match="differs in seed"):
        check_protocol(tmp_path, {"seed": 1, "sampler": "pc"}, env)
