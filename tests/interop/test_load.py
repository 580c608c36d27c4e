"""``scoresde.load_diffusers``: diffusers folders in the DDPM and NCSN++ layouts give the same network outputs, the
scheduler's SDE and conventions, and one clear error for folders of other architectures."""

from __future__ import annotations

import json
import math

import pytest
import torch

import scoresde
from scoresde.checkpoint.diffusers.folder import read_diffusers_folder
from scoresde.checkpoint.diffusers.translate import diffusers_config
from scoresde.sdes import VESDE, VPSDE, DiscreteVPSDE

from .conftest import ddpm_unet, diffusers, ncsnpp_unet, relative

X_SHAPE = (3, 3, 16, 16)
#: diffusers computes sinusoidal timestep embeddings in float32 even in float64 networks (ours in the network's
#: dtype), so float64 comparisons of timestep-conditioned networks agree to float32 rounding of the embedding only
FLOAT32_EMBEDDING = 1e-5


def _x(shape=X_SHAPE, dtype=torch.float64, seed=1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_ddpm_pipeline_outputs_sde_and_conventions(tmp_path):
    unet = ddpm_unet()
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path)
    model = scoresde.load_diffusers(tmp_path, dtype=torch.float64)
    sde = model.sde
    assert type(sde) is DiscreteVPSDE and (sde.beta_min, sde.beta_max, sde.N) == (0.1, 20.0, 1000)
    assert (model.continuous, model.label_type, model.output_type) == (False, "timestep", "eps")
    # the discrete DDPM chain is the scheduler's: the same float32 betas and products
    scheduler = diffusers.DDPMScheduler()
    f32 = scoresde.load_diffusers(tmp_path).sde
    assert torch.equal(f32.discrete_betas, scheduler.betas)
    assert torch.equal(f32.alphas_cumprod, scheduler.alphas_cumprod)
    x, k = _x(), torch.tensor([0, 421, 999])
    with torch.no_grad():
        ref = unet.double()(x, k).sample
        eps = model.eps(x, k / 999.0)  # the network sees t (N - 1) = k
        assert relative(eps, ref) < FLOAT32_EMBEDDING
        # score = -eps / sqrt(1 - alphas_cumprod[k]) (Score SDE's discrete DDPM convention), the float64 table
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        std = torch.sqrt(1.0 - torch.cumprod(1.0 - betas, 0)[k])[:, None, None, None]
        assert relative(model.score(x, k / 999.0), -ref / std) < FLOAT32_EMBEDDING
    assert model.step == 0 and model.config.model["name"] == "ddpm" and model.config.training.continuous is False
    # scoresde.load_checkpoint recognises the folder and loads it the same way
    same = scoresde.load_checkpoint(tmp_path, dtype=torch.float64)
    assert type(same.sde) is DiscreteVPSDE
    with torch.no_grad():
        assert torch.equal(same.eps(x, k / 999.0), eps)


def test_float32_outputs_within_1e5(tmp_path):
    # single-head attention written as attention_head_dim = the channel count (64) is accepted too
    unet = ddpm_unet(attention_head_dim=64)
    unet.save_pretrained(tmp_path)
    model = scoresde.load_diffusers(tmp_path, sde=VPSDE())
    x, k = _x(dtype=torch.float32), torch.tensor([3, 500, 998])
    with torch.no_grad():
        assert relative(model.net(x, k.float()), unet(x, k).sample) < 1e-5


def test_ncsnpp_score_sde_ve_pipeline(tmp_path):
    unet = ncsnpp_unet()
    scheduler = diffusers.ScoreSdeVeScheduler(num_train_timesteps=2000, sigma_min=0.01, sigma_max=348.0)
    diffusers.ScoreSdeVePipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path)
    model = scoresde.load_diffusers(tmp_path, dtype=torch.float64)
    sde = model.sde
    assert type(sde) is VESDE and (sde.sigma_min, sde.sigma_max, sde.N) == (0.01, 348.0, 2000)
    assert (model.continuous, model.label_type, model.output_type) == (True, "sigma", "score")
    assert model.config.model["progressive"] == "output_skip" and model.config.data.centered is False
    x, t = _x((2, 3, 8, 8)), torch.tensor([0.05, 0.9], dtype=torch.float64)
    with torch.no_grad():
        ref = unet.double()(x, sde.sigma(t)).sample  # ScoreSdeVePipeline feeds sigma(t), the output is the score
        assert relative(model.score(x, t), ref) < 1e-12


def test_positional_skip_layout_with_flipped_embedding_and_sde_argument(tmp_path):
    # a timestep-conditioned NCSN++ (DDPM++ with skip blocks) in diffusers' default [cos, sin] embedding order
    unet = ncsnpp_unet(time_embedding_type="positional", flip_sin_to_cos=True, freq_shift=1)
    unet.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no scheduler config: pass sde="):
        scoresde.load_diffusers(tmp_path)
    model = scoresde.load_diffusers(tmp_path, sde=VPSDE(), dtype=torch.float64)
    assert model.config.model["embedding_type"] == "positional" and model.continuous is False
    x, k = _x((2, 3, 8, 8)), torch.tensor([17, 803])
    with torch.no_grad():
        assert relative(model.net(x, k.double()), unet.double()(x, k).sample) < FLOAT32_EMBEDDING


