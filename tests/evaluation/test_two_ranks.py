"""Two real gloo ranks (``torch.distributed``) write the same rounds as one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scoresde.evaluation import gather_rounds, generate_images, run_rounds
from scoresde.sdes import VPSDE
from scoresde.training.distributed import DistEnv


def _compute(items):
    sde = VPSDE(N=30)

    def score(x, t):  # N(0, 0.25) data: elementwise exact score
        mean, std = sde.marginal_prob(torch.ones_like(x), t)[0], sde.marginal_prob(torch.zeros_like(x), t)[1]
        return -x / (mean**2 * 0.25 + std.view(-1, 1, 1, 1) ** 2)

    images, _ = generate_images(sde, score, (1, 4, 4), items, seed=5, sampler="pc", options={"corrector": "none"},
                                batch_size=2, centered=True)
    return {"images": images.numpy()}


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    env = DistEnv(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
    run_rounds(Path(out), 9, 2, env, _compute)
    dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "two")), nprocs=2, join=True)
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    run_rounds(tmp_path / "one", 9, 2, env, _compute)
    two, one = gather_rounds(tmp_path / "two", 9, 2), gather_rounds(tmp_path / "one", 9, 2)
    np.testing.assert_array_equal(two["images"], one["images"])
    assert len(list((tmp_path / "two").glob("round_*.npz"))) == 5
