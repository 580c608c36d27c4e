"""Linear measurement operators ``y = A x + sigma_y n`` of :func:`scoresde.solve_inverse`: the protocol and the
operators of image restoration (compressed sensing, inpainting, colorization, super-resolution, deblurring).

The protocol (:class:`LinearOperator`; every method of :data:`scoresde.inverse.INVERSE_METHODS` reads only this):

* ``A(x)``: ``x`` of shape ``(B, *A.in_shape)`` (batch first) to ``(B, *A.out_shape)``, row by row;
* ``A.T(y)``: the adjoint, ``(B, *out_shape)`` to ``(B, *in_shape)``, so that ``<A x, y> = <x, A.T y>``;
* ``A.in_shape``, ``A.out_shape``: per-row shapes; ``n = prod(in_shape)``, ``m = prod(out_shape)``;
* optional SVD ``A = U diag(S) V^T`` (``A.has_svd``), applied implicitly, never as matrices: ``A.Vt(x)`` gives the
  ``n`` coordinates ``V^T x`` (shape ``(B, n)``), ``A.V(c)`` maps them back to ``(B, *in_shape)``; ``A.Ut(y)``
  (``(B, m)``) and ``A.U(c)`` likewise on the measurement side; ``A.S`` holds the ``r = min(m, n)`` singular values
  (float64, ``>= 0``, not sorted, possibly zero; shape ``(r,)``, or ``(B, r)`` for a per-row mask), paired with the
  first ``r`` coordinates on both sides: ``Ut(A x)[:, :r] = S * Vt(x)[:, :r]`` and ``Ut(A x)[:, r:] = 0``.
  ``V`` and ``U`` are orthogonal, so ``V(Vt(x)) = x``. DDRM-type and MCGdiff-type methods need it;
* ``A.select(rows)``: the operator of the rows ``rows`` (itself unless it holds one mask per row);
* ``A.bind(in_shape)``: operators built without a shape (``Grey()``, ``Downsample(2)``, ``Blur(k)``) take it from
  the data; :meth:`LinearOperator.infer_in_shape` reads it from a measurement ``y``.

Operators compute in the input's dtype and device (their parameters are stored in float64 and moved on use). A shape
or value that does not fit is one ``ValueError`` naming it.

Operators: :class:`Dense` (any matrix on the flattened sample), :class:`Mask` (inpainting, ``A x = mask * x``),
:class:`Grey` (colorization: the channel mean, today's :func:`scoresde.colorize` convention), :class:`Downsample`
(average pooling, super-resolution), :class:`Blur` (circular convolution: Gaussian or motion kernels), and
composition ``A @ B`` (:class:`Composed`, no SVD).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..numerics.checks import check_count, check_tensor
from .observation import decoupling_matrix

__all__ = ["Blur", "Composed", "Dense", "Downsample", "Grey", "LinearOperator", "Mask", "dense_matrix",
           "gaussian_kernel", "motion_kernel"]


class LinearOperator:
    """A linear map on batches of samples (module docstring). Subclasses implement ``_forward``, ``_adjoint`` and, when
    they have a closed-form SVD, ``has_svd = True`` with ``_Vt``, ``_V``, ``_Ut``, ``_U`` and ``S``."""

    has_svd: bool = False

    def __init__(self, in_shape: Sequence[int] | None, out_shape: Sequence[int] | None) -> None:
        self.in_shape = None if in_shape is None else tuple(int(s) for s in in_shape)
        self.out_shape = None if out_shape is None else tuple(int(s) for s in out_shape)

    # -- shapes -----------------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Entries per input row."""
        return math.prod(self._bound().in_shape)

    @property
    def m(self) -> int:
        """Entries per measurement row."""
        return math.prod(self._bound().out_shape)

    def _bound(self) -> LinearOperator:
        if self.in_shape is None:
            raise ValueError(f"{self!r} has no shape yet: call .bind(in_shape) or pass it in_shape=...")
        return self

    def bind(self, in_shape: Sequence[int]) -> LinearOperator:
        """This operator on rows of shape ``in_shape`` (itself if it already has that shape; a shape it cannot take is
        one ``ValueError``)."""
        in_shape = tuple(int(s) for s in in_shape)
        if self.in_shape is not None:
            if self.in_shape != in_shape:
                raise ValueError(f"{self!r} acts on rows of shape {self.in_shape}, not {in_shape}")
            return self
        return self._bind(in_shape)

    def _bind(self, in_shape: tuple[int, ...]) -> LinearOperator:
        raise ValueError(f"{self!r} cannot be bound to {in_shape}")

    def infer_in_shape(self, out_shape: Sequence[int]) -> tuple[int, ...]:
        """The row shape of the data whose measurement has rows of shape ``out_shape``."""
        out_shape = tuple(int(s) for s in out_shape)
        if self.in_shape is not None:
            if out_shape != self.out_shape:
                raise ValueError(f"y has rows of shape {out_shape}; {self!r} measures rows of shape {self.out_shape}")
            return self.in_shape
        return self._infer(out_shape)

    def _infer(self, out_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise ValueError(f"{self!r} cannot infer the data shape from y's rows {out_shape}: pass in_shape=...")

    def select(self, rows: Tensor) -> LinearOperator:
        """The operator of the batch rows ``rows`` (for operators that hold one mask per row; others return self)."""
        return self

    # -- application --------------------------------------------------------------------------------------------
    def _check(self, name: str, v: Tensor, shape: tuple[int, ...] | None) -> Tensor:
        v = check_tensor(name, v)
        if shape is None:
            self._bound()
        if v.dim() < 1 or tuple(v.shape[1:]) != shape:
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, shape))}) for {self!r}, got "
                             f"{tuple(v.shape)}")
        return v

    def __call__(self, x: Tensor) -> Tensor:
        """``A x`` row by row: ``(B, *in_shape) -> (B, *out_shape)``."""
        return self._forward(self._check("x", x, self.in_shape))

    def adjoint(self, y: Tensor) -> Tensor:
        """``A^T y`` row by row: ``(B, *out_shape) -> (B, *in_shape)``."""
        return self._adjoint(self._check("y", y, self.out_shape))

    @property
    def T(self) -> LinearOperator:
        """The adjoint as an operator (``A.T(y)``; ``A.T.T`` is ``A``)."""
        return _Adjoint(self)

    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        """``A @ B``: first ``B``, then ``A``."""
        return Composed(self, other)

    # -- SVD ------------------------------------------------------------------------------------------------------
    def _need_svd(self) -> None:
        if not self.has_svd:
            raise ValueError(f"{self!r} has no closed-form SVD (Dense, Mask, Grey, Downsample and Blur have one)")

    def Vt(self, x: Tensor) -> Tensor:
        """``V^T x``: ``(B, *in_shape) -> (B, n)``; the first ``r`` coordinates pair with :attr:`S`."""
        self._need_svd()
        return self._Vt(self._check("x", x, self.in_shape))

    def V(self, c: Tensor) -> Tensor:
        """``V c``: ``(B, n) -> (B, *in_shape)`` (inverse of :meth:`Vt`)."""
        self._need_svd()
        return self._V(self._check("c", c, (self.n,)))

    def Ut(self, y: Tensor) -> Tensor:
        """``U^T y``: ``(B, *out_shape) -> (B, m)``; the first ``r`` coordinates pair with :attr:`S`."""
        self._need_svd()
        return self._Ut(self._check("y", y, self.out_shape))

    def U(self, c: Tensor) -> Tensor:
        """``U c``: ``(B, m) -> (B, *out_shape)`` (inverse of :meth:`Ut`)."""
        self._need_svd()
        return self._U(self._check("c", c, (self.m,)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_shape={self.in_shape}, out_shape={self.out_shape})"


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator) -> None:
        super().__init__(op.out_shape, op.in_shape)
        self.op = op

    def _forward(self, x: Tensor) -> Tensor:
        return self.op._adjoint(x)

    def _adjoint(self, y: Tensor) -> Tensor:
        return self.op._forward(y)

    @property
    def T(self) -> LinearOperator:
        return self.op

    def __repr__(self) -> str:
        return f"{self.op!r}.T"


