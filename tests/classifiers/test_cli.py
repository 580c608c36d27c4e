"""``scoresde train-classifier`` end to end on the built-in digits (tiny settings): files, the accuracy table,
loading the result, resuming, and its errors."""

from __future__ import annotations

import json

from scoresde.cli import main
from scoresde.models import ClassifierModel
from scoresde.sdes import VPSDE, same_sde
from scoresde.training.classifier import load_classifier

TINY = ["--set", "classifier.steps=2", "--set", "classifier.nf=4", "--set", "classifier.ch_mult=[1]",
        "--set", "classifier.batch_size=8", "--set", "classifier.eval_num=10", "--set", "classifier.eval_bins=2",
        "--set", "training.sde=vpsde", "--set", "model.num_scales=50"]


def test_train_classifier_cli(tmp_path, capsys):
    out = tmp_path / "clf"
    assert main(["train-classifier", "--config", "digits/vp_ddpmpp", "--workdir", str(out), "--quiet", *TINY]) == 0
    text = capsys.readouterr().out
    assert "stopped at step 2" in text and "| t | alpha/sigma | accuracy | NLL (nats) |" in text
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged] == [2] and logged[0]["loss"] > 0
    report = json.loads((out / "accuracy_by_time.json").read_text())
    assert report["step"] == 2 and len(report["accuracy_by_time"]) == 2
    assert all(row["n"] == 10 and 0 <= row["accuracy"] <= 1 for row in report["accuracy_by_time"])
    clf = load_classifier(out)  # the output folder or its checkpoint/
    assert isinstance(clf, ClassifierModel) and clf.num_classes == 10
    assert same_sde(clf.sde, VPSDE(N=50)) and clf.net.in_channels == 1
    # resuming with more steps continues from the checkpoint; other settings are refused
    assert main(["train-classifier", "--workdir", str(out), "--quiet", "--set", "classifier.steps=3"]) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    assert main(["train-classifier", "--workdir", str(out), "--quiet", "--set", "classifier.nf=8"]) == 2
    assert "other settings (nf)" in capsys.readouterr().err


def test_train_classifier_cli_errors(tmp_path, capsys):
    assert main(["train-classifier", "--workdir", str(tmp_path / "new"), "--quiet"]) == 2
    assert "pass --config" in capsys.readouterr().err
    assert main(["train-classifier", "--config", "toy/checkerboard", "--workdir", str(tmp_path / "toy"),
                 "--quiet"]) == 2
    assert "unlabelled" in capsys.readouterr().err
    assert main(["train-classifier", "--config", "digits/vp_ddpmpp", "--workdir", str(tmp_path / "x"), "--quiet",
                 "--set", "classifier.stepz=3"]) == 2
    assert "unknown config key classifier.stepz" in capsys.readouterr().err
