"""EDM's non-leaking augmentation (scoresde.data.augment): EDM's own outputs (fixture), exact invariants (p = 0, flips,
integer shifts, quarter turns), label layout and rates, and the row slicing the trainer relies on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.data.augment import AUGMENT_LABEL_WIDTHS, SYM6_LOWPASS, AugmentPipe, augment_rows

FIXTURE = Path(__file__).parent / "data" / "edm_augment.npz"
NONE = dict(xflip=0, yflip=0, scale=0, rotate_frac=0, aniso=0, translate_frac=0)
#: the cases of the fixture: (input seed is stored; draw seed, kwargs) -- tests/data/data/README.md
CASES = {"cifar_p0.5": (7, dict(p=0.5)), "all_p0.6": (3, dict(p=0.6, rotate_int=1, translate_int=1)),
         **{f"single_{t}": (5, dict(NONE, p=1.0, **{t: 1})) for t in AUGMENT_LABEL_WIDTHS}}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("case", list(CASES))
def test_equals_edm_augment_pipe(case: str) -> None:
    """Same seed, same parameters, same images (to float rounding) and the same labels, in EDM's layout."""
    if not FIXTURE.exists():
        pytest.skip(f"EDM's augmentation outputs {FIXTURE} are missing (tests/data/data/README.md)")
    data = np.load(FIXTURE)
    seed, kwargs = CASES[case]
    x = torch.from_numpy(data[f"{case}/input"])
    images, labels = AugmentPipe(**kwargs)(x, _gen(seed))
    want = torch.from_numpy(data[f"{case}/labels"])
    assert labels.shape == want.shape == (x.shape[0], AugmentPipe(**kwargs).augment_dim)
    torch.testing.assert_close(labels, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(images, torch.from_numpy(data[f"{case}/images"]), rtol=0, atol=5e-5)
    assert not torch.allclose(images, x, atol=1e-2)  # the case did transform something


def test_label_layout_and_dimension() -> None:
    assert AugmentPipe(p=0.12).augment_dim == 9  # EDM's CIFAR-10 networks: augment_dim=9
    assert AugmentPipe(p=0.12, rotate_int=1, translate_int=1).augment_dim == 13
    assert AugmentPipe(p=0.5, **NONE).augment_dim == 0
    # blocks in order: xflip, yflip, scale, (cos-1, sin) of the rotation, aniso (w cos r, w sin r), translate_frac
    pipe = AugmentPipe(p=1.0)
    x = torch.randn(3, 1, 8, 8, generator=_gen(0))
    draws = pipe.draw(tuple(x.shape), _gen(1))
    _, labels = pipe.apply(x, draws)
    angle, (w, r), t = draws["rotate_frac"], draws["aniso"].unbind(1), draws["translate_frac"]
    expected = torch.stack([draws["xflip"].float(), draws["yflip"].float(), draws["scale"], angle.cos() - 1,
                            angle.sin(), w * r.cos(), w * r.sin(), t[:, 0], t[:, 1]], dim=1)
    torch.testing.assert_close(labels, expected, rtol=0, atol=0)


def test_p0_is_the_identity_with_zero_labels() -> None:
    x = torch.randn(5, 3, 8, 8, generator=_gen(2))
    for kwargs in ({}, {"rotate_int": 1, "translate_int": 1}):
        images, labels = AugmentPipe(p=0.0, **kwargs)(x, _gen(3))
        assert torch.equal(images, x) and labels.shape == (5, AugmentPipe(p=0, **kwargs).augment_dim)
        assert not labels.any()


def test_xflip_twice_and_four_quarter_turns_are_the_identity() -> None:
    x = torch.randn(4, 2, 6, 6, generator=_gen(4))
    pipe = AugmentPipe(p=1.0, **dict(NONE, xflip=1))
    once, labels = pipe.apply(x, {"xflip": torch.ones(4, dtype=torch.int64)})
    assert torch.equal(once, x.flip(3)) and torch.equal(labels, torch.ones(4, 1))
    assert torch.equal(pipe.apply(once, {"xflip": torch.ones(4, dtype=torch.int64)})[0], x)
    quarter = AugmentPipe(p=1.0, **dict(NONE, rotate_int=1))
    y = x
    for _ in range(4):
        y, labels = quarter.apply(y, {"rotate_int": torch.ones(4, dtype=torch.int64)})
        assert labels.tolist() == [[1.0, 0.0]] * 4
    assert torch.equal(y, x)
    assert torch.equal(quarter.apply(x, {"rotate_int": torch.ones(4, dtype=torch.int64)})[0], x.rot90(1, (2, 3)))


def test_integer_translation_moves_pixels_exactly_and_reflects_at_edges() -> None:
    h, w = 7, 9
    x = torch.randn(3, 2, h, w, generator=_gen(5))
    shifts = torch.tensor([[2, -1], [-3, 3], [0, 0]])  # (tx, ty) per image
    pipe = AugmentPipe(p=1.0, **dict(NONE, translate_int=1))
    y, labels = pipe.apply(x, {"translate_int": shifts})

    def mirror(i: int, n: int) -> int:  # reflection about the edge pixels, written out
        while not 0 <= i < n:
            i = -i if i < 0 else 2 * (n - 1) - i
        return i

    for b, (tx, ty) in enumerate(shifts.tolist()):
        for row in range(h):
            for col in range(w):
                assert torch.equal(y[b, :, row, col], x[b, :, mirror(row + ty, h), mirror(col - tx, w)])
    torch.testing.assert_close(labels, shifts / torch.tensor([w * 0.125, h * 0.125]), rtol=0, atol=0)
    assert torch.equal(y[2], x[2])


def _smooth(h: int, w: int):
    """A band-limited test image ``f`` (two plane waves, at most 0.07 cycles per pixel) and the centred pixel
    coordinates ``(x, y)`` of an ``h x w`` image (x to the right, y down)."""
    y, x = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")

    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wave = torch.cos(2 * math.pi * (0.06 * x + 0.035 * y) + 0.3)
        return wave + 0.5 * torch.sin(2 * math.pi * (0.05 * y - 0.03 * x))
    return f, x, y


def test_geometric_transforms_move_a_smooth_image_as_their_maps_say() -> None:
    """Away from the edges, the output at centred pixel p is the input image at ``A^-1 p``: rotation ``R(w)``
    (``p -> R(w) p``), scaling by ``s = 2^(0.2 w)`` (``p -> p / s``), translation by ``0.125 w`` of the size
    (``p -> p - t``). A whole-pixel translation is exact (the filters commute with even shifts of the 2x grid)."""
    f, x, y = _smooth(24, 24)
    image = f(x, y)[None, None].float()
    inner = (..., slice(5, -5), slice(5, -5))
    c, s = math.cos(0.7), math.sin(0.7)
    scale = 2 ** (0.2 * 1.3)
    cases = [("rotate_frac", torch.tensor([0.7]), f(c * x - s * y, s * x + c * y), f(c * x + s * y, c * y - s * x)),
             ("scale", torch.tensor([1.3]), f(x / scale, y / scale), f(x * scale, y * scale)),
             ("translate_frac", torch.tensor([[1.1, -0.6]]), f(x - 1.1 * 3, y + 0.6 * 3), f(x + 1.1 * 3, y - 0.6 * 3))]
    for name, params, want, inverse in cases:
        out, _ = AugmentPipe(p=1.0, **dict(NONE, **{name: 1})).apply(image, {name: params})
        assert (out[0, 0] - want)[inner].abs().max() < 0.03, name
        assert (out[0, 0] - inverse)[inner].abs().max() > 0.3, name  # the test tells the directions apart
    x = torch.randn(2, 1, 12, 12, generator=_gen(6))
    shift = AugmentPipe(p=1.0, **dict(NONE, translate_frac=1))
    out, _ = shift.apply(x, {"translate_frac": torch.tensor([[2 / (12 * 0.125), 0.0]] * 2)})  # 2 pixels right
    torch.testing.assert_close(out[..., :, 2:], x[..., :, :-2], rtol=0, atol=1e-5)


def test_symlet_filter_is_orthonormal() -> None:
    h = torch.tensor(SYM6_LOWPASS, dtype=torch.float64)
    assert float(h.sum()) == pytest.approx(math.sqrt(2), abs=1e-12)
    for shift in range(0, 12, 2):
        assert float((h[shift:] * h[:12 - shift]).sum()) == pytest.approx(1.0 if shift == 0 else 0.0, abs=1e-12)


def test_labels_zero_where_not_applied_and_rates() -> None:
    n, p = 4000, 0.3
    pipe = AugmentPipe(p=p, rotate_int=1, translate_int=1)
    draws = pipe.draw((n, 1, 8, 8), _gen(7))
    x = torch.zeros(n, 1, 8, 8)
    _, labels = pipe.apply(x, draws)
    start = 0
    for name in pipe.active:
        width = AUGMENT_LABEL_WIDTHS[name]
        block, params = labels[:, start:start + width], draws[name].reshape(n, -1)
        start += width
        applied = (params[:, :1] if name == "aniso" else params).ne(0).any(1)  # aniso's angle is drawn regardless
        assert not block[~applied].any(), name
        rate = applied.float().mean().item()
        # a gated transform is applied with probability p; flips and quarter turns draw "no change" with probability
        # 1/2 and 1/4, and on 8x8 images an integer shift (at most 1 pixel) rounds to none with probability 1/4
        expected = {"xflip": 0.5, "yflip": p / 2, "rotate_int": p * 3 / 4, "translate_int": p * 3 / 4}.get(name, p)
        assert abs(rate - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (name, rate, expected)


def test_rows_of_the_global_batch_are_augmented_alike() -> None:
    """The trainer draws for the global batch and augments each micro-batch with its rows."""
    pipe = AugmentPipe(p=0.7)
    x = torch.randn(8, 3, 8, 8, generator=_gen(8))
    draws = pipe.draw(tuple(x.shape), _gen(9))
    whole, whole_labels = pipe.apply(x, draws)
    for rows in (slice(0, 3), slice(3, 8)):
        part, cond = augment_rows(pipe, x[rows], draws, rows)
        torch.testing.assert_close(part, whole[rows], rtol=0, atol=1e-5)
        assert torch.equal(cond["augment_labels"], whole_labels[rows])
    same, cond = augment_rows(None, x, None, slice(0, 8))
    assert same is x and cond == {}


def test_bad_input_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"AugmentPipe p must be a finite number in \[0, 1\], got 1.5"):
        AugmentPipe(p=1.5)
    with pytest.raises(ValueError, match=r"AugmentPipe scale must be a finite number >= 0, got -1"):
        AugmentPipe(p=0.1, scale=-1)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\), got shape \(4, 8\)"):
        AugmentPipe(p=0.1)(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="rotate_int needs square images, got 6x8"):
        AugmentPipe(p=1.0, rotate_int=1)(torch.zeros(2, 1, 6, 8), _gen(0))
    with pytest.raises(ValueError, match="draws lack yflip, scale"):
        AugmentPipe(p=1.0).apply(torch.zeros(2, 1, 6, 6), {"xflip": torch.zeros(2, dtype=torch.int64)})
