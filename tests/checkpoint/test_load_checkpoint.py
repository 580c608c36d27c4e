"""``scoresde.load_checkpoint`` on every kind of path (run folder, checkpoint directory, Score SDE ``.pth``, PSLD
``.ckpt``), the model it returns (with ``step`` and the typed ``config``), the old metadata name, the project's own
presets as configs, and one clear error per unreadable file."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

import scoresde
from scoresde.checkpoint import (
    CorruptCheckpointError,
    IncompatibleCheckpointError,
    NotACheckpointError,
    load_checkpoint,
    load_psld_checkpoint,
    load_score_sde_checkpoint,
    load_training_state,
    save_checkpoint,
    save_training_checkpoint,
)
from scoresde.checkpoint.state_dict import to_original_state_dict
from scoresde.cli import main
from scoresde.config import Config, build_network, build_score_model, load_config
from scoresde.models import PhaseSpaceScoreModel, ScoreModel

TOY = load_config("toy/gaussian_mixture", ["model.hidden=16", "model.depth=2"]).to_dict()
PSLD_SMALL = ["model.nf=16", "model.ch_mult=[1,2]", "model.num_res_blocks=1", "model.attn_resolutions=[8]",
              "data.image_size=16", "model.dropout=0.0", "data.num_channels=1"]


def _random_net(config: dict | str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(config)


def _reference(config: dict | str, net: torch.nn.Module) -> torch.nn.Module:
    """A freshly built model for ``config`` holding ``net``'s weights: what a loader must reproduce."""
    model = build_score_model(config)
    model.net.load_state_dict(net.state_dict())
    return model


def _assert_same_outputs(model: torch.nn.Module, reference: torch.nn.Module, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(*shape, generator=g), torch.tensor([0.01, 0.3, 0.7, 1.0])
    with torch.no_grad():
        out = model(x, t)
        assert torch.equal(out, reference(x, t)) and torch.isfinite(out).all()


def _train_checkpoint(run: Path, step: int, kind: str = "checkpoint") -> tuple[torch.nn.Module, torch.nn.Module]:
    """A training checkpoint of the toy config at ``step``: (online net, EMA net), both distinct random nets."""
    net, ema = _random_net(TOY, step), _random_net(TOY, step + 1)
    optimizer = torch.optim.Adam(net.parameters())
    save_training_checkpoint(run, step, kind=kind, net=net, ema_state=ema.state_dict(), optimizer=optimizer,
                             config=TOY, trainer_state={"ema_num_updates": step})
    return net, ema


@pytest.fixture()
def run_folder(tmp_path: Path) -> tuple[Path, dict]:
    """A run folder with checkpoints at steps 10 and 20 and a torn newest one (30), plus the run's config.json."""
    run = tmp_path / "run"
    nets = {step: _train_checkpoint(run, step) for step in (10, 20)}
    _train_checkpoint(run, 30, kind="preempt")
    ckpts = run / "checkpoints"
    shutil.copy(ckpts / "checkpoint_20" / "ema.safetensors", ckpts / "preempt_30" / "ema.safetensors")  # torn
    (run / "config.json").write_text(json.dumps(TOY))  # the run's own config, beside checkpoints/
    return run, nets


def test_run_folder_gives_the_newest_valid_checkpoint(run_folder) -> None:
    """Fix 8(c): a run folder failed with 'format=None' (its config.json was read as checkpoint metadata)."""
    run, nets = run_folder
    with pytest.warns(UserWarning, match=r"skipping unusable checkpoint .*preempt_30.*torn"):
        model = scoresde.load_checkpoint(run)
    assert isinstance(model, ScoreModel) and model.step == 20
    assert isinstance(model.config, Config) and model.config == load_config(TOY)
    _assert_same_outputs(model, _reference(TOY, nets[20][1]), (4, 2))  # the EMA weights
    with pytest.warns(UserWarning, match=r"preempt_30"):  # torn in its EMA file: refused for the online weights too
        online = scoresde.load_checkpoint(str(run), use_ema=False)
    _assert_same_outputs(online, _reference(TOY, nets[20][0]), (4, 2))


def test_checkpoint_directory_and_the_old_metadata_name(run_folder) -> None:
    run, nets = run_folder
    directory = run / "checkpoints" / "checkpoint_10"
    model = load_checkpoint(directory)
    assert model.step == 10 and sorted(os.listdir(directory)) == [
        "checkpoint.json", "ema.safetensors", "model.safetensors", "optimizer.pt", "trainer.pt"]
    _assert_same_outputs(model, _reference(TOY, nets[10][1]), (4, 2))
    # a checkpoint written before the rename: its metadata file was config.json
    os.replace(directory / "checkpoint.json", directory / "config.json")
    old = load_checkpoint(directory)
    assert old.step == 10 and load_training_state(directory).step == 10
    _assert_same_outputs(old, _reference(TOY, nets[10][1]), (4, 2))
    # re-saving writes the new name, which then takes precedence
    save_checkpoint(directory, nets[20][0], TOY, step=11, ema=nets[20][1].state_dict())
    assert load_checkpoint(directory).step == 11


def test_score_sde_pth_with_a_config(tmp_path: Path) -> None:
    net, ema = _random_net(TOY, 0), _random_net(TOY, 1)
    shadow = [p.detach().clone() for p in ema.parameters() if p.requires_grad]
    path = tmp_path / "checkpoint_7.pth"
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()},
                "ema": {"decay": 0.999, "num_updates": 7, "shadow_params": shadow}, "step": 7}, path)
    model = scoresde.load_checkpoint(path, config=TOY)
    assert model.step == 7 and model.config == load_config(TOY)
    _assert_same_outputs(model, _reference(TOY, ema), (4, 2))
    with pytest.raises(ValueError, match=r"is a Score SDE checkpoint, which stores no config: pass config="):
        scoresde.load_checkpoint(path)
    with pytest.raises(ValueError, match="carries its own config"):
        scoresde.load_checkpoint(tmp_path, config=TOY)


