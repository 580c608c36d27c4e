"""``scoresde export --format edm`` / :func:`scoresde.checkpoint.edm_export.export_edm` (issue 23 item 5).

The round trip is checked against EDM's own files, not against ourselves: each fixture pickle of
tests/checkpoint/data/edm (made by EDM's code, README there) is imported, exported, and the exported ``state_dict``
must hold exactly the pickle's own tensors under EDM's names (read with the safe reader), and ``init_kwargs`` the
keyword arguments EDM's persistence recorded for the wrapper. Loading the export into EDM's real wrappers is a local
experiment, not a test (EDM's code is not part of this project): on 2026-12-07, EDM's ``EDMPrecond``/``VPPrecond``/
``VEPrecond`` built from the exports of the 12 fixtures and of 4 models built here (edm/digits, fm/digits, and small
edm/cifar10 NCSN++ cond / DDPM++ with skip encoder and decoder and augment_dim) gave our ``model.x0`` to 1.8e-4 at
most (relative to the output's scale 4.0e-6; the fixtures' import tolerance is 1e-4), and for the unconditional
fixtures EDM's outputs.npz bit for bit.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

import scoresde
from scoresde.checkpoint.edm_export import check_edm_exportable, edm_network_dict, export_edm
from scoresde.checkpoint.edm_pickle import ModuleDictRecord, PersistentRecord, read_edm_pickle
from scoresde.models import ScoreModel
from scoresde.nets import DDPM, NCSNpp
from scoresde.sdes import EDM, VPSDE

DATA = Path(__file__).parent / "data" / "edm"
NAMES = [f"{p}-{a}-{c}" for p in ("edm", "vp", "ve") for a in ("ddpmpp", "ncsnpp") for c in ("uncond", "cond")]
#: the one tensor that is not a copy: map_label's W = (row_y - b) / sqrt(label_dim) inverts the import's float32
#: table row_y = sqrt(label_dim) W[:, y] + b, exact to the table's rounding (a few ulp of its entries)
LABEL_ULPS = 4


def _unzip(name: str, tmp_path: Path) -> Path:
    if not (DATA / f"network-snapshot-{name}.pkl.gz").is_file():
        pytest.skip("fixtures tests/checkpoint/data/edm are absent")
    out = tmp_path / f"network-snapshot-{name}.pkl"
    out.write_bytes(gzip.decompress((DATA / f"network-snapshot-{name}.pkl.gz").read_bytes()))
    return out


def _flat(record: PersistentRecord | ModuleDictRecord, prefix: str, out: dict[str, torch.Tensor]) -> dict:
    """The records' tensors under ``state_dict()`` names, in module order (what EDM's ``net.state_dict()`` is)."""
    if isinstance(record, PersistentRecord):
        out.update({prefix + k: v for k, v in record.tensors().items()})
    for name, child in record.modules().items():
        _flat(child, f"{prefix}{name}.", out)
    return out


def _assert_state_is_the_pickles(state: dict[str, torch.Tensor], ema: PersistentRecord) -> None:
    ref = _flat(ema, "", {})
    assert list(state) == list(ref)  # EDM's names, in EDM's order
    for key, value in ref.items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape, key
        if key == "model.map_label.weight":
            table = value.abs().max() * value.shape[1] ** 0.5 + state["model.map_label.bias"].abs().max()
            tol = LABEL_ULPS * torch.finfo(torch.float32).eps * table.item()
            assert (state[key] - value).abs().max().item() <= tol, key
        else:
            assert torch.equal(state[key], value), key


def _assert_kwargs_are_the_records(kwargs: dict, ema: PersistentRecord) -> None:
    """The recorded keyword arguments exactly; the ones we add explicitly (EDM's train.py leaves them at their
    defaults) equal what the pickled objects hold."""
    recorded = ema.init_kwargs
    assert {k: kwargs[k] for k in recorded} == recorded
    unet = ema.modules()["model"]
    state, extra = ema.state, {k: v for k, v in kwargs.items() if k not in recorded}
    nf = recorded["model_channels"]
    assert extra.pop("channel_mult_emb") == unet.modules()["map_layer0"].tensors()["weight"].shape[0] // nf
    if "augment_dim" in extra:
        assert extra.pop("augment_dim") == 0 and "map_augment" not in unet.modules()
    wrapper_keys = {"EDMPrecond": ["sigma_data"], "VPPrecond": ["beta_d", "beta_min", "M", "epsilon_t"],
                    "VEPrecond": ["sigma_min", "sigma_max"]}[ema.class_name]
    assert sorted(extra) == sorted(wrapper_keys)
    assert {k: extra[k] for k in wrapper_keys} == {k: state[k] for k in wrapper_keys}


@pytest.mark.parametrize("name", NAMES)
def test_export_gives_back_edms_own_file(name: str, tmp_path: Path) -> None:
    path = _unzip(name, tmp_path)
    ema = read_edm_pickle(path)["ema"]
    out = export_edm(scoresde.load_checkpoint(path), tmp_path / "model.pt")
    data = torch.load(out, weights_only=True)  # a plain dict: no code, no classes
    assert sorted(data) == ["class_name", "init_kwargs", "state_dict"]
    assert data["class_name"] == f"training.networks.{ema.class_name}"
    _assert_state_is_the_pickles(data["state_dict"], ema)
    _assert_kwargs_are_the_records(data["init_kwargs"], ema)


def test_cli_export_of_an_imported_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from scoresde.cli import main

    for name in ("vp-ncsnpp-cond", "edm-ddpmpp-uncond"):
        path = _unzip(name, tmp_path)
        workdir, out = tmp_path / f"run-{name}", tmp_path / f"{name}.pt"
        assert main(["import", "--format", "edm", "--checkpoint", str(path), "--workdir", str(workdir)]) == 0
        assert main(["export", "--format", "edm", "--workdir", str(workdir), "--out", str(out)]) == 0
        ema = read_edm_pickle(path)["ema"]
        data = torch.load(out, weights_only=True)
        _assert_state_is_the_pickles(data["state_dict"], ema)  # through the run folder's config and safetensors
        _assert_kwargs_are_the_records(data["init_kwargs"], ema)
    assert "EDM training.networks.EDMPrecond" in capsys.readouterr().out
    assert main(["export", "--format", "edm", "--pipeline", "--workdir", str(workdir), "--out",
                 str(tmp_path / "x.pt")]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--pipeline is an option of --format diffusers" in err
    assert not (tmp_path / "x.pt").exists()


def _net(**kw: object) -> NCSNpp:
    options = dict(image_size=8, nf=4, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), centered=True,
                   embedding_type="fourier", fourier_log=False, noise_channels=8, scale_by_sigma=False, fir=True,
                   progressive_input="residual")
    options.update(kw)
    return NCSNpp(**options)


def test_native_model_exports_with_its_options() -> None:
    """A model built here (not imported): the zero null label becomes a zero bias, the skip encoder/decoder get
    their parameter-free filters, every tensor of ours is used once."""
    net = _net(num_classes=3, null_label="zero", progressive_input="input_skip", progressive="output_skip",
               augment_dim=9, embedding_type="positional", fourier_log=True, noise_channels=4)
    data = edm_network_dict(ScoreModel(net, EDM(0.002, 80.0), preconditioning="edm", sigma_data=0.4))
    kw, state = data["init_kwargs"], data["state_dict"]
    assert (kw["encoder_type"], kw["decoder_type"], kw["embedding_type"], kw["channel_mult_noise"]) == (
        "skip", "skip", "positional", 1)
    assert (kw["label_dim"], kw["augment_dim"], kw["sigma_data"], kw["resample_filter"]) == (3, 9, 0.4, [1, 3, 3, 1])
    assert torch.equal(state["model.map_label.bias"], torch.zeros(4))
    torch.testing.assert_close(state["model.map_label.weight"] * 3**0.5, net.label_embed.weight.t().detach())
    f = torch.tensor([1.0, 3, 3, 1])
    assert torch.equal(state["model.enc.4x4_aux_down.resample_filter"], (torch.outer(f, f) / 64)[None, None])
    assert "model.dec.8x8_aux_up.resample_filter" in state and "model.map_noise.freqs" not in state
    n_ours = sum(1 for k in net.state_dict() if k != "sigmas")
    n_buffers = sum(1 for k in state if k.endswith("resample_filter"))
    n_attn = sum(1 for k in net.state_dict() if k.endswith("NIN_0.W"))
    # + map_label.bias (our table holds W and b in one); our q, k, v weights and biases are EDM's one qkv conv
    assert len(state) - n_buffers == n_ours + 1 - 4 * n_attn and n_attn == 3


def _one_line(model: object, *words: str) -> None:
    with pytest.raises(ValueError) as info:
        check_edm_exportable(model)
    text = str(info.value)
    assert "\n" not in text and text.startswith("cannot export to EDM"), text
    for word in words:
        assert word in text, text


def test_what_songunet_cannot_express_is_refused_in_one_line(tmp_path: Path) -> None:
    sde = EDM()
    _one_line(ScoreModel(_net(), VPSDE()), "no EDM/VP/VE preconditioning")
    _one_line(ScoreModel(_net(embedding_type="fourier", fourier_log=True, noise_channels=None), sde,
                         preconditioning="edm"), "Fourier features of log(sigma)")
    ddpm = DDPM(image_size=4, nf=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=())
    _one_line(ScoreModel(ddpm, sde, preconditioning="edm"), "network DDPM")
    _one_line(ScoreModel(_net(resblock_type="ddpm"), sde, preconditioning="ve"), "resblock_type='ddpm'")
    _one_line(ScoreModel(_net(progressive="residual"), sde, preconditioning="edm"), "progressive='residual'")
    _one_line(ScoreModel(_net(fir=False), sde, preconditioning="edm"), "without FIR")
    _one_line(ScoreModel(_net(centered=False), sde, preconditioning="edm"), "centered=False")
    _one_line(ScoreModel(_net(noise_channels=6), sde, preconditioning="edm"), "noise_channels=6")
    _one_line(ScoreModel(_net(nonlinearity="elu"), sde, preconditioning="edm"), "ELU")
    phase_space = scoresde.config.build_score_model("toy/gaussian_mixture_psld")
    _one_line(phase_space, type(phase_space).__name__, "phase-space")
    with pytest.raises(ValueError, match="no EDM/VP/VE preconditioning"):
        export_edm(ScoreModel(_net(), VPSDE()), tmp_path / "no.pt")
    assert not list(tmp_path.iterdir())  # nothing written for a refused model
