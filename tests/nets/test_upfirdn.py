"""FIR resampling (``upfirdn2d`` and friends) against a direct float64 computation written from its
definition: zero insertion, zero padding (or cropping), a true 2-D convolution with the FIR kernel, then
subsampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scoresde.nets.upfirdn import (
    FusedLeakyReLU,
    conv_downsample_2d,
    downsample_2d,
    fused_leaky_relu,
    naive_downsample_2d,
    naive_upsample_2d,
    setup_kernel,
    upfirdn2d,
    upsample_2d,
    upsample_conv_2d,
)


def direct_upfirdn(x: np.ndarray, k: np.ndarray, up: int, down: int, p0: int, p1: int) -> np.ndarray:
    """Definition of upfirdn, by explicit loops over the kernel taps (float64 numpy)."""
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x  # up-1 zeros after every sample

    def pad(a: np.ndarray, axis: int) -> np.ndarray:
        size = a.shape[axis]
        a = np.take(a, range(max(-p0, 0), size - max(-p1, 0)), axis=axis)  # negative pads crop
        widths = [(0, 0)] * 4
        widths[axis] = (max(p0, 0), max(p1, 0))
        return np.pad(a, widths)

    u = pad(pad(u, 2), 3)
    kh, kw = k.shape
    oh, ow = u.shape[2] - kh + 1, u.shape[3] - kw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = u[:, :, i:i + kh, j:j + kw]
            out[:, :, i, j] = (window * k[::-1, ::-1]).sum(axis=(2, 3))  # true convolution
    return out[:, :, ::down, ::down]


def direct_transposed_conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """TF ``conv2d_transpose(x, flip(w), VALID)``: every input pixel scatters the flipped weight."""
    n, _, h, wd = x.shape
    out_c, _, k, _ = w.shape
    y = np.zeros((n, out_c, (h - 1) * stride + k, (wd - 1) * stride + k))
    wf = w[:, :, ::-1, ::-1]
    for i in range(h):
        for j in range(wd):
            y[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "nc,ocab->noab", x[:, :, i, j], wf
            )
    return y


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_upfirdn2d_matches_definition(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 7, 6))
    for kh, kw in [(4, 4), (3, 3), (4, 2)]:
        k = rng.random((kh, kw))  # asymmetric, so a flipped kernel would be caught
        for up, down, p0, p1 in itertools.product([1, 2, 3], [1, 2, 3], [-1, 0, 2, 4], [-2, 0, 1, 3]):
            expected = direct_upfirdn(x, k, up, down, p0, p1)
            if expected.size == 0:
                continue
            got = upfirdn2d(torch.from_numpy(x), torch.from_numpy(k.copy()), up=up, down=down, pad=(p0, p1))
            assert got.shape == expected.shape, (kh, kw, up, down, p0, p1)
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12,
                                       err_msg=f"k={kh}x{kw} up={up} down={down} pad=({p0},{p1})")


def test_setup_kernel_is_normalised_outer_product() -> None:
    k = setup_kernel([1, 3, 3, 1])
    assert k.dtype == torch.float32 and k.shape == (4, 4)
    expected = torch.tensor([1.0, 3.0, 3.0, 1.0])
    torch.testing.assert_close(k, torch.outer(expected, expected) / 64, rtol=0, atol=0)
    assert torch.equal(setup_kernel(k), k)  # idempotent for dyadic kernels


@pytest.mark.parametrize("factor", [2, 3])
def test_upsample_and_downsample_2d(rng: np.random.Generator, factor: int) -> None:
    x = rng.standard_normal((2, 3, 6, 6))
    taps = [1, 3, 3, 1]
    k = np.outer(taps, taps) / 64.0
    p = 4 - factor
    up = upsample_2d(torch.from_numpy(x), taps, factor=factor)
    expected_up = direct_upfirdn(x, k * factor**2, factor, 1, (p + 1) // 2 + factor - 1, p // 2)
    np.testing.assert_allclose(up.numpy(), expected_up, rtol=1e-12, atol=1e-12)
    assert up.shape == (2, 3, 6 * factor, 6 * factor)
    down = downsample_2d(torch.from_numpy(x), taps, factor=factor, gain=2.0)
    np.testing.assert_allclose(down.numpy(), direct_upfirdn(x, 2.0 * k, 1, factor, (p + 1) // 2, p // 2),
                               rtol=1e-12, atol=1e-12)
    assert down.shape == (2, 3, 6 // factor, 6 // factor)


def test_fir_resampling_preserves_constants_in_the_interior() -> None:
    x = torch.full((1, 2, 8, 8), 3.0, dtype=torch.float64)
    torch.testing.assert_close(upsample_2d(x, [1, 3, 3, 1])[..., 2:-2, 2:-2], torch.full((1, 2, 12, 12), 3.0,
                                                                                          dtype=torch.float64))
    torch.testing.assert_close(downsample_2d(x, [1, 3, 3, 1])[..., 1:-1, 1:-1], torch.full((1, 2, 2, 2), 3.0,
                                                                                            dtype=torch.float64))


def test_box_kernel_is_nearest_and_average_pool(rng: np.random.Generator) -> None:
    x = torch.from_numpy(rng.standard_normal((2, 3, 6, 8)))
    torch.testing.assert_close(upsample_2d(x), F.interpolate(x, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(downsample_2d(x), F.avg_pool2d(x, 2))
    torch.testing.assert_close(naive_upsample_2d(x), F.interpolate(x, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(naive_downsample_2d(x), F.avg_pool2d(x, 2))


def test_upsample_conv_2d_matches_definition(rng: np.random.Generator) -> None:
    """Transposed conv with the flipped weight (stride 2), then FIR with pad ((p+1)//2+1, p//2+1), p=0."""
    x = rng.standard_normal((2, 3, 5, 4))
    w = rng.standard_normal((4, 3, 3, 3))
    k = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0 * 4
    expected = direct_upfirdn(direct_transposed_conv(x, w, 2), k, 1, 1, 1, 1)
    got = upsample_conv_2d(torch.from_numpy(x), torch.from_numpy(w), [1, 3, 3, 1])
    assert got.shape == (2, 4, 10, 8)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_fused_resampling_convs_equal_unfused_in_the_interior(rng: np.random.Generator) -> None:
    """StyleGAN2's fused ops equal FIR resampling + 'same' conv away from the borders (they pad only once)."""
    x = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)))
    w = torch.from_numpy(rng.standard_normal((4, 3, 3, 3)))
    fused = upsample_conv_2d(x, w, [1, 3, 3, 1])
    unfused = F.conv2d(upsample_2d(x, [1, 3, 3, 1]), w, padding=1)
    torch.testing.assert_close(fused[..., 3:-3, 3:-3], unfused[..., 3:-3, 3:-3])
    fused = conv_downsample_2d(x, w, [1, 3, 3, 1])
    unfused = downsample_2d(F.conv2d(x, w, padding=1), [1, 3, 3, 1])
    torch.testing.assert_close(fused[..., 1:-1, 1:-1], unfused[..., 1:-1, 1:-1])
    assert fused.shape == (2, 4, 4, 4)


