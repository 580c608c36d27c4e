"""Our DPM-Solver against the official implementation (LuChengTHU/dpm-solver, ``dpm_solver_pytorch.py``) on the
2-D Gaussian mixture with its exact float64 score: multistep orders 2 and 3 (``multistep_dpm_solver_third_update``,
the official ``lower_order_final`` rule) and the singlestep budget split "DPM-Solver-fast", on VP and sub-VP, on the
``time_uniform`` and ``logSNR`` grids. The official outputs are a stored fixture (``data/README.md`` says how they were
made); the official code is not on PyPI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde import sample
from scoresde.sampling.dpm_solver import fast_orders
from scoresde.sdes import VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture

from .test_nfe_budget import counting_score

F64 = torch.float64
FIXTURE = Path(__file__).parent / "data" / "dpm_solver_official.npz"
SDES = {"vp": VPSDE, "subvp": SubVPSDE}
GRIDS = {"time_uniform": "time_uniform", "logSNR": "logSNR"}


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    if not FIXTURE.is_file():
        pytest.skip(f"the official DPM-Solver outputs {FIXTURE} are missing (tests/sampling/data/README.md)")
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def _ours(official: dict, key: str, **options) -> tuple[torch.Tensor, int, int]:
    name, algorithm = key.split("/")[:2]
    sde = SDES[name](N=1000)
    score, calls = counting_score(GaussianMixture.example_2d().score_fn(sde))
    x, info = sample(sde, score, None, "dpm_solver", x_T=torch.from_numpy(official[f"{name}/x_T"]), dtype=F64,
                     return_info=True, algorithm=algorithm, eps=1e-3, **options)
    return x, info.nfe, calls[0]


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("algorithm", ["dpmsolver", "dpmsolver++"])
@pytest.mark.parametrize("order", [2, 3])
def test_multistep_equals_the_official_code(official, name: str, algorithm: str, order: int) -> None:
    """``order=3, method="multistep"`` is ``multistep_dpm_solver_third_update`` (measured max |diff| <= 2.3e-13), and
    order 2 still agrees; at 10 steps the official lower_order_final rule (steps < 10) lowers nothing."""
    for grid in GRIDS:
        for steps in (10, 20):
            key = f"{name}/{algorithm}/multistep/{order}/{grid}/{steps}"
            x, nfe, calls = _ours(official, key, order=order, method="multistep", grid=GRIDS[grid], steps=steps)
            assert nfe == calls == steps
            torch.testing.assert_close(x, torch.from_numpy(official[key]), rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("algorithm", ["dpmsolver", "dpmsolver++"])
def test_singlestep_budget_equals_dpm_solver_fast(official, name: str, algorithm: str) -> None:
    """``method="singlestep", nfe=N`` is the official ``DPM_Solver.sample(steps=N, method="singlestep")`` with N calls
    (every remainder of N modulo 2 and 3; measured max |diff| <= 4.5e-12); the Taylor-weighted multistep is not."""
    for order in (2, 3):
        for grid in GRIDS:
            for nfe in (10, 20, 21, 22):
                key = f"{name}/{algorithm}/singlestep/{order}/{grid}/{nfe}"
                x, info_nfe, calls = _ours(official, key, order=order, method="singlestep", grid=GRIDS[grid], nfe=nfe)
                assert info_nfe == calls == nfe, key
                torch.testing.assert_close(x, torch.from_numpy(official[key]), rtol=0, atol=1e-6, msg=key)
    key = f"{name}/{algorithm}/multistep/3/logSNR/20"
    taylor, _, _ = _ours(official, key, order=3, method="multistep_taylor", grid="logSNR", steps=20)
    assert float((taylor - torch.from_numpy(official[key])).abs().max()) > 1e-3


def test_fast_orders_spend_the_budget() -> None:
    """The official split: order 3 ends in [2, 1], [1] or [2] by nfe % 3; order 2 in [1] when nfe is odd."""
    assert fast_orders(20, 3) == [3] * 6 + [2]
    assert fast_orders(21, 3) == [3] * 6 + [2, 1]
    assert fast_orders(22, 3) == [3] * 7 + [1]
    assert fast_orders(3, 3) == [2, 1] and fast_orders(1, 3) == [1] and fast_orders(2, 3) == [2]
    assert fast_orders(7, 2) == [2, 2, 2, 1] and fast_orders(4, 1) == [1] * 4
    for nfe in range(1, 40):
        for order in (1, 2, 3):
            assert sum(fast_orders(nfe, order)) == nfe and max(fast_orders(nfe, order)) <= order
