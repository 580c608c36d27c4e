"""``scoresde fid-stats`` and ``scoresde eval`` end to end on a tiny digits run, with a locally generated Inception
weights file: every metric is written with its protocol, a lost round is recomputed identically (with another
batch size), and bad requests are one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from scoresde.cli import build_parser, main

TINY = ["--set", "model.nf=8", "--set", "model.ch_mult=[1]", "--set", "model.attn_resolutions=[]",
        "--set", "model.num_res_blocks=1", "--set", "model.num_scales=25", "--set", "training.batch_size=8",
        "--set", "training.n_iters=2", "--set", "training.snapshot_freq=2", "--set", "training.eval_freq=100",
        "--set", "training.snapshot_freq_for_preemption=100", "--set", "training.log_freq=1",
        "--set", "training.num_snapshot_samples=4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, inception_weights):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: set before the per-test one-thread fixture applies
    root = tmp_path_factory.mktemp("eval")
    workdir = root / "run"
    assert main(["train", "--config", "digits/vp_ddpmpp", "--workdir", str(workdir), "--quiet", *TINY]) == 0
    ref = root / "ref.npz"
    assert main(["fid-stats", "--dataset", "digits", "--split", "test", "--max-images", "12", "--batch-size", "5",
                 "--out", str(ref), "--inception-weights", str(inception_weights), "--quiet"]) == 0
    torch.set_num_threads(threads)
    return workdir, ref, inception_weights


def _eval(workdir, ref, weights, *extra):
    return main(["eval", "--workdir", str(workdir), "--num-samples", "12", "--round-size", "5", "--ref-stats",
                 str(ref), "--inception-weights", str(weights), "--kid-subset-size", "4", "--kid-subsets", "3",
                 "--bpd-num", "4", "--bpd-batch-size", "2", "--quiet", *extra])


def test_eval_writes_metrics_and_resumes_identically(run, capsys):
    """IS, KID and bits/dim (FID's 2048-d sqrtm takes ~16 s on one core: see the slow test below)."""
    workdir, ref, weights = run
    with np.load(ref) as f:
        assert f["features"].shape == (12, 2048) and int(f["num"]) == 12
    assert _eval(workdir, ref, weights, "--metrics", "is,kid,bpd", "--batch-size", "3") == 0
    assert "KID" in capsys.readouterr().out
    record = json.loads((workdir / "eval" / "metrics.json").read_text())
    tag_dir = workdir / "eval" / "step_2_pc_seed0"
    assert json.loads((tag_dir / "metrics.json").read_text()) == record
    m = record["metrics"]
    assert m["is"]["splits"] == 10 and m["is"]["mean"] >= 1 - 1e-9
    assert math.isfinite(m["kid"]["mean"]) and m["kid"]["subset_size"] == 4
    assert m["bpd"]["unit"] == "bits/dim" and m["bpd"]["num"] == 4 and m["bpd"]["stderr"] > 0
    assert record["num_samples"] == 12 and record["checkpoint_step"] == 2 and record["ema"] is True
    assert record["sampler"] == "pc" and record["sampler_options"]["corrector"] == "none"
    assert record["sampler_options"]["steps"] == 25  # the SDE's N, resolved (not null)
    assert record["nfe"]["mean"] == 25 and record["eps"] == 1e-3 and record["denoise"] is True
    assert record["code_version"] and not record["batch_coupled"]
    assert record["settings"]["num_samples"] == 12 and record["settings"]["kid_subset_size"] == 4
    assert "fpe_times" not in record["settings"] and record["settings"]["bpd_num"] == 4
    assert len(record["reference_stats"]["sha256"]) == 64 and record["reference_stats"]["num"] == 12

    lost = tag_dir / "samples" / "round_000001.npz"
    with np.load(lost) as f:
        before = f["images"].copy()
    lost.unlink()
    assert _eval(workdir, ref, weights, "--metrics", "is,kid,bpd", "--batch-size", "4") == 0
    with np.load(lost) as f:
        np.testing.assert_array_equal(f["images"], before)  # per-sample seeds: the batch size does not matter
    again = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert again["metrics"]["is"]["mean"] == pytest.approx(m["is"]["mean"], rel=1e-6)
    assert again["metrics"]["bpd"] == m["bpd"]


def test_eval_steps_are_recorded_in_the_protocol(run, capsys):
    """--steps N runs N steps (VP reverse diffusion needs N > beta_max = 20) and is part of the protocol: its rounds
    go to their own folder by default."""
    workdir, ref, weights = run
    assert _eval(workdir, ref, weights, "--metrics", "is", "--steps", "21", "--step", "2") == 0
    tag_dir = workdir / "eval" / "step_2_pc_steps21_seed0"
    record = json.loads((tag_dir / "metrics.json").read_text())
    assert record["sampler_options"]["steps"] == 21 and record["nfe"]["mean"] == 21  # the run has 25 scales
    assert json.loads((tag_dir / "samples" / "protocol.json").read_text())["sampler_options"]["steps"] == 21
    assert main(["eval", "--workdir", str(workdir), "--metrics", "is", "--sampler", "ode", "--steps", "5"]) == 2
    assert "ode has no fixed number of steps" in capsys.readouterr().err


def test_bits_per_dim_records_no_sampler(run, capsys):
    """Issue 26 item 7(h): `eval --metrics bpd` recorded sampler pc and num_samples 50000 though nothing is sampled;
    its record and folder name hold only what bits/dim used, and sampler options are refused."""
    workdir = run[0]
    assert main(["eval", "--workdir", str(workdir), "--metrics", "bpd", "--bpd-num", "2", "--bpd-batch-size", "2",
                 "--quiet"]) == 0
    record = json.loads((workdir / "eval" / "step_2_seed0" / "metrics.json").read_text())
    assert "(step 2); wrote" in capsys.readouterr().out
    assert not {"sampler", "sampler_options", "eps", "denoise", "num_samples", "nfe"} & set(record), sorted(record)
    assert set(record["settings"]) == {"metrics", "seed", "bpd_split", "bpd_num", "bpd_batch_size", "bpd_trace",
                                       "bpd_probes"}
    assert record["metrics"]["bpd"]["num"] == 2
    for extra in (["--sampler", "ode"], ["--steps", "21"], ["--set", "sampling.corrector=none"]):
        assert main(["eval", "--workdir", str(workdir), "--metrics", "bpd", *extra, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "--metrics bpd samples nothing" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_eval_fid(run):
    workdir, ref, weights = run
    assert _eval(workdir, ref, weights, "--metrics", "fid", "--batch-size", "6", "--tag", "fid") == 0
    record = json.loads((workdir / "eval" / "fid" / "metrics.json").read_text())
    assert math.isfinite(record["metrics"]["fid"]) and record["metrics"]["fid"] > 0


def test_eval_errors_are_one_line(run, tmp_path, capsys):
    workdir, ref, weights = run
    assert main(["eval", "--workdir", str(workdir), "--metrics", "fid", "--quiet"]) == 2
    assert "need reference statistics" in capsys.readouterr().err
    assert _eval(workdir, ref, weights, "--metrics", "is", "--seed", "1", "--tag", "step_2_pc_seed0") == 2
    assert "differs in seed" in capsys.readouterr().err
    no_feats = tmp_path / "nofeats.npz"
    assert main(["fid-stats", "--dataset", "digits", "--max-images", "2", "--no-features", "--out", str(no_feats),
                 "--inception-weights", str(weights), "--quiet"]) == 0
    assert _eval(workdir, no_feats, weights, "--metrics", "kid") == 2
    assert "no features for KID" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--workdir", "x", "--metrics", "fid,bogus"])
    help_text = build_parser().format_help()
    assert "eval" in help_text and "fid-stats" in help_text


def test_a_missing_optional_dependency_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """Issue 26 item 7(g): fid-stats / eval --metrics is without torch-fidelity were a 20-line ImportError traceback."""
    import sys

    for name in [m for m in sys.modules if m == "torch_fidelity" or m.startswith("torch_fidelity.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import torch_fidelity now raises ImportError
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    code = main(["fid-stats", "--dataset", "digits", "--max-images", "4", "--out", str(tmp_path / "s.npz"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'scoresde[metrics]'" in err