def test_kernel_follows_input_dtype_and_gradients() -> None:
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    k = setup_kernel([1, 3, 3, 1])  # float32 kernel, float64 input
    assert upfirdn2d(x, k, up=2, pad=(2, 1)).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, k, up=2, pad=(2, 1)), (x,))
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, k, down=2, pad=(1, 1)), (x,))
    assert torch.autograd.gradgradcheck(lambda t: upfirdn2d(t, k, up=2, down=1, pad=(2, 1)), (x,))


def test_fused_leaky_relu() -> None:
    x = torch.randn(2, 3, 4, 4)
    bias = torch.randn(3)
    expected = torch.where(x + bias[:, None, None] >= 0, x + bias[:, None, None],
                           0.2 * (x + bias[:, None, None])) * 2**0.5
    torch.testing.assert_close(fused_leaky_relu(x, bias), expected)
    module = FusedLeakyReLU(3)
    module.bias.data.copy_(bias)
    torch.testing.assert_close(module(x), expected)
    # Works for (N, C) inputs too.
    torch.testing.assert_close(fused_leaky_relu(x[:, :, 0, 0], bias), expected[:, :, 0, 0])


def test_errors() -> None:
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        upfirdn2d(x[0], setup_kernel([1, 1]))
    with pytest.raises(ValueError, match="2-D kernel"):
        upfirdn2d(x, torch.ones(3))
    with pytest.raises(ValueError, match="empty"):
        upfirdn2d(x, torch.ones(4, 4), pad=(-2, -2))
    with pytest.raises(ValueError, match="square"):
        setup_kernel(np.ones((2, 3)))
    with pytest.raises(ValueError, match="sums to zero"):
        setup_kernel([1, -1])
    with pytest.raises(ValueError, match="factor must be a positive int"):
        upsample_2d(x, factor=0)
    with pytest.raises(ValueError, match="groups are not supported"):
        upsample_conv_2d(x, torch.randn(3, 1, 3, 3))
