"""``nfe=N``, a budget of network calls, for every fixed-step sampler: the calls a counting score function sees are
at most N and equal ``info.nfe``, the budget is not wasted (fewer than one step's calls left), and bad budgets are
one clear error."""

from __future__ import annotations

import pytest
import torch

from scoresde import sample
from scoresde.sampling import SAMPLERS
from scoresde.sdes import CLD, VESDE, VPSDE
from scoresde.toy import GaussianMixture

F64 = torch.float64

#: sampler -> [(options, calls one step costs: the most a budget may leave unspent + 1)]
CASES: dict[str, list[tuple[dict, int]]] = {
    "pc": [({}, 2), ({"corrector": "none"}, 1), ({"n_steps_each": 2, "predictor": "euler_maruyama",
                                                   "grid": "logSNR"}, 3), ({"predictor": "none"}, 1)],
    "sscs": [({}, 1), ({"denoise": False}, 1)],
    "ddim": [({}, 1), ({"denoise": True}, 1), ({"grid": "karras", "denoise": True}, 1)],
    "heun": [({}, 2), ({"denoise": False}, 2), ({"grid": "logSNR"}, 2)],
    "unipc": [({}, 1), ({"order": 3, "denoise": True}, 1), ({"grid": "karras", "denoise": True}, 1)],
    "dpm_solver": [({}, 1), ({"order": 3, "method": "multistep_taylor"}, 1),
                   ({"order": 3, "grid": "karras", "denoise": True}, 1),
                   ({"order": 3, "method": "singlestep"}, 1),
                   ({"order": 2, "method": "singlestep", "denoise": True}, 1),
                   ({"order": 3, "method": "singlestep", "grid": "time_quadratic"}, 1),
                   ({"algorithm": "sde-dpmsolver++"}, 1)],
}


def counting_score(score):
    """``(counted, calls)``: ``score`` that counts its calls in ``calls[0]`` (the network calls a sampler makes)."""
    calls = [0]

    def counted(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return score(x, t)

    return counted, calls


def _problem(name: str):
    if name == "sscs":  # phase space only
        return CLD(N=100), lambda z, t: -z, (4, 2)
    sde = VESDE(N=100) if name == "pc" else VPSDE(N=100)  # VP's Langevin step needs more than 20 steps
    return sde, GaussianMixture.example_2d().score_fn(sde), (4, 2)


def test_every_fixed_step_sampler_is_covered_and_takes_nfe() -> None:
    fixed = {name for name, spec in SAMPLERS.items() if spec.fixed_steps}
    assert fixed == set(CASES)
    assert all("nfe" in SAMPLERS[name].options() for name in fixed)


@pytest.mark.parametrize("name", list(CASES))
def test_counted_calls_stay_within_the_budget(name: str) -> None:
    sde, score, shape = _problem(name)
    for options, per_step in CASES[name]:
        for nfe in (7, 10, 20):
            counted, calls = counting_score(score)
            x, info = sample(sde, counted, shape, name, generator=torch.Generator().manual_seed(0), dtype=F64,
                             return_info=True, nfe=nfe, **options)
            label = f"{name} {options} nfe={nfe}: {calls[0]} calls"
            assert torch.isfinite(x).all(), label
            assert info.nfe == calls[0] <= nfe, label
            assert nfe - calls[0] < per_step, label
            assert info.options["nfe"] == nfe and info.options["steps"] is None, label


def test_budget_overrides_the_step_count_of_the_sde() -> None:
    """An SDE built with another N sets ``steps``; ``nfe`` takes its place instead of clashing with it."""
    sde = VPSDE(N=50)
    counted, calls = counting_score(GaussianMixture.example_2d().score_fn(sde))
    _, info = sample(sde, counted, (2, 2), "ddim", nfe=9, return_info=True)
    assert info.nfe == calls[0] == 9


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("ode", {"nfe": 20}, r"sampler 'ode' is adaptive and takes no nfe: its network calls follow from its "
                             r"tolerances rtol and atol \(for a budget use pc, sscs, ddim, heun, unipc, dpm_solver\)"),
        ("ddim", {"nfe": 10, "steps": 5}, r"pass steps, times or nfe \(a budget of network calls\), not nfe=10 with "
                                          r"steps"),
        ("ddim", {"nfe": 10, "times": torch.tensor([0.9, 0.1])}, r"not nfe=10 with times"),
        ("ddim", {"nfe": 1.5}, r"nfe must be a positive integer, got 1.5"),
        ("heun", {"nfe": 1, "denoise": False}, r"nfe=1 is too small for heun: its fewest steps cost 2 network calls"),
        ("pc", {"nfe": 1}, r"nfe=1 is too small for pc: its fewest steps cost 2 network calls"),
        ("pc", {"nfe": 10, "corrector": lambda *a: a}, r"nfe= needs a named predictor and corrector"),
        ("unipc", {"nfe": 2, "order": 3}, r"nfe=2 is too small for unipc of order 3: its fewest steps cost 3"),
        ("dpm_solver", {"nfe": 1, "method": "singlestep", "denoise": True},
         r"nfe=1 is too small for dpm_solver singlestep: its fewest steps cost 2 network calls"),
    ],
)
def test_bad_budgets_are_one_clear_error(name: str, options: dict, message: str) -> None:
    sde = VPSDE(N=100)
    with pytest.raises(ValueError, match=message):
        sample(sde, GaussianMixture.example_2d().score_fn(sde), (2, 2), name, **options)


def test_cli_sample_nfe(tmp_path, capsys) -> None:
    """``scoresde sample --nfe N`` spends the budget (the .npz records the counted NFE); with ``--steps`` or an
    adaptive sampler it is one error line."""
    import numpy as np

    from scoresde.cli import main

    workdir = tmp_path / "run"
    small = ["model.hidden=16", "model.depth=1", "model.num_scales=30", "training.batch_size=16", "training.n_iters=1",
             "training.snapshot_freq=1", "training.eval_freq=100", "training.snapshot_freq_for_preemption=100",
             "training.num_snapshot_samples=4", "training.snapshot_sampling=false"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--config", "toy/two_moons", "--workdir", str(workdir), "--quiet",
                     *[arg for item in small for arg in ("--set", item)]]) == 0
        for sampler, options, nfe in (("ddim", [], 7), ("dpm_solver", ["--set", "sampling.order=3", "--set",
                                                                         "sampling.dpm_method=singlestep"], 8)):
            out = tmp_path / f"{sampler}.npz"
            assert main(["sample", "--workdir", str(workdir), "--num", "4", "--sampler", sampler, "--nfe", str(nfe),
                         *options, "--out", str(out), "--quiet"]) == 0
            with np.load(out) as saved:
                assert int(saved["nfe"]) == nfe
        capsys.readouterr()
        for args, message in ((["--sampler", "ddim", "--steps", "5"], "pass --steps or --nfe, not both"),
                              (["--sampler", "ode"], "sampler 'ode' is adaptive and takes no nfe")):
            assert main(["sample", "--workdir", str(workdir), "--num", "2", "--nfe", "7", *args, "--quiet"]) != 0
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and message in err, err
    finally:
        torch.set_num_threads(threads)