def test_psld_lightning_ckpt_with_a_config(tmp_path: Path) -> None:
    cfg = load_config("psld/cifar10", PSLD_SMALL).to_dict()
    net, ema = _random_net(cfg, 0), _random_net(cfg, 1)
    state = {f"score_fn.{k}": v for k, v in to_original_state_dict(net, prefix="").items()}
    state.update({f"ema_score_fn.{k}": v for k, v in to_original_state_dict(ema, prefix="").items()})
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.6.0", "state_dict": state}, path)
    model = scoresde.load_checkpoint(path, config=cfg)
    assert isinstance(model, PhaseSpaceScoreModel) and model.step == 1234 and model.config == load_config(cfg)
    _assert_same_outputs(model, _reference(cfg, ema), (4, 2, 16, 16))
    online = load_psld_checkpoint(path, cfg, use_ema=False)
    _assert_same_outputs(online, _reference(cfg, net), (4, 2, 16, 16))
    with pytest.raises(ValueError, match=r"is a PSLD Lightning checkpoint, which stores no config: pass config="):
        scoresde.load_checkpoint(path)


def test_score_sde_checkpoint_with_one_of_our_presets(tmp_path: Path) -> None:
    """Fix 8(f): only the original presets were found by name."""
    net, ema = _random_net("digits/vp_ddpmpp", 0), _random_net("digits/vp_ddpmpp", 1)
    theirs = to_original_state_dict(ema, prefix="")
    shadow = [theirs[k] for k in _trainable(ema)]  # the original model.parameters() order
    path = tmp_path / "checkpoint_5.pth"
    torch.save({"model": to_original_state_dict(net), "ema": {"shadow_params": shadow, "num_updates": 5}, "step": 5},
               path)
    model = load_score_sde_checkpoint(path, "digits/vp_ddpmpp")
    assert model.step == 5 and model.config == load_config("digits/vp_ddpmpp")
    _assert_same_outputs(model, _reference("digits/vp_ddpmpp", ema), (4, 1, 16, 16))


def _trainable(net: torch.nn.Module) -> dict[str, str]:
    """``{original key: our key}`` of the trainable parameters (what the original EMA keeps)."""
    params = dict(net.named_parameters())
    return {o: ours for o, ours in net.original_key_map().items() if ours in params and params[ours].requires_grad}


def test_run_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="has no checkpoints yet"):
        scoresde.load_checkpoint(tmp_path / "empty")
    run = tmp_path / "run"
    _train_checkpoint(run, 5)
    (run / "checkpoints" / "checkpoint_5" / "model.safetensors").write_bytes(b"\0" * 10)
    (run / "checkpoints" / "checkpoint_5" / "ema.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(IncompatibleCheckpointError, match=r"none of the checkpoints of run folder .* loads: "
                       r"checkpoint_5: CorruptCheckpointError: .*ema\.safetensors is corrupt"):
        scoresde.load_checkpoint(run)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scoresde.load_checkpoint(tmp_path / "nothing")


