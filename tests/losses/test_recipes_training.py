"""The recipes in a run: config keys (training.objective, loss_weighting, time_distribution, p_mean, p_std,
min_snr_gamma; model.preconditioning, model.sigma_data), compute_loss routing, the trainer's time draw and exact
resumption of an EDM-recipe run."""

from __future__ import annotations

import pytest
import torch

from scoresde.config import ConfigError, load_config
from scoresde.losses import edm_loss, flow_matching_loss, sde_loss
from scoresde.losses.weighting import draw_loss_times
from scoresde.numerics.times import draw_times
from scoresde.training import Trainer
from scoresde.training.build import build_model, check_objective, compute_loss, training_times

SMALL = ["model.hidden=32", "model.depth=1", "training.batch_size=32", "training.n_iters=8",
         "training.snapshot_freq=4", "training.snapshot_freq_for_preemption=2", "training.eval_freq=0",
         "training.snapshot_sampling=false", "training.log_freq=2", "optim.warmup=2"]
EDM_RECIPE = ["model.preconditioning=edm", "model.sigma_data=0.6", "training.objective=edm"]


def _cfg(*extra: str):
    return load_config("toy/checkerboard", [*SMALL, *extra])


def test_default_route_and_times_are_score_sdes() -> None:
    cfg = _cfg()
    model = build_model(cfg)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(training_times(cfg, model.sde, 8, torch.Generator().manual_seed(1)),
                       draw_times(8, model.sde, cfg.training.eps, torch.Generator().manual_seed(1)))
    assert torch.equal(compute_loss(cfg, model, x, generator=torch.Generator().manual_seed(2)),
                       sde_loss(model, model.sde, x, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("extra", [[], ["training.loss_weighting=min_snr", "training.min_snr_gamma=2",
                                        "training.time_distribution=logit_normal", "training.p_std=0.8"]])
def test_edm_objective_routes_to_edm_loss(extra: list[str]) -> None:
    cfg = _cfg(*EDM_RECIPE, *extra)
    model = build_model(cfg)
    check_objective(cfg, model)
    assert model.precond.sigma_data == 0.6
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    t = cfg.training
    times = training_times(cfg, model.sde, 8, torch.Generator().manual_seed(1))
    want_times = draw_loss_times(t.time_distribution or "lognormal", 8, model.sde, eps=t.eps, mean=t.p_mean,
                                 std=t.p_std, generator=torch.Generator().manual_seed(1))
    assert torch.equal(times, want_times)
    got = compute_loss(cfg, model, x, t=times, noise=torch.ones_like(x))
    want = edm_loss(model, model.sde, x, weighting=t.loss_weighting or "edm", time_distribution="uniform",
                    sigma_data=0.6, gamma=t.min_snr_gamma, t=times, noise=torch.ones_like(x))
    assert torch.equal(got, want)


def test_flow_matching_objective_routes_to_its_loss() -> None:
    cfg = _cfg("training.sde=rectified_flow", "training.objective=flow_matching")
    model = build_model(cfg)
    check_objective(cfg, model)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(compute_loss(cfg, model, x, generator=torch.Generator().manual_seed(3)),
                       flow_matching_loss(model, model.sde, x, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("extra, message", [
    (["training.objective=edm", "training.likelihood_weighting=true"], "use training.loss_weighting='likelihood'"),
    (["model.sigma_data=0.5"], "model.sigma_data is read by model.preconditioning='edm'"),
    (["training.objective=flow_matching", "model.sigma_data=0.5"], "this run has none of them"),
])
def test_objective_refusals(extra: list[str], message: str) -> None:
    cfg = _cfg(*extra)
    with pytest.raises(ValueError, match=message):
        check_objective(cfg, build_model(cfg))


def test_config_refusals_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"unknown training\.objective 'karras'; valid values are: dsm, edm, "
                                          r"flow_matching"):
        _cfg("training.objective=karras")
    with pytest.raises(ConfigError, match=r"training\.time_distribution='lognormal' applies to training\.objective"):
        _cfg("training.time_distribution=lognormal")
    with pytest.raises(ValueError, match=r"unknown model\.preconditioning 'karras'"):
        build_model(_cfg("model.preconditioning=karras"))


def test_edm_recipe_run_resumes_exactly(tmp_path) -> None:
    full = Trainer(_cfg(*EDM_RECIPE), tmp_path / "full")
    full.train()
    first = Trainer(_cfg(*EDM_RECIPE), tmp_path / "resumed")
    first.train(max_steps=5)  # checkpoints at 2, 4; step 5 is lost
    second = Trainer(_cfg(*EDM_RECIPE), tmp_path / "resumed")
    assert second.resume() and second.step == 4
    second.train()
    for key, value in full.model.net.state_dict().items():
        torch.testing.assert_close(second.model.net.state_dict()[key], value, rtol=0, atol=0)
