"""NVlabs/edm network pickles (issue 23 item 5): ``scoresde.load_checkpoint`` gives EDM's own outputs, read without
executing anything from the file.

Fixtures (tests/checkpoint/data/edm/README.md): tiny random networks pickled by EDM's own code (EDMPrecond, VPPrecond,
VEPrecond x DDPM++, NCSN++ x unconditional, label_dim=10) and EDM's outputs on fixed inputs.
"""

from __future__ import annotations

import gzip
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import scoresde
from scoresde.checkpoint import UnsafeCheckpointError
from scoresde.checkpoint.edm import edm_network_config, load_edm_checkpoint, read_edm_network
from scoresde.checkpoint.edm_pickle import is_edm_pickle, read_edm_pickle
from scoresde.checkpoint.errors import IncompatibleCheckpointError
from scoresde.sdes import EDM

DATA = Path(__file__).parent / "data" / "edm"
NAMES = [f"{p}-{a}-{c}" for p in ("edm", "vp", "ve") for a in ("ddpmpp", "ncsnpp") for c in ("uncond", "cond")]
#: agreement with EDM's float32 outputs, relative to their largest magnitude (x0 = x - sigma F reaches 46 at
#: sigma = 12; the VP + NCSN++ pair feeds Fourier features arguments of ~2e5 rad, where float32 rounding shows)
RTOL = 1e-4


def _unzip(name: str, tmp_path: Path) -> Path:
    out = tmp_path / f"network-snapshot-{name}.pkl"
    out.write_bytes(gzip.decompress((DATA / f"network-snapshot-{name}.pkl.gz").read_bytes()))
    return out


@pytest.fixture(scope="module")
def outputs() -> dict[str, torch.Tensor]:
    if not (DATA / "outputs.npz").is_file():
        pytest.skip("fixtures tests/checkpoint/data/edm are absent")
    with np.load(DATA / "outputs.npz") as npz:
        return {k: torch.from_numpy(npz[k]) for k in npz.files}


def _assert_matches(ours: torch.Tensor, edm: torch.Tensor) -> None:
    err = (ours - edm).abs().max().item()
    assert err <= RTOL * max(1.0, edm.abs().max().item()), err


@pytest.mark.parametrize("name", NAMES)
def test_x0_equals_edm_net(name: str, outputs: dict, tmp_path: Path) -> None:
    path = _unzip(name, tmp_path)
    assert is_edm_pickle(path)
    model = scoresde.load_checkpoint(path)
    assert isinstance(model.sde, EDM) and model.step == 0 and not model.net.training
    assert model.config.training.sde == "edm" and model.config.model["preconditioning"] == name.split("-")[0]
    x, sigma, labels = outputs["x"], outputs["sigma"], outputs["labels"]
    cond = name.endswith("-cond")
    with torch.no_grad():
        _assert_matches(model.x0(x, sigma, class_labels=labels if cond else None), outputs[f"{name}/D"])
        if cond:  # EDM's call without labels (a zero label vector) is our null label
            _assert_matches(model.x0(x, sigma), outputs[f"{name}/D_null"])
        if name.startswith("edm-"):
            aug = model.x0(x, sigma, class_labels=labels if cond else None, augment_labels=outputs["augment_labels"])
            _assert_matches(aug, outputs[f"{name}/D_aug"])


def test_architecture_read_from_the_file(tmp_path: Path) -> None:
    _, unet = read_edm_network(_unzip("ve-ncsnpp-cond", tmp_path))
    model, data = edm_network_config(unet)
    assert data == {"image_size": 8, "num_channels": 3, "centered": True}
    assert (model["nf"], model["ch_mult"], model["num_res_blocks"], model["attn_resolutions"]) == (4, [1, 2], 1, [4])
    assert (model["embedding_type"], model["fourier_log"], model["noise_channels"]) == ("fourier", False, 8)
    assert (model["progressive_input"], model["progressive"], model["fir"], model["fir_kernel"]) == (
        "residual", "none", True, [1, 3, 3, 1])
    assert model["num_classes"] == 10 and model["dropout"] == pytest.approx(0.13)
    _, unet = read_edm_network(_unzip("vp-ddpmpp-uncond", tmp_path))
    model, _ = edm_network_config(unet)
    assert (model["embedding_type"], model["progressive_input"], model["fir"]) == ("positional", "none", False)
    assert "num_classes" not in model and "augment_dim" not in model


def test_the_whole_file_reads_as_inert_records(tmp_path: Path) -> None:
    data = read_edm_pickle(_unzip("edm-ddpmpp-cond", tmp_path))
    assert sorted(data) == ["augment_pipe", "dataset_kwargs", "ema", "loss_fn"]
    assert (data["ema"].class_name, data["loss_fn"].class_name, data["augment_pipe"].class_name) == (
        "EDMPrecond", "EDMLoss", "AugmentPipe")
    assert data["ema"].init_kwargs["model_type"] == "SongUNet" and data["ema"].state["label_dim"] == 10


def test_options_refused(tmp_path: Path) -> None:
    path = _unzip("edm-ddpmpp-uncond", tmp_path)
    with pytest.raises(ValueError, match=r"EDM network pickle.*pass neither config= nor use_ema=False"):
        scoresde.load_checkpoint(path, config="digits/vp_ddpmpp")
    with pytest.raises(ValueError, match="pass neither config= nor use_ema=False"):
        scoresde.load_checkpoint(path, use_ema=False)


