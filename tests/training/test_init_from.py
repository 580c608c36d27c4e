"""Fine-tuning: ``scoresde train --init-from`` starts a new run from another run's (or an original) weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scoresde.cli import main
from scoresde.config import load_config
from scoresde.training import Trainer
from scoresde.training.state import read_init_weights

TINY = ["--set", "model.hidden=16", "--set", "model.depth=1", "--set", "training.batch_size=32",
        "--set", "training.snapshot_freq=5", "--set", "training.eval_freq=0", "--set", "training.log_freq=5",
        "--set", "training.snapshot_sampling=false", "--set", "training.snapshot_freq_for_preemption=5"]
REF = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("pre") / "run"
    assert main(["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *TINY,
                 "--set", "training.n_iters=10"]) == 0
    return run


def test_fine_tuning_starts_from_the_weights_and_resumes_like_any_run(pretrained, tmp_path, capsys) -> None:
    from scoresde.checkpoint.native import load_training_state

    source = load_training_state(pretrained / "checkpoints" / "checkpoint_10")
    cfg = load_config("toy/two_moons", [a for a in TINY if a != "--set"] + ["training.n_iters=4", "optim.lr=1e-4"])
    trainer = Trainer(cfg, tmp_path / "direct")
    assert "step 10" in trainer.init_from(pretrained)
    assert trainer.step == 0 and trainer.ema.num_updates == 10  # fresh optimizer and step, the EMA continues
    for k, v in trainer.model.net.state_dict().items():
        torch.testing.assert_close(v, source.model_state[k], rtol=0, atol=0)
    for k, v in trainer.ema.shadow.items():
        torch.testing.assert_close(v, source.ema_state[k], rtol=0, atol=0)
    record = json.loads((tmp_path / "direct" / "init_from.json").read_text())
    assert record["source_step"] == 10 and record["source"] == str(pretrained.resolve())

    run = tmp_path / "ft"
    argv = ["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *TINY,
            "--set", "training.n_iters=5", "--init-from", str(pretrained)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "initialised from scoresde checkpoint" in out and "starting at step 0 of 5" in out
    # the same command again (e.g. after a crash, or with a longer schedule) resumes; --init-from is then ignored
    assert main([*argv[:-2], "--set", "training.n_iters=8", *argv[-2:]]) == 0
    out = capsys.readouterr().out
    assert "ignored" in out and "resuming at step 5 of 8" in out
    with pytest.raises(ValueError, match="already has checkpoints"):
        Trainer(load_config(str(run / "config.json")), run).init_from(pretrained)


def test_a_checkpoint_of_another_architecture_is_refused_naming_the_keys(pretrained, tmp_path, capsys) -> None:
    run = tmp_path / "wide"
    code = main(["train", "--config", "toy/two_moons", "--workdir", str(run), "--quiet", *TINY,
                 "--set", "model.hidden=32", "--init-from", str(pretrained)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "does not match ToyMLP" in err and "inp.weight (16, 34) vs (32, 34) expected" in err
    assert not (run / "checkpoints").exists() and not (run / "init_from.json").exists()
    assert main(["train", "--config", "toy/two_moons", "--workdir", str(tmp_path / "x"), "--quiet", *TINY,
                 "--init-from", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_an_original_score_sde_checkpoint_initialises_the_network(tmp_path) -> None:
    if not (REF / "ddpmpp_vp.ckpt.pt").exists():
        pytest.skip("../shared/reference is absent")
    from scoresde import load_score_sde_checkpoint
    from scoresde.config import build_network, resolve_config

    config = resolve_config(REF / "ddpmpp_vp.config.json")
    init = read_init_weights(REF / "ddpmpp_vp.ckpt.pt", build_network(config))
    assert init.step == 3 and init.ema_num_updates > 0
    for use_ema, state in ((True, init.ema_state), (False, init.model_state)):
        model = load_score_sde_checkpoint(REF / "ddpmpp_vp.ckpt.pt", config, use_ema=use_ema)
        for k, v in model.net.state_dict().items():
            torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"missing keys|unexpected keys"):
        read_init_weights(REF / "ncsn.ckpt.pt", build_network(config))
