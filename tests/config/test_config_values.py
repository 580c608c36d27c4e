"""Config values are checked against each field's declared bounds before anything is written (issue 22, item 5).

Found by the bad-input battery: ``optim.lr=Infinity`` and ``optim.grad_clip=NaN`` were accepted (a run of NaN
learning rates), ``training.batch_size=1e12`` failed in the allocator after ``config.json`` was written (which then
refused the corrected config), ``model.beta_max=1e308`` failed converting to float32, ``seed=1e23`` said ``Overflow
when unpacking long long`` without the key. Each is now one line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses

import pytest

from scoresde.cli import main
from scoresde.config import load_config
from scoresde.config.schema import MAX_BATCH_ELEMENTS, ConfigError, TrainingConfig
from scoresde.numerics.checks import Bounds, check_number

CASES = [
    ("optim.lr=Infinity", "optim.lr must be a finite number > 0, got inf"),
    ("optim.lr=NaN", "optim.lr must be a finite number > 0, got nan"),
    ("optim.lr=0", "optim.lr must be a finite number > 0, got 0.0"),
    ("optim.grad_clip=NaN", "optim.grad_clip must be a finite number, got nan"),
    ("optim.beta1=1", "optim.beta1 must be a finite number in [0, 1), got 1.0"),
    ("training.batch_size=1e12", "training.batch_size must be an integer in [1, 2147483647], got 1000000000000"),
    ("training.batch_size=0", "training.batch_size must be an integer in [1, 2147483647], got 0"),
    ("training.eps=-Infinity", "training.eps must be a finite number in (0, 1), got -inf"),
    ("training.n_iters=1e30", "training.n_iters must be a positive integer in the int64 range [-2**63, 2**63 - 1], "
                              "got 1000000000000000019884624838656"),
    ("sampling.snr=NaN", "sampling.snr must be a finite number >= 0, got nan"),
    ("sampling.s_churn=Infinity", "sampling.s_churn must be a finite number, got inf"),
    ("model.beta_max=1e308", "model.beta_max must be a finite number in [-3.40282e+38, 3.40282e+38], got 1e+308"),
    ("model.nf=1e8", "model.nf must be an integer in [-16384, 16384], got 100000000"),
    ("seed=1e23", "seed must be an integer in [0, 9223372036854775807], got 99999999999999991611392"),
    ("seed=-1", "seed must be an integer in [0, 9223372036854775807], got -1"),
    ("training.batch_size=100000000", "training.batch_size=100000000 with data.num_channels=1 and data.image_size=16 "
                                      "gives micro-batches of 100000000 x 256 = 2.56e+10 entries; the limit is 2**31 "
                                      "entries (8 GiB in float32, scoresde.config.schema.MAX_BATCH_ELEMENTS): use a "
                                      "smaller batch or a larger training.grad_accum"),
]


@pytest.mark.parametrize(("override", "message"), CASES)
def test_a_bad_value_is_one_line_naming_the_key_and_nothing_is_written(override, message, tmp_path, capsys) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("digits/vp_ddpmpp", [override])
    assert str(err.value) == message
    workdir = tmp_path / "run"
    assert main(["train", "--config", "digits/vp_ddpmpp", "--workdir", str(workdir), "--set", override]) == 2
    assert capsys.readouterr().err == f"scoresde train: error: {message}\n"
    assert not (workdir / "config.json").exists()


def test_the_toy_width_is_bounded_as_the_networks_integer(tmp_path, capsys) -> None:
    workdir = tmp_path / "run"
    assert main(["train", "--config", "toy/gaussian_mixture", "--workdir", str(workdir), "--set",
                 "model.hidden=1e8"]) == 2
    assert capsys.readouterr().err == ("scoresde train: error: model.hidden must be an integer in [-16384, 16384], "
                                       "got 100000000\n")
    assert not workdir.exists()


def test_the_batch_limit_counts_the_micro_batch_and_toy_examples() -> None:
    # 2**22 digits (1x16x16 = 256 entries) are 2**30 entries: allowed; twice that per micro-batch is refused
    assert load_config("digits/vp_ddpmpp", ["training.batch_size=4194304"]).training.batch_size == 2**22
    with pytest.raises(ConfigError, match="gives micro-batches of 8388609 x 256"):
        load_config("digits/vp_ddpmpp", ["training.batch_size=8388609"])
    # ... unless grad_accum splits it
    load_config("digits/vp_ddpmpp", ["training.batch_size=8388609", "training.grad_accum=2"])
    # a 2-D toy example is 2 entries: 2**30 points is the limit
    load_config("toy/gaussian_mixture", [f"training.batch_size={MAX_BATCH_ELEMENTS // 2}"])
    with pytest.raises(ConfigError, match=r"gives micro-batches of 1073741825 x 2 = 2\.15e\+09"):
        load_config("toy/gaussian_mixture", [f"training.batch_size={MAX_BATCH_ELEMENTS // 2 + 1}"])


def test_every_numeric_training_field_declares_its_bounds() -> None:
    """The bounds live next to each field: a new numeric training key without them would only be checked finite."""
    for f in dataclasses.fields(TrainingConfig):
        if f.type in ("int", "float"):
            assert isinstance(f.metadata.get("bounds"), Bounds), f.name


@pytest.mark.parametrize(("bounds", "inside", "outside"), [
    (Bounds(low=0, high=1, low_open=True, high_open=True), [1e-12, 0.5, 1 - 1e-12], [0.0, 1.0, float("nan")]),
    (Bounds(low=0, high=1, high_open=True), [0.0, 0.999], [1.0, -1e-300]),
    (Bounds(low=1), [1, 2**63 - 1], [0, 2**63, float("inf")]),
    (Bounds(), [-1e300, 0, 1e300], [float("inf"), float("-inf"), float("nan"), True]),
    (Bounds(finite=False), [float("inf")], [float("nan")]),
])
def test_check_number_ends_of_each_interval(bounds, inside, outside) -> None:
    for value in inside:
        assert check_number("x", value, bounds) == value
    for value in outside:
        with pytest.raises(ValueError, match=r"^x must be "):
            check_number("x", value, bounds)