class Composed(LinearOperator):
    """``outer @ inner``: ``A x = outer(inner(x))``, adjoint ``inner.T(outer.T(y))``. No SVD (a product of SVDs is
    not an SVD): methods that need one refuse it."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        if not (isinstance(outer, LinearOperator) and isinstance(inner, LinearOperator)):
            raise TypeError("both factors of A @ B must be scoresde.inverse.LinearOperator instances")
        if inner.in_shape is not None:
            inner = inner._bound()
            outer = outer.bind(inner.out_shape)
        super().__init__(inner.in_shape, outer.out_shape)
        self.outer, self.inner = outer, inner

    def _bind(self, in_shape: tuple[int, ...]) -> LinearOperator:
        inner = self.inner.bind(in_shape)
        return Composed(self.outer.bind(inner.out_shape), inner)

    def _forward(self, x: Tensor) -> Tensor:
        return self.outer(self.inner(x))

    def _adjoint(self, y: Tensor) -> Tensor:
        return self.inner.adjoint(self.outer.adjoint(y))

    def select(self, rows: Tensor) -> LinearOperator:
        return Composed(self.outer.select(rows), self.inner.select(rows))

    def __repr__(self) -> str:
        return f"({self.outer!r} @ {self.inner!r})"


class Dense(LinearOperator):
    """``A x = M vec(x)`` for a matrix ``M`` of shape ``(m, n)`` acting on the flattened sample (compressed sensing,
    random projections); ``in_shape`` defaults to ``(n,)``, the measurement has shape ``(m,)``. SVD by
    ``torch.linalg.svd`` (float64, full matrices). Use it for small problems; the structured operators never form
    their matrix."""

    has_svd = True

    def __init__(self, matrix: Tensor, in_shape: Sequence[int] | None = None) -> None:
        matrix = check_tensor("matrix", matrix, finite=True, nonempty=True)
        if matrix.dim() != 2:
            raise ValueError(f"matrix must have shape (m, n), got {tuple(matrix.shape)}")
        in_shape = (matrix.shape[1],) if in_shape is None else tuple(in_shape)
        if math.prod(in_shape) != matrix.shape[1]:
            raise ValueError(f"in_shape {in_shape} has {math.prod(in_shape)} entries; matrix has {matrix.shape[1]} "
                             "columns")
        super().__init__(in_shape, (matrix.shape[0],))
        self.matrix = matrix.to(torch.float64)
        self._svd: tuple[Tensor, Tensor, Tensor] | None = None

    def _factors(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._svd is None:
            self._svd = torch.linalg.svd(self.matrix, full_matrices=True)
        return self._svd

    @property
    def S(self) -> Tensor:
        """Singular values, ``(min(m, n),)``, float64."""
        return self._factors()[1]

    def _forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.matrix.to(x).T

    def _adjoint(self, y: Tensor) -> Tensor:
        return (y @ self.matrix.to(y)).reshape(y.shape[0], *self.in_shape)

    def _Vt(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self._factors()[2].to(x).T

    def _V(self, c: Tensor) -> Tensor:
        return (c @ self._factors()[2].to(c)).reshape(c.shape[0], *self.in_shape)

    def _Ut(self, y: Tensor) -> Tensor:
        return y @ self._factors()[0].to(y)

    def _U(self, c: Tensor) -> Tensor:
        return c @ self._factors()[0].to(c).T

    def __repr__(self) -> str:
        return f"Dense({self.m}x{self.n}, in_shape={self.in_shape})"


class Mask(LinearOperator):
    """Inpainting: ``A x = mask * x`` (1 = observed, 0 = missing; the measurement keeps the data shape, its entries
    under ``mask == 0`` carry no information). ``mask`` has the row shape, or with ``per_row=True`` a leading batch
    dimension (one mask per row; :meth:`select` follows the rows). SVD: ``U = V = I``, ``S = mask`` (flattened)."""

    has_svd = True

    def __init__(self, mask: Tensor, *, per_row: bool = False) -> None:
        mask = check_tensor("mask", mask, nonempty=True)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 (missing) and 1 (observed)")
        mask = mask.to(torch.float64)
        if not per_row:
            mask = mask[None]
        elif mask.dim() < 2:
            raise ValueError(f"a per-row mask has shape (B, ...), got {tuple(mask.shape)}")
        super().__init__(mask.shape[1:], mask.shape[1:])
        self.mask = mask  # (R, *in_shape), R = 1 or one per row

    def _rows(self, v: Tensor) -> Tensor:
        if self.mask.shape[0] not in (1, v.shape[0]):
            raise ValueError(f"this Mask holds {self.mask.shape[0]} per-row masks; got a batch of {v.shape[0]} rows")
        return self.mask.to(v)

    @property
    def S(self) -> Tensor:
        """The flattened mask, ``(n,)`` (or ``(B, n)`` per row)."""
        s = self.mask.reshape(self.mask.shape[0], -1)
        return s[0] if s.shape[0] == 1 else s

    def select(self, rows: Tensor) -> LinearOperator:
        if self.mask.shape[0] == 1:
            return self
        return Mask(self.mask[rows.to(self.mask.device)], per_row=True)

    def _forward(self, x: Tensor) -> Tensor:
        return x * self._rows(x)

    _adjoint = _forward

    def _Vt(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    def _V(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], *self.in_shape)

    _Ut, _U = _Vt, _V

    def __repr__(self) -> str:
        return f"Mask(in_shape={self.in_shape}, observed={int(self.mask[0].sum())}, rows={self.mask.shape[0]})"


class _BlockMean(LinearOperator):
    """The mean of groups of ``g`` entries (channels of a pixel, pixels of a block), scaled: ``A x = mean(group)``.
    SVD per group: ``S = 1 / sqrt(g)``, ``V`` the orthonormal matrix whose first column is ``1 / sqrt(g)``
    (:func:`~scoresde.inverse.observation.decoupling_matrix`), ``U = I``. Subclasses define how a row splits into
    groups (``_groups``: ``(B, *in_shape) -> (B, m, g)`` and back)."""

    has_svd = True
    group: int

    @property
    def S(self) -> Tensor:
        """``1 / sqrt(g)`` for each of the ``m`` measured entries."""
        return torch.full((self.m,), 1.0 / math.sqrt(self.group), dtype=torch.float64)

    def _basis(self, v: Tensor) -> Tensor:
        return decoupling_matrix(self.group).to(v) if self.group > 1 else torch.ones(1, 1).to(v)

    def _forward(self, x: Tensor) -> Tensor:
        return self._groups(x).mean(-1).reshape(x.shape[0], *self.out_shape)

    def _adjoint(self, y: Tensor) -> Tensor:
        g = y.reshape(y.shape[0], -1, 1).expand(-1, -1, self.group) / self.group
        return self._ungroup(g)

    def _Vt(self, x: Tensor) -> Tensor:
        c = self._groups(x) @ self._basis(x)  # (B, m, g): coordinate 0 of each group first
        return torch.cat([c[..., 0], c[..., 1:].reshape(x.shape[0], -1)], dim=1)

    def _V(self, c: Tensor) -> Tensor:
        first, rest = c[:, : self.m, None], c[:, self.m:].reshape(c.shape[0], self.m, self.group - 1)
        return self._ungroup(torch.cat([first, rest], dim=-1) @ self._basis(c).T)

    def _Ut(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)

    def _U(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], *self.out_shape)


class Grey(_BlockMean):
    """Colorization: the channel mean of every pixel, ``A x = mean_c x[:, c]`` with shape ``(B, 1, ...)`` — the
    observation of :func:`scoresde.colorize` (its rotated coordinate ``(x M)_0 = sqrt(C) * mean``; ``V`` is its
    channel rotation :func:`~scoresde.inverse.observation.decoupling_matrix` per pixel, ``S = 1 / sqrt(C)``).
    ``channels`` (default 3) and the spatial shape come from the data when ``in_shape`` is not given."""

    def __init__(self, channels: int = 3, in_shape: Sequence[int] | None = None) -> None:
        check_count("channels", channels)
        if channels < 2:
            raise ValueError(f"Grey needs at least 2 channels, got {channels}")
        self.group = channels
        if in_shape is not None and (len(in_shape) < 1 or in_shape[0] != channels):
            raise ValueError(f"Grey(channels={channels}) acts on rows (C={channels}, ...), got in_shape {in_shape}")
        super().__init__(in_shape, None if in_shape is None else (1, *in_shape[1:]))

    def _bind(self, in_shape: tuple[int, ...]) -> LinearOperator:
        return Grey(self.group, in_shape)

    def _infer(self, out_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(out_shape) < 1 or out_shape[0] != 1:
            raise ValueError(f"a Grey measurement has rows (1, ...) (one grey channel), got {out_shape}")
        return (self.group, *out_shape[1:])

    def _groups(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], self.group, -1).transpose(1, 2)

    def _ungroup(self, g: Tensor) -> Tensor:
        return g.transpose(1, 2).reshape(g.shape[0], *self.in_shape)

    def __repr__(self) -> str:
        return f"Grey(channels={self.group}, in_shape={self.in_shape})"


class Downsample(_BlockMean):
    """Super-resolution: average pooling over non-overlapping ``factor x factor`` blocks of the last two dimensions,
    ``(B, C, H, W) -> (B, C, H / factor, W / factor)`` (``H``, ``W`` divisible by ``factor``). SVD per block:
    ``S = 1 / factor``, ``V`` an orthonormal ``factor^2`` basis whose first vector is the block mean direction."""

    def __init__(self, factor: int, in_shape: Sequence[int] | None = None) -> None:
        check_count("factor", factor)
        self.factor, self.group = factor, factor * factor
        out = None
        if in_shape is not None:
            in_shape = tuple(in_shape)
            if len(in_shape) < 2 or in_shape[-1] % factor or in_shape[-2] % factor:
                raise ValueError(f"Downsample({factor}) needs rows (..., H, W) with H and W divisible by {factor}, "
                                 f"got {in_shape}")
            out = (*in_shape[:-2], in_shape[-2] // factor, in_shape[-1] // factor)
        super().__init__(in_shape, out)

    def _bind(self, in_shape: tuple[int, ...]) -> LinearOperator:
        return Downsample(self.factor, in_shape)

    def _infer(self, out_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(out_shape) < 2:
            raise ValueError(f"a Downsample measurement has rows (..., h, w), got {out_shape}")
        return (*out_shape[:-2], out_shape[-2] * self.factor, out_shape[-1] * self.factor)

    def _groups(self, x: Tensor) -> Tensor:
        f, (h, w) = self.factor, self.out_shape[-2:]
        x = x.reshape(x.shape[0], -1, h, f, w, f).permute(0, 1, 2, 4, 3, 5)
        return x.reshape(x.shape[0], -1, f * f)

    def _ungroup(self, g: Tensor) -> Tensor:
        f, (h, w) = self.factor, self.out_shape[-2:]
        g = g.reshape(g.shape[0], -1, h, w, f, f).permute(0, 1, 2, 4, 3, 5)
        return g.reshape(g.shape[0], *self.in_shape)

    def __repr__(self) -> str:
        return f"Downsample(factor={self.factor}, in_shape={self.in_shape})"


class Blur(LinearOperator):
    """Deblurring: circular (periodic-boundary) 2-D convolution of every channel with ``kernel`` (shape ``(kh, kw)``,
    no larger than the image; centred at ``(kh // 2, kw // 2)``), ``(B, ..., H, W) -> (B, ..., H, W)``. Circular so
    that the Fourier modes diagonalise it: the SVD is an FFT. ``V`` is the real Fourier basis (the cosine and sine
    parts of each pair of conjugate frequencies, ``sqrt(2) Re`` and ``-sqrt(2) Im`` of the orthonormal ``fft2``),
    ``S = |fft2(kernel)|``, and ``U`` the same basis rotated by the phase of ``fft2(kernel)``. Kernels:
    :func:`gaussian_kernel`, :func:`motion_kernel`."""

    has_svd = True

    def __init__(self, kernel: Tensor, in_shape: Sequence[int] | None = None) -> None:
        kernel = check_tensor("kernel", kernel, finite=True, nonempty=True)
        if kernel.dim() != 2:
            raise ValueError(f"kernel must have shape (kh, kw), got {tuple(kernel.shape)}")
        self.kernel = kernel.to(torch.float64)
        if in_shape is not None:
            in_shape = tuple(in_shape)
            if len(in_shape) < 2 or in_shape[-2] < kernel.shape[0] or in_shape[-1] < kernel.shape[1]:
                raise ValueError(f"Blur with a {tuple(kernel.shape)} kernel needs rows (..., H, W) at least that "
                                 f"large, got {in_shape}")
        super().__init__(in_shape, in_shape)
        if in_shape is not None:
            self._setup()

    def _bind(self, in_shape: tuple[int, ...]) -> LinearOperator:
        return Blur(self.kernel, in_shape)

    def _infer(self, out_shape: tuple[int, ...]) -> tuple[int, ...]:
        return out_shape

    def _setup(self) -> None:
        H, W = self.in_shape[-2:]
        kh, kw = self.kernel.shape
        pad = torch.zeros(H, W, dtype=torch.float64)
        pad[:kh, :kw] = self.kernel
        pad = torch.roll(pad, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))  # centre at (0, 0)
        self.eig = torch.fft.fft2(pad)  # eigenvalues of the circulant, (H, W) complex
        # one representative of each conjugate pair {k, -k}: k <= -k in row-major order; self-conjugate ones once
        idx = torch.arange(H * W).reshape(H, W)
        neg = torch.roll(torch.flip(idx, (0, 1)), shifts=(1, 1), dims=(0, 1))  # index of -k
        self._self_conj = (idx == neg).reshape(-1)
        rep = (idx <= neg).reshape(-1)
        self._pair = torch.nonzero(rep & ~self._self_conj)[:, 0]
        self._single = torch.nonzero(self._self_conj)[:, 0]
        self._neg = neg.reshape(-1)
        mag = self.eig.abs().reshape(-1)
        s_one = torch.cat([mag[self._single], mag[self._pair], mag[self._pair]])  # order of the coordinates
        channels = math.prod(self.in_shape[:-2])
        self._S = s_one.repeat(channels)
        self._phase = torch.polar(torch.ones_like(mag), -torch.angle(self.eig).reshape(-1))

    @property
    def S(self) -> Tensor:
        """``|fft2(kernel)|`` per coordinate of :meth:`Vt` (channels one after the other), ``(n,)``."""
        return self._S

    def _forward(self, x: Tensor) -> Tensor:
        return torch.fft.ifft2(torch.fft.fft2(x) * self.eig.to(x.device)).real.to(x.dtype)

    def _adjoint(self, y: Tensor) -> Tensor:
        return torch.fft.ifft2(torch.fft.fft2(y) * self.eig.conj().to(y.device)).real.to(y.dtype)

    def _to_real(self, spec: Tensor) -> Tensor:
        """Orthonormal complex spectrum ``(B, ..., H, W)`` -> real coordinates ``(B, n)``."""
        s = spec.reshape(spec.shape[0], -1, spec.shape[-2] * spec.shape[-1])
        r2 = math.sqrt(2.0)
        parts = [s[..., self._single].real, r2 * s[..., self._pair].real, -r2 * s[..., self._pair].imag]
        return torch.cat(parts, dim=-1).reshape(spec.shape[0], -1)

    def _from_real(self, c: Tensor, dtype: torch.dtype) -> Tensor:
        H, W = self.in_shape[-2:]
        c = c.reshape(c.shape[0], -1, H * W)
        ns, npair = self._single.numel(), self._pair.numel()
        r2 = math.sqrt(2.0)
        spec = torch.zeros(c.shape[0], c.shape[1], H * W, dtype=torch.complex128 if dtype == torch.float64
                           else torch.complex64, device=c.device)
        spec[..., self._single] = c[..., :ns].to(spec.dtype)
        half = torch.complex(c[..., ns:ns + npair] / r2, -c[..., ns + npair:] / r2)
        spec[..., self._pair] = half
        spec[..., self._neg[self._pair]] = half.conj()
        return spec.reshape(c.shape[0], *self.in_shape)

    def _Vt(self, x: Tensor) -> Tensor:
        return self._to_real(torch.fft.fft2(x, norm="ortho"))

    def _V(self, c: Tensor) -> Tensor:
        return torch.fft.ifft2(self._from_real(c, c.dtype), norm="ortho").real.to(c.dtype)

    def _Ut(self, y: Tensor) -> Tensor:
        spec = torch.fft.fft2(y, norm="ortho") * self._phase.reshape(self.in_shape[-2:]).to(y.device)
        return self._to_real(spec)

    def _U(self, c: Tensor) -> Tensor:
        spec = self._from_real(c, c.dtype) * self._phase.reshape(self.in_shape[-2:]).conj().to(c.device)
        return torch.fft.ifft2(spec, norm="ortho").real.to(c.dtype)

    def __repr__(self) -> str:
        return f"Blur(kernel={tuple(self.kernel.shape)}, in_shape={self.in_shape})"


def gaussian_kernel(size: int, std: float) -> Tensor:
    """A normalised ``size x size`` Gaussian blur kernel of standard deviation ``std`` pixels (float64)."""
    check_count("size", size)
    if not std > 0:
        raise ValueError(f"std must be positive (pixels), got {std!r}")
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / std) ** 2)
    k = torch.outer(g, g)
    return k / k.sum()


def motion_kernel(size: int, angle_degrees: float = 0.0) -> Tensor:
    """A normalised ``size x size`` linear motion-blur kernel: a line through the centre at ``angle_degrees`` (0 =
    horizontal), each pixel weighted by its length of line inside it (sampled at ``8 * size`` points), float64."""
    check_count("size", size)
    theta = math.radians(angle_degrees)
    u = torch.linspace(-(size - 1) / 2, (size - 1) / 2, 8 * size, dtype=torch.float64)
    rows = torch.round(u * -math.sin(theta) + (size - 1) / 2).long().clamp(0, size - 1)
    cols = torch.round(u * math.cos(theta) + (size - 1) / 2).long().clamp(0, size - 1)
    k = torch.zeros(size, size, dtype=torch.float64)
    k.index_put_((rows, cols), torch.ones_like(u), accumulate=True)
    return k / k.sum()


def dense_matrix(op: LinearOperator) -> Tensor:
    """The ``(m, n)`` float64 matrix of a bound operator, by applying it to the identity (``n`` rows: small problems,
    tests and the closed-form oracle :meth:`scoresde.toy.GaussianMixture.condition_noisy`)."""
    eye = torch.eye(op.n, dtype=torch.float64).reshape(op.n, *op.in_shape)
    return op(eye).reshape(op.n, -1).T.contiguous()
