"""Bad ``model`` values are one clear line before anything is built or written (issue 26, item 7(c)): a string where
a list of integers belongs failed with "not all arguments converted during string formatting", a non-integer width
deep inside ``torch.empty``, and attention at a resolution the U-Net does not have was silently no attention."""

from __future__ import annotations

import pytest

from scoresde.cli import main
from scoresde.config import build_score_model, load_config


@pytest.mark.parametrize("preset", ["digits/vp_ddpmpp", "toy/gaussian_mixture"])
def test_the_preset_still_builds(preset: str) -> None:
    build_score_model(load_config(preset))


@pytest.mark.parametrize(("override", "message"), [
    ("model.ch_mult=1,2", "model.ch_mult must be a list of integers, got '1,2'"),
    ("model.nf=abc", "model.nf must be an integer, got 'abc'"),
    ("model.dropout=true", "model.dropout must be a number, got True"),
    ("model.attn_resolutions=[5]", r"model.attn_resolutions [5] names resolution(s) [5] that this network does not "
                                   r"have; with image_size 16 and 3 levels of ch_mult they are [16, 8, 4]"),
])
def test_a_bad_model_value_is_one_line_naming_it(override: str, message: str, tmp_path, capsys) -> None:
    with pytest.raises(ValueError) as err:
        build_score_model(load_config("digits/vp_ddpmpp", [override]))
    assert str(err.value) == message
    workdir = tmp_path / "run"
    assert main(["train", "--config", "digits/vp_ddpmpp", "--workdir", str(workdir), "--set", override]) == 2
    assert capsys.readouterr().err == f"scoresde train: error: {message}\n"
    assert not workdir.exists()  # refused before the run folder is written


def test_ddpm_checks_its_attention_resolutions_too() -> None:
    values = load_config("vp/ddpm/cifar10").to_dict()
    values["model"].update(nf=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[3])
    with pytest.raises(ValueError, match=r"names resolution\(s\) \[3\]"):
        build_score_model(values)


def test_whole_number_floats_are_integers_json_numbers() -> None:
    values = load_config("digits/vp_ddpmpp").to_dict()
    values["model"].update(nf=16.0, ch_mult=[1.0, 2.0, 2.0])
    net = build_score_model(values).net
    assert net.nf == 16 and isinstance(net.nf, int) and net.ch_mult == (1, 2, 2)
