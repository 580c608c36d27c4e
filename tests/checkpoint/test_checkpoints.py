"""Original checkpoints (errors, config sources, safe loading) and scoresde's own format (round trip, atomicity)."""

from __future__ import annotations

import collections
import functools
import json
import os
import pickle
import re
from pathlib import Path

import pytest
import safetensors.torch
import torch

from scoresde.checkpoint import (
    CorruptCheckpointError,
    IncompatibleCheckpointError,
    UnsafeCheckpointError,
    convert_original_checkpoint,
    load_checkpoint,
    load_score_sde_checkpoint,
    load_training_state,
    remap_optimizer_state,
    save_checkpoint,
)
from scoresde.config import build_network, config_from_dict
from tests.reference import require_reference


@functools.cache
def _config(name: str) -> dict:
    return json.loads(require_reference(f"{name}.config.json").read_text())


def _ckpt(name: str) -> Path:
    return require_reference(f"{name}.ckpt.pt")


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 16, 16, generator=gen), torch.tensor([0.05, 0.7])


# ---- original checkpoints ---------------------------------------------------------------------------------


def test_config_sources_agree(tmp_path: Path) -> None:
    """A dict, a .json path and an original-style .py file give the same model."""
    config = _config("ncsnpp_ve")
    json_path = tmp_path / "c.json"
    json_path.write_text(json.dumps(config))
    lines = ["def get_config():", "  config = ml_collections.ConfigDict()"]
    for section, values in config.items():
        if not isinstance(values, dict):
            lines.append(f"  config.{section} = {values!r}")
            continue
        lines.append(f"  config.{section} = {section}_ = ml_collections.ConfigDict()")
        lines += [f"  {section}_.{key} = {value!r}" for key, value in values.items()]
    lines.append("  return config")
    py_path = tmp_path / "configs" / "ve" / "tiny.py"
    py_path.parent.mkdir(parents=True)
    py_path.write_text("import ml_collections\n\n" + "\n".join(lines) + "\n")
    x, t = _inputs()
    scores = []
    for source in (config, json_path, str(py_path)):
        model = load_score_sde_checkpoint(_ckpt("ncsnpp_ve"), source)
        assert model.step == 3 and model.config == config_from_dict(config)
        with torch.no_grad():
            scores.append(model(x, t))
    assert torch.equal(scores[0], scores[1]) and torch.equal(scores[0], scores[2])


def test_model_and_ema_weights_differ() -> None:
    x, t = _inputs()
    with torch.no_grad():
        ema = load_score_sde_checkpoint(_ckpt("ddpmpp_vp"), _config("ddpmpp_vp"))(x, t)
        online = load_score_sde_checkpoint(_ckpt("ddpmpp_vp"), _config("ddpmpp_vp"), use_ema=False)(x, t)
    assert not torch.allclose(ema, online)


@pytest.mark.parametrize("ckpt, config, guess", [
    ("ddpm_vp", "ncsnpp_ve", "sinusoidal embedding"),
    ("ncsnpp_ve", "ddpmpp_vp", "Fourier embedding"),
    ("ncsn", "ncsnv2", "ncsn \\(NCSNv1"),
    ("ncsnv2", "ddpm_vp", "ncsnv2"),
])
def test_checkpoint_of_another_architecture(ckpt: str, config: str, guess: str) -> None:
    with pytest.raises(IncompatibleCheckpointError, match=r"(missing|unexpected) keys") as info:
        load_score_sde_checkpoint(_ckpt(ckpt), _config(config))
    assert "the checkpoint looks like" in str(info.value)
    assert re.search(guess, str(info.value)), str(info.value)