# ---- nothing from the file is executed ---------------------------------------------------------------------------

def _persistence_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in ``torch_utils.persistence`` so that a test can write EDM-style records (never loaded by scoresde)."""
    module = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta: dict) -> None:  # pragma: no cover - only named in the pickle
        raise AssertionError("never called")

    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    return module


class _Reduce:
    def __init__(self, func: object, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _payload(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('executed')\nclass Payload:\n    pass\n"


def test_persistence_record_source_is_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _persistence_module(monkeypatch)
    marker = tmp_path / "marker"
    meta = dict(type="class", version=6, module_src=_payload(marker), class_name="Payload", state={})
    path = tmp_path / "network-snapshot-evil.pkl"
    path.write_bytes(pickle.dumps({"ema": _Reduce(module._reconstruct_persistent_obj, (meta,))}))
    assert is_edm_pickle(path)
    with pytest.raises(UnsafeCheckpointError) as info:
        scoresde.load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and "'Payload'" in message and "nothing in it was executed" in message
    assert not marker.exists()
    exec(compile(meta["module_src"], "payload", "exec"), {})  # what EDM's loader would do: the payload is real
    assert marker.read_text() == "executed"


def test_source_of_a_real_file_replaced_by_a_payload_is_never_run(tmp_path: Path, outputs: dict) -> None:
    """EDM's networks.py source inside a real fixture replaced (same length) by code writing a file: the file loads
    as before, since scoresde reads the records' class names and tensors only."""
    raw = gzip.decompress((DATA / "network-snapshot-edm-ddpmpp-uncond.pkl.gz").read_bytes())
    marker = tmp_path / "m"
    strings = [arg for op, arg, _ in __import__("pickletools").genops(raw) if isinstance(arg, str) and len(arg) > 30000]
    source = strings[0].encode()
    payload = _payload(marker).encode()
    payload += b"#" * (len(source) - len(payload))
    path = tmp_path / "network-snapshot-tampered.pkl"
    path.write_bytes(raw.replace(source, payload))
    with torch.no_grad():
        out = load_edm_checkpoint(path).x0(outputs["x"], outputs["sigma"])
    assert not marker.exists()
    _assert_matches(out, outputs["edm-ddpmpp-uncond/D"])


def test_a_code_global_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    _persistence_module(monkeypatch)
    marker = tmp_path / "marker"
    path = tmp_path / "network-snapshot-system.pkl"
    # an EDM-looking file (the persistence global first) with a reduce to os.system inside
    module = sys.modules["torch_utils.persistence"]
    meta = dict(type="class", version=6, module_src="", class_name="EDMPrecond",
                state={"x": _Reduce(os.system, (f"touch {marker}",))})
    path.write_bytes(pickle.dumps({"ema": _Reduce(module._reconstruct_persistent_obj, (meta,))}))
    with pytest.raises(UnsafeCheckpointError) as info:
        scoresde.load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and f"global {os.system.__module__}.system" in message
    assert not marker.exists()


def test_adm_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _persistence_module(monkeypatch)

    def record(name: str, state: dict) -> _Reduce:
        return _Reduce(module._reconstruct_persistent_obj,
                       (dict(type="class", version=6, module_src="", class_name=name, state=state),))

    unet = record("DhariwalUNet", {"_modules": {}})
    path = tmp_path / "edm-imagenet-64x64-cond-adm.pkl"
    path.write_bytes(pickle.dumps({"ema": record("EDMPrecond", {"_modules": {"model": unet}})}))
    with pytest.raises(IncompatibleCheckpointError, match=r"DhariwalUNet \(ADM"):
        scoresde.load_checkpoint(path)
    path.write_bytes(pickle.dumps({"ema": record("iDDPMPrecond", {"_modules": {"model": unet}})}))
    with pytest.raises(IncompatibleCheckpointError,
                       match="iDDPMPrecond; supported are EDMPrecond, VPPrecond, VEPrecond"):
        scoresde.load_checkpoint(path)


def test_truncated_file_is_one_line(tmp_path: Path) -> None:
    path = _unzip("ve-ddpmpp-uncond", tmp_path)
    path.write_bytes(path.read_bytes()[:50000])
    with pytest.raises(IncompatibleCheckpointError, match="truncated or corrupt") as info:
        scoresde.load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_cli_import_makes_a_run_folder_with_edms_outputs(tmp_path: Path, outputs: dict,
                                                          capsys: pytest.CaptureFixture) -> None:
    from scoresde.cli import main

    for name in ("edm-ncsnpp-cond", "vp-ddpmpp-uncond"):
        workdir = tmp_path / name
        assert main(["import", "--checkpoint", str(_unzip(name, tmp_path)), "--workdir", str(workdir)]) == 0
        model = scoresde.load_checkpoint(workdir)  # rebuilt from the run's config by the factory
        assert isinstance(model.sde, EDM) and model.precond.name == name.split("-")[0]
        labels = outputs["labels"] if name.endswith("-cond") else None
        with torch.no_grad():
            _assert_matches(model.x0(outputs["x"], outputs["sigma"], class_labels=labels), outputs[f"{name}/D"])
    capsys.readouterr()
    assert main(["import", "--format", "edm", "--checkpoint", str(_unzip("ve-ddpmpp-uncond", tmp_path)),
                 "--workdir", str(tmp_path / "x"), "--config", "digits/vp_ddpmpp"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--config, --sde and --continuous are not options of --format edm" in err