def test_key_report_names_what_does_not_match(tmp_path: Path) -> None:
    net = _random_net(TOY, 0)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    first = next(iter(net.state_dict()))
    del state[f"module.{first}"]
    state["module.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"model": state, "step": 1}, path)
    wider = load_config(TOY, ["model.hidden=32"]).to_dict()
    with pytest.raises(IncompatibleCheckpointError) as info:
        scoresde.load_checkpoint(path, config=wider, use_ema=False)
    report = info.value.report
    assert report.missing == [first] and report.unexpected == ["extra.weight"] and report.mismatched
    assert "\n" not in str(info.value).split("\n  the config builds")[0]  # the key report is one line
    assert f"missing keys (1): {first}; unexpected keys (1): extra.weight; shape mismatches" in str(info.value)


# ---- files that are not loadable checkpoints ---------------------------------------------------------------------


@pytest.fixture()
def pth(tmp_path: Path) -> Path:
    net = _random_net(TOY, 0)
    path = tmp_path / "good.pth"
    torch.save({"model": net.state_dict(), "step": 1}, path)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_truncated_and_corrupt_files(pth: Path, tmp_path: Path) -> None:
    data = pth.read_bytes()
    for name, cut in (("half", data[: len(data) // 2]), ("head", data[:100]), ("empty", b"")):
        path = _write(tmp_path / f"{name}.pth", cut)
        with pytest.raises(CorruptCheckpointError, match=r"is truncated or corrupt"):
            scoresde.load_checkpoint(path, config=TOY)
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": {"a": torch.zeros(10)}}, legacy, _use_new_zipfile_serialization=False)
    path = _write(tmp_path / "legacy_cut.pth", legacy.read_bytes()[:40])
    with pytest.raises(CorruptCheckpointError, match=r"is truncated or corrupt"):
        load_score_sde_checkpoint(path, TOY)


def test_files_that_are_not_checkpoints(tmp_path: Path) -> None:
    text = _write(tmp_path / "notes.pth", b"hello, this is not a checkpoint\n")
    with pytest.raises(NotACheckpointError, match=r"is not a checkpoint \(not a torch/zip/pickle file\)"):
        scoresde.load_checkpoint(text, config=TOY)
    archive = tmp_path / "other.pth"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("readme.txt", "hi")
    with pytest.raises(NotACheckpointError, match=r"a zip archive without torch\.save's data\.pkl"):
        load_score_sde_checkpoint(archive, TOY)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"model": {}}, protocol=4))
    with pytest.raises(NotACheckpointError, match=r"a pickle that torch.load\(weights_only=True\) cannot read"):
        load_psld_checkpoint(plain, "psld/cifar10")
    tensors = tmp_path / "model.safetensors"
    save_checkpoint(tmp_path / "d", _random_net(TOY, 0), TOY)
    shutil.copy(tmp_path / "d" / "model.safetensors", tensors)
    with pytest.raises(NotACheckpointError, match="safetensors file"):
        scoresde.load_checkpoint(tensors, config=TOY)
    with pytest.raises(IncompatibleCheckpointError, match="neither a Score SDE checkpoint"):
        scoresde.load_checkpoint(_save(tmp_path / "t.pt", torch.zeros(3)), config=TOY)
    with pytest.raises(NotACheckpointError, match="is a directory, not a checkpoint file"):
        load_score_sde_checkpoint(tmp_path / "d", TOY)


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def test_cli_import_reports_a_bad_file_on_one_line(pth: Path, tmp_path: Path, capsys) -> None:
    """Fix 8(p): a truncated .pth printed a 23-line traceback; a non-checkpoint was 'refused by torch.load'."""
    truncated = _write(tmp_path / "cut.pth", pth.read_bytes()[: pth.stat().st_size // 2])
    text = _write(tmp_path / "notes.pth", b"not a checkpoint\n")
    not_a_checkpoint = "is not a checkpoint (not a torch/zip/pickle file)"
    for path, message in ((truncated, "is truncated or corrupt"), (text, not_a_checkpoint),
                          (tmp_path, "is a directory, not a checkpoint file")):
        for fmt in ("auto", "score-sde", "psld"):
            code = main(["import", "--checkpoint", str(path), "--config", "toy/gaussian_mixture", "--workdir",
                         str(tmp_path / f"run_{fmt}"), "--format", fmt])
            err = capsys.readouterr().err
            assert code == 2 and err.count("\n") == 1 and message in err, (fmt, err)
            assert not (tmp_path / f"run_{fmt}").exists()
