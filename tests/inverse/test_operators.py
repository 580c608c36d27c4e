"""The linear operators of :func:`scoresde.solve_inverse`: adjoint identity, SVD against the dense matrix, and the
masked/grey operators against today's :class:`~scoresde.inverse.Observation` conventions."""

from __future__ import annotations

import pytest
import torch

from scoresde.inverse import (
    Blur,
    Dense,
    Downsample,
    Grey,
    Mask,
    decoupling_matrix,
    dense_matrix,
    gaussian_kernel,
    motion_kernel,
)

G = torch.Generator().manual_seed(0)


def _operators():
    mask = (torch.rand(2, 4, 6, generator=G) < 0.5).double()
    return {
        "dense": Dense(torch.randn(5, 12, generator=G, dtype=torch.float64), in_shape=(3, 2, 2)),
        "dense-tall": Dense(torch.randn(9, 4, generator=G, dtype=torch.float64)),
        "mask": Mask(mask),
        "grey": Grey().bind((3, 4, 6)),
        "grey4": Grey(4, in_shape=(4, 2, 3)),
        "down2": Downsample(2).bind((2, 4, 6)),
        "down3": Downsample(3, in_shape=(1, 6, 3)),
        "blur-gauss": Blur(gaussian_kernel(3, 0.8)).bind((2, 5, 6)),
        "blur-motion": Blur(motion_kernel(5, 30.0), in_shape=(1, 6, 7)),
        "composed": Downsample(2) @ Blur(gaussian_kernel(3, 1.0), in_shape=(1, 4, 4)),
    }


@pytest.mark.parametrize("name", list(_operators()))
def test_adjoint_identity_and_svd_reconstructs_the_matrix(name: str) -> None:
    A = _operators()[name]
    x = torch.randn(3, *A.in_shape, generator=G, dtype=torch.float64)
    y = torch.randn(3, *A.out_shape, generator=G, dtype=torch.float64)
    lhs = (A(x) * y).sum()
    rhs = (x * A.T(y)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(A.T.T(x), A(x))
    M = dense_matrix(A)
    torch.testing.assert_close(A(x).reshape(3, -1), x.reshape(3, -1) @ M.T, rtol=1e-12, atol=1e-12)
    if not A.has_svd:
        with pytest.raises(ValueError, match="no closed-form SVD"):
            A.Vt(x)
        return
    n, m = A.n, A.m
    r = min(m, n)
    eye_n = torch.eye(n, dtype=torch.float64)
    Vt = A.Vt(eye_n.reshape(n, *A.in_shape)).T  # columns: V^T e_i -> the matrix V^T
    Ut = A.Ut(torch.eye(m, dtype=torch.float64).reshape(m, *A.out_shape)).T
    torch.testing.assert_close(Vt @ Vt.T, eye_n, atol=1e-12, rtol=0)  # orthogonal
    torch.testing.assert_close(Ut @ Ut.T, torch.eye(m, dtype=torch.float64), atol=1e-12, rtol=0)
    Sigma = torch.zeros(m, n, dtype=torch.float64)
    Sigma[range(r), range(r)] = A.S
    torch.testing.assert_close(Ut.T @ Sigma @ Vt, M, atol=1e-12, rtol=0)  # A = U S V^T
    torch.testing.assert_close(A.V(A.Vt(x)), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(A.U(A.Ut(y)), y, atol=1e-12, rtol=0)
    assert (A.S >= 0).all()


def test_grey_and_mask_match_todays_observation() -> None:
    x = torch.randn(2, 3, 2, 2, generator=G, dtype=torch.float64)
    A = Grey().bind((3, 2, 2))
    torch.testing.assert_close(A(x), x.mean(1, keepdim=True))
    rotated = torch.einsum("bihw,ij->bjhw", x, decoupling_matrix(3))  # colorize's basis x M
    c = A.Vt(x)
    torch.testing.assert_close(c[:, :4], rotated[:, 0].reshape(2, 4))  # first coordinate: sqrt(3) * mean
    torch.testing.assert_close(A.S, torch.full((4,), 3 ** -0.5, dtype=torch.float64))
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(3, 2, 2)
    M = Mask(mask)
    assert torch.equal(M(x), x * mask.double()) and torch.equal(M.S, mask.reshape(-1).double())


def test_float32_and_per_row_masks() -> None:
    A = Blur(gaussian_kernel(3, 1.0), in_shape=(1, 4, 4))
    x = torch.randn(2, 1, 4, 4, generator=G)
    assert A(x).dtype == torch.float32 and A.V(A.Vt(x)).dtype == torch.float32
    torch.testing.assert_close(A.V(A.Vt(x)), x, atol=1e-5, rtol=0)
    masks = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    M = Mask(masks, per_row=True)
    x = torch.ones(2, 3)
    assert torch.equal(M(x), masks) and torch.equal(M.select(torch.tensor([1, 1, 0]))(torch.ones(3, 3)),
                                                    masks[[1, 1, 0]])


def test_bad_shapes_and_values_are_one_line() -> None:
    A = Dense(torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4\)"):
        A(torch.ones(3, 5))
    with pytest.raises(ValueError, match="only 0"):
        Mask(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="divisible by 2"):
        Downsample(2, in_shape=(1, 3, 4))
    with pytest.raises(ValueError, match="no shape yet"):
        Grey()(torch.ones(2, 3, 4, 4))
    with pytest.raises(ValueError, match="at least 2 channels"):
        Grey(1)
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        Downsample(0)
    with pytest.raises(ValueError, match=r"kernel must have shape \(kh, kw\)"):
        Blur(torch.ones(3))
    assert Downsample(2).infer_in_shape((3, 4, 5)) == (3, 8, 10) and Grey().infer_in_shape((1, 4)) == (3, 4)
