"""PSLD (Pandey & Mandt 2023) Lightning checkpoints: key mapping, loading, errors, CLI import; PSLD/CLD presets.

The fake checkpoints use the PSLD code's key names, written down here from its architecture (Lightning module
``SDEWrapper`` with ``score_fn`` / ``ema_score_fn``; NCSN++ modules appended to ``all_modules`` in construction
order, with the Score SDE ``layerspp`` parameter names), independently of scoresde's mapping.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.checkpoint import IncompatibleCheckpointError, load_psld_checkpoint, read_psld_training_state
from scoresde.cli import main
from scoresde.config import build_network, build_score_model, build_sde, config_from_dict, load_config
from scoresde.models import PhaseSpaceScoreModel
from scoresde.sdes import CLD, PSLD

# ---- PSLD's NCSN++ state-dict keys (biggan blocks, progressive = 'none') ------------------------------------------


def _gn(c: int) -> dict[str, tuple]:
    return {"weight": (c,), "bias": (c,)}


def _conv(cin: int, cout: int, k: int = 3) -> dict[str, tuple]:
    return {"weight": (cout, cin, k, k), "bias": (cout,)}


def _sub(name: str, params: dict[str, tuple]) -> dict[str, tuple]:
    return {f"{name}.{k}": v for k, v in params.items()}


def psld_ncsnpp_keys(*, nf: int, ch_mult: tuple, num_res_blocks: int, attn: tuple, image_size: int, in_ch: int,
                     out_ch: int, embedding: str, progressive_input: str, fir: bool) -> dict[str, tuple]:
    """``{all_modules.<i>.<param>: shape}`` of PSLD's ``score_fn`` NCSN++ for these options."""
    modules: list[dict[str, tuple]] = []
    temb = 4 * nf

    def block(cin: int, cout: int | None = None, resample: bool = False) -> dict[str, tuple]:
        cout = cout or cin
        p = {**_sub("GroupNorm_0", _gn(cin)), **_sub("Conv_0", _conv(cin, cout)),
             **_sub("Dense_0", {"weight": (cout, temb), "bias": (cout,)}), **_sub("GroupNorm_1", _gn(cout)),
             **_sub("Conv_1", _conv(cout, cout))}
        if cin != cout or resample:
            p.update(_sub("Conv_2", _conv(cin, cout, 1)))
        return p

    def attn_block(c: int) -> dict[str, tuple]:
        p = _sub("GroupNorm_0", _gn(c))
        for j in range(4):
            p.update(_sub(f"NIN_{j}", {"W": (c, c), "b": (c,)}))
        return p

    if embedding == "fourier":
        modules.append({"W": (nf,)})
        embed = 2 * nf
    else:
        embed = nf
    modules += [{"weight": (temb, embed), "bias": (temb,)}, {"weight": (temb, temb), "bias": (temb,)}]
    modules.append(_conv(in_ch, nf))
    resolutions = [image_size // 2**i for i in range(len(ch_mult))]
    hs, ch, pyramid = [nf], nf, in_ch
    for level, res in enumerate(resolutions):
        for _ in range(num_res_blocks):
            modules.append(block(ch, nf * ch_mult[level]))
            ch = nf * ch_mult[level]
            if res in attn:
                modules.append(attn_block(ch))
            hs.append(ch)
        if level != len(resolutions) - 1:
            modules.append(block(ch, resample=True))
            if progressive_input == "residual":
                modules.append(_sub("Conv2d_0" if fir else "Conv_0", _conv(pyramid, ch)))
                pyramid = ch
            hs.append(ch)
    modules += [block(ch), attn_block(ch), block(ch)]
    for level in reversed(range(len(resolutions))):
        for _ in range(num_res_blocks + 1):
            modules.append(block(ch + hs.pop(), nf * ch_mult[level]))
            ch = nf * ch_mult[level]
        if resolutions[level] in attn:
            modules.append(attn_block(ch))
        if level != 0:
            modules.append(block(ch, resample=True))
    assert not hs
    modules += [_gn(ch), _conv(ch, out_ch)]
    return {f"all_modules.{i}.{k}": shape for i, m in enumerate(modules) for k, shape in m.items()}


SMALL = ["model.nf=16", "model.ch_mult=[1,2]", "model.num_res_blocks=1", "model.attn_resolutions=[8]",
         "data.image_size=16", "model.dropout=0.0"]
VARIANTS = {
    # psld/cifar10's network options (Fourier embedding of log t, FIR, residual input pyramid), 3 channels
    "fourier": ("psld/cifar10", [], dict(embedding="fourier", progressive_input="residual", fir=True), 3, "all"),
    # psld/afhqv2_128's options (sinusoidal embedding of t, no FIR, no pyramid); a Gamma = 0 run with a
    # momentum-only output (their afhqv2 train_uncond_cld.sh: nu = 4, gamma = 0, out_ch = 3)
    "positional_momentum": ("psld/afhqv2_128", ["model.gamma=0.0", "model.nu=4.0", "model.blocks=\"momentum\""],
                            dict(embedding="positional", progressive_input="none", fir=False), 3, "momentum"),
}


def _config(variant: str, channels: int | None = None, extra: tuple = ()) -> dict:
    preset, overrides, _, c, _ = VARIANTS[variant]
    c = channels or c
    return load_config(preset, [*SMALL, *overrides, f"data.num_channels={c}", *extra]).to_dict()


def _their_keys(variant: str, channels: int | None = None) -> dict[str, tuple]:
    _, _, options, c, blocks = VARIANTS[variant]
    c = channels or c
    return psld_ncsnpp_keys(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn=(8,), image_size=16, in_ch=2 * c,
                            out_ch=2 * c if blocks == "all" else c, **options)


def _lightning_ckpt(keys: dict[str, tuple], seed: int = 0, ema: bool = True) -> dict:
    """A checkpoint with the layout of PyTorch Lightning 1.x as written by PSLD's train_sde.py."""
    g = torch.Generator().manual_seed(seed)
    sd = {f"score_fn.{k}": 0.1 * torch.randn(shape, generator=g) for k, shape in keys.items()}
    if ema:
        sd.update({f"ema_score_fn.{k}": 0.1 * torch.randn(shape, generator=g) for k, shape in keys.items()})
    n = len(keys)
    return {
        "epoch": 2349, "global_step": 916500, "pytorch-lightning_version": "1.6.0", "state_dict": sd,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 2350, "completed": 2349}}}},
        "callbacks": {"ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0}": {
            "monitor": None, "best_model_score": None, "best_model_path": "", "current_score": None,
            "dirpath": "/results/checkpoints", "best_k_models": {}, "kth_best_model_path": "",
            "kth_value": torch.tensor(float("inf")), "last_model_path": ""}},
        "optimizer_states": [{"state": {i: {"step": torch.tensor(916500.0), "exp_avg": torch.full((1,), float(i)),
                                            "exp_avg_sq": torch.ones(1)} for i in range(n)},
                              "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                                                "amsgrad": False, "initial_lr": 2e-4, "params": list(range(n))}]}],
        "lr_schedulers": [{"base_lrs": [2e-4], "last_epoch": 916500, "_step_count": 916501, "verbose": False,
                           "_get_lr_called_within_step": False, "_last_lr": [2e-4], "lr_lambdas": [None]}],
    }


def _save(tmp_path: Path, ckpt: dict, name: str = "psld.ckpt") -> Path:
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


# ---- mapping and loading -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mapping_covers_exactly_their_keys_with_their_shapes(variant: str) -> None:
    net = build_network(_config(variant))
    key_map = net.original_key_map()
    own = net.state_dict()
    theirs = _their_keys(variant)
    assert set(key_map) - {"sigmas"} == set(theirs)  # PSLD's NCSN++ has no sigmas buffer; ours keeps its own
    for key, shape in theirs.items():
        assert tuple(own[key_map[key]].shape) == shape, key


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip_ema_and_online_weights(variant: str, tmp_path: Path) -> None:
    cfg = _config(variant)
    ckpt = _lightning_ckpt(_their_keys(variant))
    path = _save(tmp_path, ckpt)
    sd = ckpt["state_dict"]
    g = torch.Generator().manual_seed(1)
    c = cfg["data"]["num_channels"]
    z, t = torch.randn(3, 2 * c, 16, 16, generator=g), torch.tensor([1e-3, 0.3, 1.0])
    for use_ema, prefix in ((True, "ema_score_fn."), (False, "score_fn.")):
        model = load_psld_checkpoint(path, cfg, use_ema=use_ema)
        assert isinstance(model, PhaseSpaceScoreModel)  # the model itself, with the step and the typed config
        assert model.step == 916500 and model.config == config_from_dict(cfg)
        assert model.blocks == VARIANTS[variant][4] and model.labels(t) is t  # raw t, as PSLD's wrapper
        net = build_network(cfg).eval()
        key_map = net.original_key_map()
        for key in _their_keys(variant):
            assert torch.equal(model.net.state_dict()[key_map[key]], sd[prefix + key]), key
        # the same weights loaded by hand into a freshly built network give the same score
        net.load_state_dict({**net.state_dict(), **{key_map[k]: sd[prefix + k] for k in _their_keys(variant)}})
        reference = PhaseSpaceScoreModel(net, build_sde(cfg), blocks=VARIANTS[variant][4])
        with torch.no_grad():
            score = model.score(z, t)
            assert torch.equal(score, reference.score(z, t))
            assert torch.isfinite(score).all() and score.shape == z.shape
    assert isinstance(model.sde, PSLD)


def test_ema_and_online_weights_differ_and_float64_loads(tmp_path: Path) -> None:
    cfg = _config("fourier")
    path = _save(tmp_path, _lightning_ckpt(_their_keys("fourier")))
    ema = load_psld_checkpoint(path, cfg)
    online = load_psld_checkpoint(path, cfg, use_ema=False)
    assert not torch.equal(ema.net.conv_in.weight, online.net.conv_in.weight)
    double = load_psld_checkpoint(path, cfg, dtype=torch.float64)
    assert double.net.conv_in.weight.dtype == torch.float64
    assert torch.equal(double.net.conv_in.weight.float(), ema.net.conv_in.weight)


def test_optimizer_state_follows_the_parameters(tmp_path: Path) -> None:
    cfg = _config("fourier")
    theirs = list(_their_keys("fourier"))
    state = read_psld_training_state(_save(tmp_path, _lightning_ckpt(_their_keys("fourier"))), cfg)
    net = build_network(cfg)
    key_map = net.original_key_map()
    ours = [name for name, _ in net.named_parameters()]
    assert state.step == 916500 and state.trainer_state == {"ema_num_updates": 916500}
    assert state.optimizer_state["param_groups"][0]["params"] == list(range(len(ours)))
    for i, key in enumerate(theirs):  # their i-th parameter is their i-th state-dict key (no buffers)
        assert state.optimizer_state["state"][ours.index(key_map[key])]["exp_avg"].item() == i


# ---- errors ------------------------------------------------------------------------------------------------------


def test_missing_key_is_named(tmp_path: Path) -> None:
    ckpt = _lightning_ckpt(_their_keys("fourier"))
    del ckpt["state_dict"]["score_fn.all_modules.5.Conv_0.weight"]
    with pytest.raises(IncompatibleCheckpointError, match=r"(?s)'score_fn'.*missing keys \(1\): "
                                                          r"all_modules\.5\.Conv_0\.weight"):
        load_psld_checkpoint(_save(tmp_path, ckpt), _config("fourier"))


def test_wrong_architecture_names_the_shape_mismatches(tmp_path: Path) -> None:
    path = _save(tmp_path, _lightning_ckpt(_their_keys("fourier")))
    with pytest.raises(IncompatibleCheckpointError, match=r"(?s)shape mismatches.*all_modules\.0\.W "
                                                          r"\(16,\) vs \(32,\) expected"):
        load_psld_checkpoint(path, _config("fourier", extra=("model.nf=32",)))
    with pytest.raises(IncompatibleCheckpointError, match="missing keys"):  # a second block per resolution
        load_psld_checkpoint(path, _config("fourier", extra=("model.num_res_blocks=2",)))
    with pytest.raises(IncompatibleCheckpointError, match="shape mismatches"):  # 6 outputs, not 3
        load_psld_checkpoint(path, _config("fourier", extra=('model.blocks="momentum"',)))


def test_other_modules_and_missing_ema_are_refused(tmp_path: Path) -> None:
    ckpt = _lightning_ckpt(_their_keys("fourier"))
    ckpt["state_dict"]["clf_fn.all_modules.0.weight"] = torch.zeros(1)
    with pytest.raises(IncompatibleCheckpointError, match=r"unexpected modules \['clf_fn'\]"):
        load_psld_checkpoint(_save(tmp_path, ckpt), _config("fourier"))
    path = _save(tmp_path, _lightning_ckpt(_their_keys("fourier"), ema=False), "no_ema.ckpt")
    with pytest.raises(IncompatibleCheckpointError, match=r"no 'ema_score_fn\.\*' weights; pass use_ema=False"):
        load_psld_checkpoint(path, _config("fourier"))
    model = load_psld_checkpoint(path, _config("fourier"), use_ema=False)
    assert isinstance(model, PhaseSpaceScoreModel)


def test_non_lightning_files_are_refused(tmp_path: Path) -> None:
    cfg = _config("fourier")
    score_sde = _save(tmp_path, {"model": {"module.all_modules.0.W": torch.zeros(16)}, "step": 3}, "s.pth")
    with pytest.raises(IncompatibleCheckpointError, match=r"not a PyTorch Lightning.*use --format score-sde"):
        load_psld_checkpoint(score_sde, cfg)
    with pytest.raises(IncompatibleCheckpointError, match="not a PyTorch Lightning checkpoint"):
        load_psld_checkpoint(_save(tmp_path, torch.zeros(3), "t.pt"), cfg)


def test_configs_with_other_conventions_are_refused(tmp_path: Path) -> None:
    path = _save(tmp_path, _lightning_ckpt(_their_keys("fourier")))
    with pytest.raises(ValueError, match=r"data\.centered must be true"):
        load_psld_checkpoint(path, _config("fourier", extra=("data.centered=false",)))
    with pytest.raises(ValueError, match=r"training\.sde is 'vpsde'"):
        load_psld_checkpoint(path, "vp/cifar10_ddpmpp_continuous")
    with pytest.raises(ValueError, match=r"model\.mixed_score must be false"):
        load_psld_checkpoint(path, _config("fourier", extra=("model.mixed_score=true",)))


class _Payload:
    """Unpickling this would create a file: ``weights_only=True`` must refuse it."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_loading_never_executes_code_from_the_file(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "executed"
    ckpt = _lightning_ckpt(_their_keys("fourier"))
    ckpt["hyper_parameters"] = _Payload(marker)
    path = _save(tmp_path, ckpt)
    with pytest.raises(IncompatibleCheckpointError, match=r"refused by torch.load\(weights_only=True\), nothing in "
                                                          "it was executed"):
        load_psld_checkpoint(path, _config("fourier"))
    assert main(["import", "--checkpoint", str(path), "--config", "psld/cifar10", "--workdir",
                 str(tmp_path / "run"), *[a for s in SMALL for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused by torch.load(weights_only=True)" in err
    assert not marker.exists() and not (tmp_path / "run").exists()


# ---- command line ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["auto", "psld"])
def test_cli_import_then_sample(fmt: str, tmp_path: Path, capsys) -> None:
    """A 1-channel (digits-shaped) PSLD checkpoint imported as a run folder, then sampled by the CLI."""
    sets = [*SMALL, "data.dataset=\"digits\"", "data.num_channels=1", "model.num_scales=20"]
    path = _save(tmp_path, _lightning_ckpt(_their_keys("fourier", channels=1)))
    run = tmp_path / "run"
    argv = ["import", "--checkpoint", str(path), "--config", "psld/cifar10", "--workdir", str(run),
            *[a for s in sets for a in ("--set", s)]]
    assert main(argv + ([] if fmt == "auto" else ["--format", fmt])) == 0
    assert "(psld checkpoint, step 916500)" in capsys.readouterr().out
    assert (run / "checkpoints" / "checkpoint_916500").is_dir()
    from scoresde import load_checkpoint

    model = load_checkpoint(run / "checkpoints" / "checkpoint_916500")
    step = model.step
    reference = load_psld_checkpoint(path, load_config("psld/cifar10", sets).to_dict())
    assert step == 916500 and torch.equal(model.net.conv_in.weight, reference.net.conv_in.weight)
    out = tmp_path / "s.npz"
    assert main(["sample", "--workdir", str(run), "--num", "4", "--out", str(out), "--quiet"]) == 0
    samples = np.load(out)["samples"]
    assert samples.shape == (4, 16, 16, 1) and samples.dtype == np.uint8
    assert main(argv) == 2  # never over an existing run


def test_cli_format_psld_refuses_a_score_sde_file(tmp_path: Path, capsys) -> None:
    path = _save(tmp_path, {"model": {}, "step": 0}, "s.pth")
    code = main(["import", "--checkpoint", str(path), "--format", "psld", "--config", "psld/cifar10", "--workdir",
                 str(tmp_path / "run")])
    assert code == 2 and "use --format score-sde" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ---- presets -----------------------------------------------------------------------------------------------------


def _get(cfg: dict, dotted: str):
    section, key = dotted.split(".")
    return cfg[section][key]


PRESET_VALUES = {
    "psld/cifar10": {  # scripts_psld/sota/uncond/cifar10/train_uncond_psld.sh (PSLD README)
        "training.sde": "psld", "model.beta_min": 8.0, "model.beta_max": 8.0, "model.nu": 4.01, "model.gamma": 0.01,
        "model.kappa": 0.04, "model.decomp_mode": "lower", "model.score_matching": "hsm", "model.nf": 128,
        "model.ch_mult": [2, 2, 2], "model.num_res_blocks": 8, "model.attn_resolutions": [16], "model.dropout": 0.15,
        "model.fir": True, "model.progressive_input": "residual", "model.embedding_type": "fourier",
        "model.ema_rate": 0.9999, "optim.lr": 2e-4, "optim.warmup": 5000, "training.batch_size": 128,
        "training.n_iters": 975000, "training.eps": 1e-5, "model.num_scales": 1000, "sampling.predictor":
        "euler_maruyama", "data.centered": True, "data.image_size": 32, "model.blocks": "all",
        "model.mixed_score": False},
    "psld/celeba64": {
        "model.nu": 4.005, "model.gamma": 0.005, "model.kappa": 0.04, "model.ch_mult": [1, 2, 2, 2],
        "model.num_res_blocks": 4, "model.dropout": 0.1, "model.embedding_type": "fourier", "optim.lr": 2e-4,
        "training.batch_size": 128, "model.num_scales": 250, "data.image_size": 64, "data.dataset": "CELEBA"},
    "psld/afhqv2_128": {
        "model.nu": 4.01, "model.gamma": 0.01, "model.nf": 160, "model.ch_mult": [1, 2, 2, 3, 3],
        "model.num_res_blocks": 2, "model.attn_resolutions": [8, 16], "model.dropout": 0.2, "model.fir": False,
        "model.embedding_type": "positional", "model.progressive_input": "none", "optim.lr": 1e-4,
        "training.batch_size": 64, "data.image_size": 128, "model.num_scales": 250},
    "cld/cifar10": {  # CLD-SGM configs/specific_cifar10.txt and default_cifar10.txt
        "training.sde": "cld", "model.m_inv": 4.0, "model.beta_min": 4.0, "model.beta_max": 4.0, "model.kappa": 0.04,
        "model.score_matching": "hsm", "model.blocks": "momentum", "model.mixed_score": True, "model.num_res_blocks": 8,
        "model.ch_mult": [1, 2, 2, 2], "model.embedding_type": "fourier", "optim.warmup": 100000,
        "training.n_iters": 800000, "sampling.method": "ode", "sampling.eps": 1e-3, "model.ema_rate": 0.9999},
}


@pytest.mark.parametrize("name", list(PRESET_VALUES))
def test_presets_load_with_the_papers_values_and_build(name: str) -> None:
    cfg = load_config(name).to_dict()
    for key, value in PRESET_VALUES[name].items():
        assert _get(cfg, key) == value, key
    assert cfg["data"]["centered"] is True and cfg["model"]["scale_by_sigma"] is False
    small = load_config(name, ["model.nf=8", "model.num_res_blocks=1"]).to_dict()
    net = build_network(small)
    c = cfg["data"]["num_channels"]
    assert net.in_channels == 2 * c and net.out_channels == (c if cfg["model"]["blocks"] == "momentum" else 2 * c)
    model = build_score_model(small)
    assert model.blocks == cfg["model"]["blocks"] and model.mixed_score == cfg["model"]["mixed_score"]
    sde = build_sde(cfg)
    assert isinstance(sde, CLD if name.startswith("cld") else PSLD)
    if isinstance(sde, PSLD):
        assert sde.m_inv == pytest.approx((sde.gamma - sde.nu) ** 2 / 4)
    else:
        assert sde.friction == pytest.approx(1.0)  # critical damping 2 sqrt(M), M = 1/4