def test_shape_mismatch_names_the_keys() -> None:
    config = _config("ncsnpp_ve")
    wider = {**config, "model": {**config["model"], "nf": 32}}
    with pytest.raises(IncompatibleCheckpointError, match=r"shape mismatches \(\d+\): all_modules\.0\.W "
                                                          r"\(16,\) vs \(32,\) expected"):
        load_score_sde_checkpoint(_ckpt("ncsnpp_ve"), wider)
    ncsn = _config("ncsn")
    with pytest.raises(IncompatibleCheckpointError, match=r"shape mismatches.*embed\.weight"):
        load_score_sde_checkpoint(_ckpt("ncsn"), {**ncsn, "model": {**ncsn["model"], "num_scales": 11}})


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    ckpt = torch.load(_ckpt("ddpm_vp"), weights_only=True)
    ckpt["model"]["module.extra.weight"] = torch.zeros(1)
    del ckpt["model"]["module.all_modules.3.Conv_0.bias"]
    path = tmp_path / "broken.pth"
    torch.save(ckpt, path)
    with pytest.raises(IncompatibleCheckpointError, match=r"missing keys \(1\): all_modules\.3\.Conv_0\.bias"
                                                          r"(.|\n)*unexpected keys \(1\): extra\.weight"):
        load_score_sde_checkpoint(path, _config("ddpm_vp"), use_ema=False)
    del ckpt["ema"]
    torch.save(ckpt, path)
    with pytest.raises(IncompatibleCheckpointError, match="no 'ema' entry; pass use_ema=False"):
        load_score_sde_checkpoint(path, _config("ddpm_vp"))


class _Payload:
    """Unpickling this would create a file: ``weights_only=True`` must refuse it."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_loading_never_executes_code_from_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": _Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"refused by torch.load\(weights_only=True\), nothing in it "
                                                    r"was executed: it contains code-executing globals "
                                                    r"\(__builtin__\.getattr"):
        load_score_sde_checkpoint(path, _config("ncsn"))
    assert not marker.exists()


class _Call:
    """Unpickling this calls ``fn(*args)``: a shell command, ``exec`` of Python code."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("form", ["zip", "pickle", "pickle-protocol-0"])
