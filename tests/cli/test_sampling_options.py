"""How ``scoresde sample``/``eval`` choose the sampler: the registry's names, ``--steps``, ``--set sampling.*`` only
(8b), typed ``--set`` values (8a), ``eval --sampler sscs`` (8i) and ``--step`` with its deprecated alias (8j)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

import scoresde
from scoresde.cli import build_parser, main
from scoresde.config import ConfigError, apply_overrides, load_config
from scoresde.sampling import SAMPLERS

SMALL = ["--set", "model.hidden=16", "--set", "model.depth=1", "--set", "training.batch_size=16",
         "--set", "training.n_iters=2", "--set", "training.snapshot_freq=2", "--set", "training.eval_freq=100",
         "--set", "training.snapshot_freq_for_preemption=100", "--set", "training.log_freq=1",
         "--set", "training.num_snapshot_samples=8"]


def _train(workdir, config, *sets):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--config", config, "--workdir", str(workdir), "--quiet", *SMALL, *sets]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vp_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vp") / "run"
    _train(workdir, "toy/two_moons", "--set", "model.num_scales=30")  # VP, PC with the Langevin corrector
    return workdir


@pytest.fixture(scope="module")
def psld_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("psld") / "run"
    _train(workdir, "toy/gaussian_mixture_psld", "--set", "model.num_scales=20")  # SSCS
    return workdir


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_sampler_choices_are_the_registry(command):
    parser = build_parser()
    for name in SAMPLERS:  # eval refused sscs (8i)
        assert parser.parse_args([command, "--workdir", "w", "--sampler", name]).sampler == name
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--workdir", "w", "--sampler", "bogus"])
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--workdir", "w", "--steps", "0"])


@pytest.mark.parametrize(("item", "message"), [
    ("model.num_scales=50", "for the number of sampling steps use --steps 50"),
    ("training.sde=vesde", "to sample another SDE, train or import a run with it"),
    ("data.centered=true", "to change them, train or import another run"),
    ("seed=4", "use --seed 4"),
])
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_set_outside_sampling_is_refused_not_ignored(vp_run, command, item, message, tmp_path, capsys):
    """8b: these were accepted and silently ignored (the model and its SDE come from the checkpoint)."""
    out = tmp_path / "s.npz"
    extra = ["--out", str(out)] if command == "sample" else ["--metrics", "bpd", "--tag", "t"]
    assert main([command, "--workdir", str(vp_run), "--quiet", "--set", item, *extra]) == 2
    err = _err(capsys)
    assert err.startswith(f"scoresde {command}: error: --set {item}: `scoresde {command}` takes sampling.* "
                          "overrides only") and message in err
    assert not out.exists() and not (vp_run / "eval" / "t").exists()


def test_eval_settings_are_options_not_set(vp_run, capsys):
    assert main(["eval", "--workdir", str(vp_run), "--quiet", "--set", "eval.batch_size=3"]) == 2
    assert "for the eval settings use --batch-size" in _err(capsys)


@pytest.mark.filterwarnings("error::DeprecationWarning")  # 8o: no generator passed positionally
def test_steps_and_a_corrector_named_none(vp_run, tmp_path, capsys):
    """--steps N runs N steps; sampling.corrector=none is the corrector 'none', not null (8a)."""
    out = tmp_path / "s.npz"
    assert main(["sample", "--workdir", str(vp_run), "--num", "6", "--steps", "25", "--set",
                 "sampling.corrector=none", "--out", str(out), "--quiet"]) == 0
    with np.load(out) as f:
        options = json.loads(str(f["options"]))
        assert int(f["nfe"]) == 25 and f["samples"].shape == (6, 2)
    assert options["steps"] == 25 and options["corrector"] == "none"
    capsys.readouterr()
    assert main(["sample", "--workdir", str(vp_run), "--steps", "25", "--sampler", "ode", "--quiet"]) == 2
    err = _err(capsys)
    assert "--steps needs a fixed-step sampler (pc, sscs, ddim" in err and "ode has no fixed number of steps" in err


def test_ddim_from_the_command_line(vp_run, tmp_path):
    """A sampler added to the registry is a --sampler choice with its options under --set sampling.*."""
    out = tmp_path / "ddim.npz"
    assert main(["sample", "--workdir", str(vp_run), "--num", "4", "--sampler", "ddim", "--steps", "10", "--set",
                 "sampling.eta=1.0", "--out", str(out), "--quiet"]) == 0
    with np.load(out) as f:
        options = json.loads(str(f["options"]))
        assert str(f["sampler"]) == "ddim" and int(f["nfe"]) == 10 + 1 and np.isfinite(f["samples"]).all()
    assert options["steps"] == 10 and options["eta"] == 1.0 and options["denoise"]  # the run's noise_removal: + 1


@pytest.mark.filterwarnings("error::DeprecationWarning")  # 8o: no generator passed positionally
def test_sscs_with_steps_on_sample_and_eval(psld_run, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["sample", "--workdir", str(psld_run), "--num", "5", "--sampler", "sscs", "--steps", "7",
                 "--out", str(out), "--quiet"]) == 0
    with np.load(out) as f:
        assert str(f["sampler"]) == "sscs" and int(f["nfe"]) == 7 + 1 and f["samples"].shape == (5, 2)  # + denoising
    # bits/dim samples nothing: sampler options are refused, not recorded (issue 26 item 7(h))
    assert main(["eval", "--workdir", str(psld_run), "--sampler", "sscs", "--steps", "7", "--metrics", "bpd",
                 "--bpd-num", "2", "--bpd-batch-size", "2", "--quiet"]) == 2
    assert "--metrics bpd samples nothing" in _err(capsys)


def test_step_selects_a_checkpoint_and_the_removed_alias_is_refused(vp_run, capsys):
    parser = build_parser()
    for command in ("sample", "likelihood", "eval"):
        assert parser.parse_args([command, "--workdir", "w", "--step", "4"]).checkpoint == 4
        assert capsys.readouterr().err == ""
        with pytest.raises(SystemExit) as exit_info:  # argparse's usage line and one error line: the 0.1 alias is gone
            parser.parse_args([command, "--workdir", "w", "--checkpoint", "4"])
        assert exit_info.value.code == 2 and "unrecognized arguments: --checkpoint 4" in capsys.readouterr().err
        assert "--checkpoint" not in _subcommands(parser)[command].format_help()
    assert main(["sample", "--workdir", str(vp_run), "--step", "2", "--num", "2", "--steps", "25", "--out",
                 str(vp_run / "two.npz"), "--quiet"]) == 0
    assert main(["sample", "--workdir", str(vp_run), "--step", "3", "--quiet"]) == 2
    assert "no checkpoint of step 3" in _err(capsys)


def test_set_values_follow_the_field_type():
    """8a: a str field keeps 'none', an Optional field maps none/null to None, others are type-checked."""
    base = load_config("toy/two_moons").to_dict()
    out = apply_overrides(base, ["sampling.corrector=none", "training.amp=none", "data.root=none",
                                 "data.category=null", "data.eval_split=123", "sampling.snr=0.2",
                                 "sampling.noise_removal=False", "seed=3", "model.hidden=none"])
    assert out["sampling"]["corrector"] == "none" and out["training"]["amp"] == "none"
    assert out["data"]["root"] is None and out["data"]["category"] is None and out["data"]["eval_split"] == "123"
    assert out["sampling"]["snr"] == 0.2 and out["sampling"]["noise_removal"] is False and out["seed"] == 3
    assert out["model"]["hidden"] is None  # model keys are untyped: JSON, then none/null
    assert load_config("toy/two_moons", ["sampling.corrector=none"]).sampling.corrector == "none"
    with pytest.raises(ConfigError, match=r"sampling\.snr must be of type float, got 'none'"):
        load_config("toy/two_moons", ["sampling.snr=none"])


@pytest.mark.parametrize(("device", "message"), [
    ("gpu", "unknown device 'gpu'; use cpu, cuda, cuda:N or mps"),
    pytest.param("cuda", "device 'cuda': this machine has no CUDA device (use --device cpu)",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")),
])
def test_a_device_this_machine_lacks_is_one_error_line_not_a_traceback(device, message, capsys):
    """Issue 26 item 7(g): --device cuda without a GPU and --device gpu were tracebacks at the first tensor."""
    for command in ("sample", "likelihood", "eval", "train"):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([command, "--workdir", "w", "--device", device])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"scoresde {scoresde.__version__}"


@pytest.mark.parametrize(("sampler", "setting"), [
    ("ddim", "sampling.snr=0.2"), ("dpm_solver", "sampling.corrector=ald"), ("ddim", "sampling.rtol=1e-3"),
    ("heun", "sampling.n_steps_each=2"),
])
def test_a_setting_the_chosen_sampler_does_not_take_is_refused(vp_run, capsys, sampler, setting):
    """Issue 26 item 7(e): with --sampler ddim/dpm_solver, --set sampling.snr/corrector/rtol/n_steps_each were accepted
    and ignored (while --sampler pc --set sampling.eta=0.5 was refused)."""
    assert main(["sample", "--workdir", str(vp_run), "--sampler", sampler, "--set", setting, "--num", "2",
                 "--quiet"]) == 2
    key = setting.split("=")[0]
    assert f"--set {key} does nothing for sampler '{sampler}'; its settings are: " in _err(capsys)