def test_bin_weights_with_deprecated_attention_names(tmp_path):
    unet = ddpm_unet()
    renamed = {}
    for key, value in unet.state_dict().items():
        for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            key = key.replace(f".{new}.", f".{old}.")
        renamed[key] = value
    assert any(".proj_attn." in k for k in renamed)
    torch.save(renamed, tmp_path / "diffusion_pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(dict(unet.config, _class_name="UNet2DModel")))
    diffusers.DDPMScheduler().save_config(tmp_path)  # scheduler_config.json beside the model
    model = scoresde.load_diffusers(tmp_path / "config.json", dtype=torch.float64)
    assert model.sde.N == 1000 and model.continuous is False
    x, k = _x(), torch.tensor([5, 50, 500])
    with torch.no_grad():
        assert relative(model.net(x, k.double()), unet.double()(x, k).sample) < FLOAT32_EMBEDDING


def test_continuous_reading_of_a_ddpm_folder(tmp_path):
    diffusers.DDPMPipeline(unet=ddpm_unet(), scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path)
    model = scoresde.load_diffusers(tmp_path, continuous=True, dtype=torch.float64)
    assert (model.continuous, model.label_type, model.output_type) == (True, "time", "eps")
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    assert torch.allclose(model.labels(t), t * 999)  # = the timestep t (N - 1) for N = 1000
    with pytest.raises(ValueError, match="only for N = 1000"):
        diffusers_config(ddpm_unet().config, {"_class_name": "DDPMScheduler", "num_train_timesteps": 500},
                         continuous=True)


@pytest.mark.parametrize(("change", "message"), [
    ({"attention_head_dim": 8}, r"attention_head_dim=8 .*\(supported: None, or the channel count of every "
                                r"attention block \[64\]: single-head"),
    ({"downsample_padding": 1}, r"downsample_padding=1 \(supported: 0\)"),
    ({"freq_shift": 0}, r"freq_shift=0 \(supported: 1\)"),
    ({"norm_eps": 1e-5}, r"norm_eps=1e-05 \(supported: 1e-06\)"),
    ({"num_class_embeds": 10}, r"num_class_embeds=10 \(supported: None\)"),
    ({"down_block_types": ["ResnetDownsampleBlock2D", "AttnDownBlock2D"]}, "has no scoresde counterpart"),
    ({"up_block_types": ["UpBlock2D", "UpBlock2D"]}, r"attention at resolutions \[8\] in the encoder but \[\]"),
])
def test_config_fields_without_a_counterpart_are_named(change, message):
    """A config field scoresde cannot honour is one error naming the field, its value and what is supported."""
    config = dict(ddpm_unet().config, _class_name="UNet2DModel", **change)
    with pytest.raises(ValueError, match=message):
        diffusers_config(config, {"_class_name": "DDPMScheduler"})


@pytest.mark.parametrize(("scheduler", "message"), [
    ({"_class_name": "DDPMScheduler", "beta_schedule": "squaredcos_cap_v2"}, "beta_schedule='squaredcos_cap_v2'"),
    ({"_class_name": "DDPMScheduler", "prediction_type": "v_prediction"}, "prediction_type='v_prediction'"),
    ({"_class_name": "FlowMatchEulerDiscreteScheduler"}, "scheduler 'FlowMatchEulerDiscreteScheduler' is not "
                                                         "supported; supported: ScoreSdeVeScheduler"),
])
def test_unsupported_schedulers(scheduler, message):
    with pytest.raises(ValueError, match=message):
        diffusers_config(dict(ddpm_unet().config, _class_name="UNet2DModel"), scheduler)


def test_unsupported_pipeline_and_model_classes(tmp_path):
    latent = tmp_path / "ldm"
    latent.mkdir()
    (latent / "model_index.json").write_text(json.dumps({
        "_class_name": "LDMPipeline", "unet": ["diffusers", "UNet2DModel"], "vqvae": ["diffusers", "VQModel"],
        "scheduler": ["diffusers", "DDIMScheduler"]}))
    with pytest.raises(ValueError, match=r"LDMPipeline .*vqvae=VQModel.* is not supported; scoresde reads "
                                         r"pipelines of one unconditional UNet2DModel"):
        scoresde.load_diffusers(latent)
    text = tmp_path / "sd"
    text.mkdir()
    (text / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"], "scheduler": ["diffusers", "PNDMScheduler"]}))
    with pytest.raises(ValueError, match=r"StableDiffusionPipeline .* is not supported"):
        scoresde.load_diffusers(text)
    bare = tmp_path / "cond"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ValueError, match="model class 'UNet2DConditionModel' is not supported; supported: "
                                         "UNet2DModel"):
        scoresde.load_diffusers(bare, sde=VPSDE())
    with pytest.raises(FileNotFoundError, match="not a diffusers folder"):
        scoresde.load_diffusers(tmp_path)


def test_mismatched_weights_name_the_keys(tmp_path):
    unet = ddpm_unet()
    unet.save_pretrained(tmp_path)
    from safetensors.torch import load_file, save_file

    path = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    del state["mid_block.attentions.0.to_k.bias"]
    state["conv_in.weight"] = state["conv_in.weight"][:16]
    save_file(state, path)
    with pytest.raises(ValueError, match=r"missing keys \(1\): mid_block\.attentions\.0\.to_k\.bias; shape "
                                         r"mismatches \(1\): conv_in\.weight \(16, 3, 3, 3\) vs \(32, 3, 3, 3\)"):
        scoresde.load_diffusers(tmp_path, sde=VPSDE())


@pytest.mark.parametrize("damage", ["header", "truncated"])
def test_a_corrupt_weights_file_is_one_line_naming_it(tmp_path, damage):
    """A corrupt safetensors header (or a truncated file) in a diffusers folder was a 23-line traceback that did not
    name the file (issue 22)."""
    ddpm_unet().save_pretrained(tmp_path)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "header":
        data[8:12] = b"\xff\xfe{["
    else:
        del data[len(data) // 2:]
    path.write_bytes(bytes(data))
    with pytest.raises(scoresde.checkpoint.CorruptCheckpointError, match=rf"^{path} is truncated or corrupt: ") as e:
        scoresde.load_diffusers(tmp_path, sde=VPSDE())
    assert "\n" not in str(e.value)


def test_sde_argument_with_a_scheduler_is_refused(tmp_path):
    diffusers.DDPMPipeline(unet=ddpm_unet(), scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has a scheduler config, which fixes the SDE"):
        scoresde.load_diffusers(tmp_path, sde=VPSDE())
    unet_config, state, scheduler = read_diffusers_folder(tmp_path)
    assert scheduler["_class_name"] == "DDPMScheduler" and "conv_in.weight" in state
    assert math.isclose(unet_config["norm_eps"], 1e-6)


def test_a_loaded_ve_model_runs_every_sampler_the_likelihood_and_inpainting(tmp_path):
    """The loaded adapter is a model like any other: each registered sampler that serves VE runs on it, the
    probability-flow likelihood and inpainting take it, and every result is finite."""
    unet = ncsnpp_unet()
    diffusers.ScoreSdeVePipeline(unet=unet, scheduler=diffusers.ScoreSdeVeScheduler(sigma_max=50.0)).save_pretrained(
        tmp_path)
    model = scoresde.load_diffusers(tmp_path)
    shape = (1, 3, 8, 8)
    options = {"pc": {"steps": 2}, "ode": {"rtol": 0.1, "atol": 0.1}, "ddim": {"steps": 2}, "heun": {"steps": 2},
               "unipc": {"steps": 2}, "dpm_solver": {"steps": 2, "order": 1}}
    for name, kw in options.items():
        x = scoresde.sample(model, shape, sampler=name, generator=torch.Generator().manual_seed(0), **kw)
        assert x.shape == shape and torch.isfinite(x).all(), name
    pixels = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    bpd, info = scoresde.bits_per_dim(model.sde, model, pixels, method="euler", steps=2, return_info=True)
    assert torch.isfinite(bpd).all() and info.nfe > 0
    mask = torch.zeros(shape)
    mask[..., :4] = 1.0
    x_obs = pixels.float() / 255.0
    filled = scoresde.inpaint(model.sde, model, x_obs=x_obs, mask=mask, generator=torch.Generator().manual_seed(2),
                              steps=2)
    assert torch.isfinite(filled).all()
    assert torch.allclose(filled[..., :4], x_obs[..., :4], atol=0.2)  # the observed half is kept (up to noise)


def test_ncsnpp_below_128_channels_normalises_differently(tmp_path):
    # diffusers' skip-block attention uses 32 GroupNorm groups, NCSN++ min(C / 4, 32): 16 at 64 channels
    ncsnpp_unet(block_out_channels=(64, 64)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"GroupNorm group counts differ .*equal from 128 channels\): "
                                         r"enc\.4x4_attn0\.GroupNorm_0 \(64 channels: 32 vs 16\)"):
        scoresde.load_diffusers(tmp_path, sde=VESDE())


def test_sde_argument_must_fit_a_run_config(tmp_path):
    ddpm_unet().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"sde cannot be held by a run config: VPSDE has T=2.0"):
        scoresde.load_diffusers(tmp_path, sde=VPSDE(T=2.0))
    with pytest.raises(ValueError, match=r"sde cannot be held by a run config: VESDE has prior_mean=0.5"):
        scoresde.load_diffusers(tmp_path, sde=VESDE(prior_mean=0.5))
    with pytest.raises(ValueError, match="sde must be one of VESDE, VPSDE, SubVPSDE, DiscreteVPSDE, EDM, CosineVP, "
                                         "RectifiedFlow, got PSLD"):
        scoresde.load_diffusers(tmp_path, sde=scoresde.sdes.PSLD())
