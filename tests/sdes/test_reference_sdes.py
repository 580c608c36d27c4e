"""The three scalar SDEs reproduce the Score SDE reference outputs in ``../shared/reference/sde_*.pt``."""

from __future__ import annotations

import pytest
import torch

from scoresde.sdes import VESDE, VPSDE, SubVPSDE
from tests.reference import assert_ulp_close, load_reference

CLASSES = {"VESDE": VESDE, "VPSDE": VPSDE, "subVPSDE": SubVPSDE}
# The same float32 ops in the same order as the reference: agreement to a few float32 ulps of the terms
# (drifts of O(10) that cancel to O(0.1) keep the absolute error of their terms).
RTOL, ATOL = 2e-6, 1e-5


def _build(name: str) -> tuple[dict, object]:
    ref = load_reference(f"sde_{name}.pt")
    assert ref["class"] == name
    return ref, CLASSES[name](**ref["params"])


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_forward_quantities(name: str) -> None:
    ref, sde = _build(name)
    out, x, t, z = ref["out"], ref["x"], ref["t"], ref["z"]
    assert sde.T == ref["T"]
    drift, diffusion = sde.sde(x, t)
    _close(drift, out["sde_drift"], "sde drift")
    _close(diffusion, out["sde_diffusion"], "sde diffusion")
    mean, std = sde.marginal_prob(x, t)
    _close(mean, out["marginal_mean"], "marginal mean")
    _close(std, out["marginal_std"], "marginal std")
    _close(sde.prior_logp(z), out["prior_logp"], "prior_logp")
    assert torch.equal(sde.timestep_index(t), out["discretize_timestep"])
    f, G = sde.discretize(x, t)
    _close(f, out["discretize_f"], "discretize f")
    _close(G, out["discretize_G"], "discretize G")


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_reverse_sde_and_probability_flow(name: str) -> None:
    ref, sde = _build(name)
    out, x, t, score = ref["out"], ref["x"], ref["t"], ref["score"]
    calls = []

    def score_fn(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        calls.append(t_)
        return score

    for prefix, pf in (("rev", False), ("pf", True)):
        rsde = sde.reverse(score_fn, probability_flow=pf)
        drift, diffusion = rsde.sde(x, t)
        _close(drift, out[f"{prefix}_sde_drift"], f"{prefix} drift")
        # The reference returns the python float 0. for the probability-flow diffusion; ours is a zero tensor.
        torch.testing.assert_close(diffusion, out[f"{prefix}_sde_diffusion"].expand_as(diffusion),
                                   rtol=RTOL, atol=ATOL)
        f, G = rsde.discretize(x, t)
        _close(f, out[f"{prefix}_discretize_f"], f"{prefix} discretize f")
        _close(G, out[f"{prefix}_discretize_G"], f"{prefix} discretize G")
    assert all(torch.equal(c, t) for c in calls)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_tables_and_prior_sample(name: str) -> None:
    ref, sde = _build(name)
    for key, table in ref["tables"].items():
        assert_ulp_close(getattr(sde, key), table, what=key)
    torch.manual_seed(ref["prior_seed"])
    sample = sde.prior_sampling(tuple(ref["x"].shape))
    assert torch.equal(sample, ref["out"]["prior_sample"])
    # With an explicit generator the draw is reproducible and independent of the global RNG.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    a = sde.prior_sampling((2, 3), generator=g1)
    torch.manual_seed(1)
    assert torch.equal(a, sde.prior_sampling((2, 3), generator=g2))
