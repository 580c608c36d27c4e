"""Non-finite and empty inputs to the public entry points are one ``ValueError`` naming the argument (issue 22, item 7).

Found by the bad-input battery: NaN/inf data made ``log_likelihood``, ``encode`` and the ODE sampler stop with
``AssertionError: underflow in dt 0.0``; one NaN in ``x_T`` turned every sample NaN through the Langevin corrector's
batch-averaged step size; ``inpaint`` returned NaN in observed entries when an unobserved one was NaN; a 0-row batch
was an ``IndexError``. The model is the exact score of ``N(0, I)`` data (no network), so each case takes milliseconds.
"""

from __future__ import annotations

import re

import pytest
import torch

import scoresde
from scoresde.numerics.checks import check_tensor
from scoresde.sdes import VPSDE


def gaussian_score(sde):
    """Exact score of ``N(0, I)`` data perturbed by a scalar SDE: ``-x / (alpha^2 + sigma^2)``."""

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        var = sde.alpha(t) ** 2 + sde.sigma(t) ** 2
        return -x / var.reshape(-1, *([1] * (x.dim() - 1)))

    return score


SDE = VPSDE(N=20)
SCORE = gaussian_score(SDE)


def with_bad(value: float, index: tuple[int, ...], shape: tuple[int, ...] = (4, 3, 2, 2)) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    x[index] = value
    return x


CALLS = {
    "sample": ("x_T", lambda x: scoresde.sample(SDE, SCORE, sampler="pc", x_T=x, steps=3)),
    "sample_ode": ("x_T", lambda x: scoresde.sample(SDE, SCORE, sampler="ode", x_T=x)),
    "log_likelihood": ("x", lambda x: scoresde.log_likelihood(SDE, SCORE, x)),
    "bits_per_dim": ("x", lambda x: scoresde.bits_per_dim(SDE, SCORE, x, data_range=(-1.0, 1.0))),
    "encode": ("x", lambda x: scoresde.encode(SDE, SCORE, x)),
    "inpaint": ("x_obs", lambda x: scoresde.inpaint(SDE, SCORE, x, torch.ones_like(x), steps=3)),
    "inpaint_smc": ("x_obs", lambda x: scoresde.inpaint(SDE, SCORE, x, torch.ones_like(x), method="smc", steps=3)),
    "colorize": ("gray", lambda x: scoresde.colorize(SDE, SCORE, x, steps=3)),
}


@pytest.mark.parametrize("entry", list(CALLS))
@pytest.mark.parametrize(("value", "index"), [(float("nan"), (2, 1, 0, 1)), (float("inf"), (0, 0, 0, 0)),
                                              (float("-inf"), (3, 2, 1, 1))])
def test_a_non_finite_entry_is_one_line_naming_the_argument_and_index(entry, value, index) -> None:
    name, call = CALLS[entry]
    x = with_bad(value, index)
    if entry == "colorize":  # grey: the same value in every channel
        x = x[:, :1].expand(x.shape).clone()
        x[index] = value
        index = (index[0], 0, *index[2:])  # the first bad entry in row-major order
        x[index] = value
    with pytest.raises(ValueError) as err:
        call(x)
    assert str(err.value) == f"{name} has a non-finite entry {value} at index {index}; it must be finite"


@pytest.mark.parametrize("entry", list(CALLS))
def test_an_empty_batch_is_one_line(entry) -> None:
    name, call = CALLS[entry]
    with pytest.raises(ValueError) as err:
        call(torch.zeros(0, 3, 2, 2))
    assert str(err.value) == (f"{name} must hold at least one entry (a batch of at least one example), got shape "
                              "(0, 3, 2, 2)")


def test_langevin_sampling_of_a_finite_start_is_unchanged_by_the_check() -> None:
    """The check reads x_T and changes nothing: the same start gives the same (finite) samples twice."""
    x = with_bad(0.5, (0, 0, 0, 0))
    a = scoresde.sample(SDE, SCORE, sampler="pc", x_T=x, steps=30, generator=torch.Generator().manual_seed(1))
    b = scoresde.sample(SDE, SCORE, sampler="pc", x_T=x.clone(), steps=30, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(a).all() and torch.equal(a, b)


def test_inpaint_returns_the_observed_entries_bit_for_bit_and_ignores_unobserved_nan() -> None:
    x = with_bad(-0.0, (0, 0, 0, 0))  # -0.0 + 0.0 would be +0.0: exactness is checked on the bits
    mask = torch.zeros_like(x)
    mask[:, :, 0] = 1.0  # first row of each image observed
    clean = scoresde.inpaint(SDE, SCORE, x, mask, steps=30, generator=torch.Generator().manual_seed(3))
    observed = mask.bool()
    assert torch.equal(clean[observed].view(torch.int32), x[observed].view(torch.int32))
    assert torch.isfinite(clean).all()
    marked = x.clone()
    marked[~observed] = float("nan")  # NaN marks the entries to fill in: they are never read
    out = scoresde.inpaint(SDE, SCORE, marked, mask, steps=30, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, clean)
    bad = x.clone()
    bad[1, 2, 0, 1] = float("nan")  # an observed NaN is refused
    with pytest.raises(ValueError, match=re.escape("x_obs has a non-finite entry nan at index (1, 2, 0, 1)")):
        scoresde.inpaint(SDE, SCORE, bad, mask, steps=30)


def test_check_tensor_options() -> None:
    assert check_tensor("x", torch.tensor([1, 2]), finite=True, nonempty=True) is not None  # integers are finite
    assert check_tensor("x", torch.zeros(0)).numel() == 0  # both checks are opt-in
    with pytest.raises(TypeError, match=r"^x must be a tensor, got list$"):
        check_tensor("x", [1.0], finite=True)
    z = torch.tensor([[1.0, 2.0], [3.0, float("nan")]], dtype=torch.complex64)
    with pytest.raises(ValueError, match=re.escape("at index (1, 1)")):
        check_tensor("z", z, finite=True)
