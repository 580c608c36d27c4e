"""The conditional digits demo end to end on a tiny network (the real one: benchmarks/RESULTS.md), and its measure
of class agreement on known inputs."""

from __future__ import annotations

import json
import math

import torch
from PIL import Image

from scoresde.cli import main
from scoresde.cli.conditional_demo import class_agreement, pick_setting, run_conditional_demo, saturated_fraction
from scoresde.cli.digits_demo import digit_classifier
from scoresde.data import load_digits16, preprocess

TINY = ("model.nf=8", "model.ch_mult=[1]", "model.attn_resolutions=[]", "model.num_scales=30",
        "training.n_iters=2", "training.snapshot_freq=2", "training.eval_freq=0", "training.batch_size=8",
        "training.snapshot_sampling=false", "training.log_freq=1", "training.snapshot_freq_for_preemption=2")
TINY_CLASSIFIER = ("classifier.nf=8", "classifier.ch_mult=[1]", "classifier.batch_size=4", "classifier.eval_num=4",
                   "classifier.eval_bins=1", "classifier.warmup=0")


def test_class_agreement_on_real_digits_and_on_wrong_requests() -> None:
    clf, _ = digit_classifier()
    test = load_digits16("test")
    x, y = preprocess(test.images[:200]), test.labels[:200].long()
    right = class_agreement(x, y, clf)
    assert right["fraction"] > 0.93 and right["n"] == 200
    wrong = class_agreement(x, (y + 1) % 10, clf)
    assert wrong["fraction"] < 0.05  # the same images requested as the next digit
    assert right["entropy_bits_per_class"] == wrong["entropy_bits_per_class"][1:] + wrong["entropy_bits_per_class"][:1]
    one = class_agreement(x[:4], torch.zeros(4, dtype=torch.long), clf)
    assert one["entropy_bits_per_class"][1:] == [None] * 9  # classes never requested
    predicted = clf.predict_proba(x[:4].flatten(1).numpy()).argmax(1)
    counts = torch.bincount(torch.from_numpy(predicted), minlength=10).double() / 4
    assert math.isclose(one["mean_entropy_bits"], -sum(p * math.log2(p) for p in counts.tolist() if p > 0))


def test_conditional_demo_writes_grids_and_metrics(tmp_path) -> None:
    metrics = run_conditional_demo(tmp_path, overrides=TINY, classifier_steps=1, classifier_overrides=TINY_CLASSIFIER,
                                   per_class=2, sampler_steps=2, cfg_scales=(0.0, 1.0), classifier_scales=(1.0,),
                                   num_inpaint=12, inpaint_steps=21, frames=3, ode_tol=1e-2, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["steps"] == 2 and saved["noise_conditional_classifier"]["step"] == 1
    assert [(r["guidance"], r["scale"], r.get("options")) for r in saved["guidance"]] == [
        ("cfg", 0.0, {}), ("cfg", 1.0, {}), ("cfg", 1.0, {"threshold": 99.5}),
        ("cfg", 1.0, {"rescale": 0.7, "threshold": 99.5}), ("classifier", 1.0, None)]
    for row in saved["guidance"]:
        assert 0 <= row["fraction"] <= 1 and row["n"] == 20 and len(row["entropy_bits_per_class"]) == 10
        assert all(0 <= e <= 1 for e in row["entropy_bits_per_class"])  # 2 samples per class: at most 1 bit
        assert 0 <= row["saturated_fraction"] <= 1 and row["logit_fd"] >= 0 and len(row["logit_fd_per_class"]) == 10
    # network evaluations of DPM-Solver++(2M), 2 steps: CFG with w != 0 is one batched 2B-row call per step (2 each)
    assert [row["nfe"] for row in saved["guidance"]] == [2, 4, 4, 4, 2]
    assert saved["best_cfg_scale"] in (0.0, 1.0) and saved["best_cfg_reason"].startswith("picked w=")
    ip = saved["inpainting"]
    assert ip["n"] == 12 and 0 <= ip["agreement_with_true_label"] <= 1 and ip["nfe"] == 42  # 21 steps, P + C
    assert saved["interpolation"]["frames"] == 3 and metrics["interpolation"]["encode_nfe"] > 0
    size = lambda name: Image.open(tmp_path / name).size  # noqa: E731 (16 px images enlarged 4x, padding 4)
    assert size("grid.png") == (2 * 64 + 3 * 4, 10 * 64 + 11 * 4)  # one row per digit
    assert size("inpainting.png")[1] == 3 * 64 + 4 * 4  # originals, top halves given, completions
    assert size("interpolation.png") == (3 * 64 + 4 * 4, 64 + 2 * 4)


def test_demo_conditional_option_errors(tmp_path, capsys) -> None:
    assert main(["demo", "--toy", "--conditional", "--out", str(tmp_path)]) == 2
    assert "two different demos" in capsys.readouterr().err
    assert main(["demo", "--classifier", "x", "--out", str(tmp_path)]) == 2
    assert "add --conditional" in capsys.readouterr().err


def test_pick_setting_cannot_be_won_by_speckle() -> None:
    """A setting with the best class rate but more saturated pixels (or logits farther from real digits) than w = 0
    is excluded; among the rest the highest class rate wins, ties to the smaller w."""
    row = lambda w, frac, sat, fd, **opt: {"guidance": "cfg", "scale": w, "options": opt, "fraction": frac,  # noqa: E731
                                           "saturated_fraction": sat, "logit_fd": fd}
    rows = [row(0.0, 0.80, 0.001, 10.0), row(1.0, 0.90, 0.001, 9.0), row(3.0, 1.00, 0.050, 30.0),
            row(3.0, 0.97, 0.000, 12.0, threshold=99.5), row(5.0, 0.95, 0.0005, 8.0, rescale=0.7),
            row(5.0, 0.95, 0.0, 7.0), {"guidance": "classifier", "scale": 9.0, "fraction": 1.0,
                                       "saturated_fraction": 0.0, "logit_fd": 0.0}]
    best, why = pick_setting(rows)
    assert (best["scale"], best["options"]) == (5.0, {}) and "w=3 threshold=99.5" in why and "excluded: w=3," in why
    best, _ = pick_setting(rows, fd_slack=0.25)  # w=3 threshold's logit FD 12 <= 10 x 1.25 now qualifies
    assert (best["scale"], best["options"]) == (3.0, {"threshold": 99.5})
    assert pick_setting(rows[:1])[0] is rows[0]


def test_saturated_fraction_counts_pixels_beyond_the_margin() -> None:
    x = torch.tensor([[[[-1.0, 1.05], [1.2, -1.5]]]])
    assert saturated_fraction(x) == 0.5 and saturated_fraction(x, margin=0.0) == 0.75
