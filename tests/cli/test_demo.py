"""The demo runs end to end through the command line and its numbers mean what they say."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from scoresde.cli import main
from scoresde.cli.demo import DemoConfig, run_demo


def test_demo_command_writes_png_and_metrics(tmp_path, capsys) -> None:
    code = main(["demo", "--toy", "--out", str(tmp_path), "--steps", "300", "--num-samples", "400", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "metrics.json" in printed and "samples.png" in printed
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["samplers"]) == {"learned/pc", "learned/ode", "exact/pc", "exact/ode"}
    with Image.open(tmp_path / "samples.png") as im:
        assert im.size[0] == 3 * im.size[1] - 3 * 18  # three square panels under an 18-pixel title bar
    # The exact score is the oracle: its ODE likelihood equals the true NLL and its samples match the law.
    lk = metrics["likelihood"]
    assert abs(lk["exact_nll_per_dim"] - lk["true_nll_per_dim"]) < 0.05
    assert metrics["samplers"]["exact/ode"]["energy_distance_ratio"] < 5


def test_trained_model_is_close_to_the_truth(tmp_path) -> None:
    """A short training already gives a likelihood within 0.1 nats/dim of the truth and the right weights."""
    metrics = run_demo(tmp_path, DemoConfig(steps=1500, num_samples=1000, num_likelihood=300), progress=False)
    lk = metrics["likelihood"]
    assert abs(lk["learned_nll_per_dim"] - lk["true_nll_per_dim"]) < 0.1
    assert metrics["samplers"]["learned/ode"]["max_weight_error"] < 0.06
    assert metrics["samplers"]["learned/ode"]["energy_distance_ratio"] < 10


@pytest.mark.parametrize("argv", [["demo", "--steps", "0"], ["demo", "--steps", "x"], ["nope"]])
def test_bad_arguments_exit_nonzero(argv, capsys) -> None:
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    assert "error" in capsys.readouterr().err