@pytest.mark.parametrize(("fn", "name"), [(os.system, f"{os.name}.system"), (exec, "exec")])
def test_every_code_executing_global_is_unsafe_in_every_format(tmp_path: Path, form: str, fn, name: str) -> None:
    """os.system (posix.system / nt.system) and builtins.exec in torch.save's zip, a plain pickle (protocol 4, which
    torch's weights-only reader cannot even parse) and a protocol-0 pickle (no PROTO opcode to sniff) are all
    UnsafeCheckpointError naming the global (the issue: os.system was 'not a torch checkpoint'); nothing runs."""
    from scoresde.checkpoint import load_weights_only

    marker = tmp_path / "executed"
    payload = {"model": {}, "payload": _Call(fn, f"touch {marker}" if fn is os.system else
                                            f"open({str(marker)!r}, 'w').close()")}
    path = tmp_path / "evil.pth"
    if form == "zip":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=0 if form == "pickle-protocol-0" else 4)
    with pytest.raises(UnsafeCheckpointError, match=rf"code-executing globals \([\w.]*{name}\)") as info:
        load_weights_only(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_pickle_globals_reads_names_without_running_them() -> None:
    from scoresde.checkpoint.files import pickle_globals

    data = pickle.dumps({"a": collections.OrderedDict(), "b": _Call(os.system, "true")}, protocol=4)
    assert pickle_globals(data) == ["collections.OrderedDict", f"{os.name}.system"]
    assert pickle_globals(b"not a pickle") is None


# ---- scoresde's format ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ncsnpp_ve", "ncsnv2"])
def test_conversion_round_trip(tmp_path: Path, name: str) -> None:
    """original -> scoresde format -> reload: identical tensors and identical outputs, for both weight sets."""
    out = convert_original_checkpoint(_ckpt(name), _config(name), tmp_path / "converted")
    assert sorted(os.listdir(out)) == ["checkpoint.json", "ema.safetensors", "model.safetensors", "optimizer.pt"]
    x, t = _inputs()
    for use_ema in (True, False):
        original = load_score_sde_checkpoint(_ckpt(name), _config(name), use_ema=use_ema)
        ours = load_checkpoint(out, use_ema=use_ema)
        step, our_step, config = original.step, ours.step, ours.config
        assert our_step == step == 3 and config == config_from_dict(_config(name)) and ours.config is config
        for (key, a), (key_b, b) in zip(original.net.state_dict().items(), ours.net.state_dict().items(),
                                        strict=True):
            assert key == key_b and a.dtype == b.dtype and torch.equal(a, b), key
        with torch.no_grad():
            assert torch.equal(original(x, t), ours(x, t))
    assert ours.net.sigmas.dtype == torch.float64


def test_optimizer_state_is_reindexed_to_our_parameter_order() -> None:
    config, ckpt = _config("ncsnpp_ve"), torch.load(_ckpt("ncsnpp_ve"), weights_only=True)
    net = build_network(config)
    key_map = net.original_key_map()
    params = dict(net.named_parameters())
    original_params = [k.removeprefix("module.") for k in ckpt["model"] if key_map[k.removeprefix("module.")] in params]
    ours = list(params)
    assert [key_map[k] for k in original_params] != ours  # the orders really differ
    fake = {"state": {i: {"exp_avg": torch.full((1,), float(i))} for i in range(len(original_params))},
            "param_groups": [{"lr": 1e-3, "params": list(range(len(original_params)))}]}
    remapped = remap_optimizer_state(net, ckpt["model"], fake)
    assert remapped["param_groups"][0]["params"] == list(range(len(ours)))
    for i, key in enumerate(original_params):
        assert remapped["state"][ours.index(key_map[key])]["exp_avg"].item() == i


def test_training_state_round_trip_with_a_real_optimizer(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(5, 3)).square().sum().backward()
    opt.step()
    ema = {k: v + 1 for k, v in net.state_dict().items()}
    save_checkpoint(tmp_path, net, {"model": {"name": "toy"}}, step=7, ema=ema, optimizer=opt)
    state = load_training_state(tmp_path)
    assert state.step == 7 and state.config == {"model": {"name": "toy"}}
    for key, value in net.state_dict().items():
        assert torch.equal(state.model_state[key], value) and torch.equal(state.ema_state[key], ema[key])
    fresh = torch.optim.Adam(net.parameters(), lr=1e-3)
    fresh.load_state_dict(state.optimizer_state)
    for p in net.parameters():
        assert torch.equal(fresh.state[p]["exp_avg"], opt.state[p]["exp_avg"])
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_torn_checkpoint_is_refused(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "a", net, {}, step=1)
    save_checkpoint(tmp_path / "b", net, {}, step=2)
    os.replace(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(CorruptCheckpointError, match=r"a/model\.safetensors is corrupt: its sha256 differs"):
        load_training_state(tmp_path / "a")
    # a checkpoint written before checksums were recorded: the step stamps still catch it
    meta = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    del meta["sha256"]
    (tmp_path / "a" / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(IncompatibleCheckpointError, match=r"from step 2 but checkpoint\.json says step 1"):
        load_training_state(tmp_path / "a")


def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path, net, {}, step=1)
    before = (tmp_path / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, torch.nn.Linear(2, 2), {}, step=2)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "model.safetensors"]
    assert load_training_state(tmp_path).step == 1


def test_own_format_errors(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "noema", build_network(_config("ncsn")), _config("ncsn"), step=1)
    with pytest.raises(IncompatibleCheckpointError, match="without EMA weights; pass use_ema=False"):
        load_checkpoint(tmp_path / "noema")
    assert load_checkpoint(tmp_path / "noema", use_ema=False).step == 1
    other = {**_config("ncsn"), "model": {**_config("ncsn")["model"], "nf": 16}}
    save_checkpoint(tmp_path / "wrong", build_network(other), _config("ncsn"), step=1)
    with pytest.raises(IncompatibleCheckpointError, match="shape mismatches"):
        load_checkpoint(tmp_path / "wrong", use_ema=False)
    with pytest.raises(FileNotFoundError, match="not a scoresde checkpoint directory"):
        load_checkpoint(tmp_path)
