"""Issue 26 item 7(i): every preset has a one-line description beside its definition, ``scoresde configs`` prints it,
and what the line says (SDE, network, data, resolution) is what the preset's config trains."""

from __future__ import annotations

import re

import pytest

from scoresde.cli import main
from scoresde.config import PRESETS, describe_preset, get_preset, list_presets
from scoresde.config.presets import Preset

#: ``training.sde`` -> how a description names it (``VP`` must not be read inside ``sub-VP``)
_SDE_WORDS = {"vesde": r"\bVE SDE", "vpsde": r"(?<!-)\bVP SDE", "subvpsde": r"\bsub-VP SDE", "psld": r"\bPSLD SDE",
              "cld": r"\bCLD SDE", "edm": r"\bEDM SDE", "rectified_flow": r"\brectified flow",
              "cosine": r"\bcosine"}
#: ``model.name`` -> the network names a description may use (Score SDE's ``ncsnpp`` code builds NCSN++ and DDPM++)
_NETWORK_WORDS = {"ncsnpp": ("NCSN++", "DDPM++"), "ddpm": ("DDPM",), "ncsn": ("NCSN",), "ncsnv2_64": ("NCSNv2",),
                  "ncsnv2_128": ("NCSNv2",), "toy_mlp": ("MLP",)}
#: ``data.dataset`` -> how a description names it
_DATASET_WORDS = {"CIFAR10": "CIFAR-10", "CELEBA": "CelebA", "CelebAHQ": "CelebA-HQ", "FFHQ": "FFHQ",
                  "LSUN": "LSUN", "digits": "digits", "folder": "image folder", "checkerboard": "checkerboard",
                  "swiss_roll": "Swiss roll", "two_moons": "two moons", "gaussian_mixture": "Gaussian mixture"}


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_has_a_one_line_description_that_matches_its_config(name):
    description = describe_preset(name)
    assert isinstance(PRESETS[name], Preset) and description == PRESETS[name].description
    assert description.strip() == description and description and "\n" not in description and len(description) < 180
    config = get_preset(name)
    training, model, data = config["training"], config["model"], config["data"]
    # ve/ncsn/celeba names its SDE in training.loss (an original typo, kept: the loader reads it as vesde)
    sde = training.get("sde", training.get("loss"))
    assert re.search(_SDE_WORDS[sde], description), (name, sde)
    assert any(word in description for word in _NETWORK_WORDS[model["name"]]), (name, model["name"])
    assert _DATASET_WORDS[data["dataset"]] in description, (name, data["dataset"])
    size = data["image_size"]
    assert (f"{size}x{size}" if model["name"] != "toy_mlp" else "2-D") in description, name
    # NCSN/NCSNv2 index discrete noise levels whatever training.continuous says (ve/ncsnv2/bedroom's typo keeps true)
    ncsn = model["name"] in ("ncsn", "ncsnv2_64", "ncsnv2_128")
    assert ("discrete" if ncsn or not training["continuous"] else "continuous") in description, name


def test_no_two_presets_share_a_description():
    lines = [describe_preset(name) for name in list_presets()]
    assert len(set(lines)) == len(lines)


def test_a_preset_description_must_be_one_non_empty_line():
    for bad in ("", "   ", "two\nlines"):
        with pytest.raises(ValueError, match="a preset description is one non-empty line"):
            Preset(dict, bad)
    with pytest.raises(ValueError, match="unknown preset 'vp/cifar10_ddpmp'; closest presets: vp/cifar10_ddpmpp"):
        describe_preset("vp/cifar10_ddpmp")
    assert describe_preset("configs/vp/ddpm/cifar10.py") == describe_preset("vp/ddpm/cifar10")


def test_configs_prints_each_name_with_its_description(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(list_presets()) == 68
    for line, name in zip(lines, list_presets(), strict=True):
        assert re.fullmatch(rf"{re.escape(name)} +{re.escape(describe_preset(name))}", line), line
    column = {line.index(describe_preset(name)) for line, name in zip(lines, list_presets(), strict=True)}
    assert len(column) == 1  # the descriptions start in one column
    assert main(["configs", "--filter", "digits/"]) == 0
    out = capsys.readouterr().out
    assert "digits/vp_ddpmpp  " in out and "digits 16x16" in out and "toy/" not in out
