"""EDM's non-leaking geometric augmentation with augmentation labels (Karras et al. 2022, "Elucidating the Design
Space of Diffusion-Based Generative Models", Appendix F.2; the transforms of Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data", Appendix B.1).

Each training image is transformed with probability ``p`` (per transform) and the network is told what was done:
the transform parameters, as a vector of *augmentation labels*, are a conditioning input (``cond["augment_labels"]``,
EDM's ``augment_dim`` mapping into the noise embedding). Because the model is conditioned on them, the augmentations
do not leak into its samples: at sampling the labels are zero ("no augmentation"). When to use: small data sets
(EDM trains CIFAR-10 with ``p = 0.12``); Score SDE's unlabelled ``data.random_flip`` is the alternative for a
symmetric data set, and needs no network input.

:class:`AugmentPipe` has two halves, so that a training step draws the random parameters of its whole (global)
batch from one ``torch.Generator`` and each rank or micro-batch applies its rows (exact resumption, DDP = one
process): :meth:`AugmentPipe.draw` (every random number, batch first) and :meth:`AugmentPipe.apply` (deterministic).
The draws are made in EDM's order with EDM's shapes, so a generator seeded like EDM's global CPU generator gives
EDM's augmentations (to float rounding; ``tests/data/data/edm_augment.npz`` holds EDM's outputs to check that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from ..numerics.checks import Bounds, check_number, check_tensor

__all__ = ["AUGMENT_LABEL_WIDTHS", "SYM6_LOWPASS", "AugmentPipe", "augment_rows"]

#: Daubechies' least-asymmetric wavelet with 6 vanishing moments ("symlet 6", Daubechies 1992, *Ten Lectures on
#: Wavelets*, section 8.1.1): its 12-tap low-pass decomposition filter (PyWavelets' ``Wavelet('sym6').dec_lo``), the
#: anti-aliasing filter of the 2x up- and down-sampling around the geometric transforms (as in ADA and EDM). An
#: orthonormal filter: its taps sum to sqrt(2) and it is orthogonal to its even shifts.
SYM6_LOWPASS = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)

#: the transforms in the order they are drawn and applied, with the width of each one's block of augmentation
#: labels (the label vector is these blocks, for the transforms with a nonzero probability multiplier, in this order)
AUGMENT_LABEL_WIDTHS = {"xflip": 1, "yflip": 1, "rotate_int": 2, "translate_int": 2, "scale": 1, "rotate_frac": 2,
                        "aniso": 2, "translate_frac": 2}


def _eye(n: int) -> Tensor:
    return torch.eye(3).expand(n, 3, 3).clone()


def _affine(a: Tensor, b: Tensor, c: Tensor, d: Tensor, tx: Tensor | float = 0.0, ty: Tensor | float = 0.0) -> Tensor:
    """Batched homogeneous 2-D matrices ``[[a, b, tx], [c, d, ty], [0, 0, 1]]`` (entries of shape ``(N,)``)."""
    out = _eye(a.shape[0])
    out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = a, b, tx
    out[:, 1, 0], out[:, 1, 1], out[:, 1, 2] = c, d, ty
    return out


def _rotation(theta: Tensor) -> Tensor:
    """Counter-clockwise rotation by ``theta`` (radians, shape ``(N,)``)."""
    cos, sin = theta.cos(), theta.sin()
    return _affine(cos, -sin, sin, cos)


def _scaling(sx: Tensor, sy: Tensor) -> Tensor:
    zero = torch.zeros_like(sx)
    return _affine(sx, zero, zero, sy)


def _constant(n: int, matrix: list[list[float]]) -> Tensor:
    return torch.tensor(matrix, dtype=torch.float32).expand(n, 3, 3)


def _reflect(index: Tensor, size: int) -> Tensor:
    """``index`` folded into ``[0, size)`` by mirror reflection about the edge pixels (period ``2 size - 2``)."""
    period = 2 * size - 2
    return (size - 1) - ((size - 1) - index.remainder(period)).abs()


@dataclass(frozen=True)
class AugmentPipe:
    """EDM's geometric augmentation pipeline with augmentation labels (EDM ``training/augment.py``, ``AugmentPipe``,
    its pixel-blitting and geometric transforms; the colour transforms are not included).

    Each transform is applied to an image with probability ``min(multiplier * p, 1)``; the defaults are EDM's
    CIFAR-10 choice (``train.py``: ``xflip=1e8`` — a labelled x-flip of half the images whenever ``p > 0`` —
    ``yflip``, ``scale``, ``rotate_frac``, ``aniso``, ``translate_frac`` at 1), whose labels have ``augment_dim = 9``
    entries. A multiplier of 0 removes the transform and its labels.

    Args:
        p: augmentation probability (EDM ``--augment``, 0.12 for CIFAR-10), in ``[0, 1]``.
        xflip, yflip: mirror left-right / top-bottom; label ``1`` if done.
        rotate_int: rotation by a multiple of 90 degrees (square images only); labels: x-flipped, y-flipped.
        translate_int: integer translation by up to ``translate_int_max`` of the width/height, reflecting at the
            edges (pixels are moved, not resampled); labels: the shifts over ``size * translate_int_max``.
        scale: isotropic scaling by ``2 ** (w * scale_std)``, ``w ~ N(0, 1)``; label ``w``.
        rotate_frac: rotation by ``w`` uniform in ``pi * rotate_frac_max * [-1, 1]``; labels ``cos w - 1, sin w``.
        aniso: anisotropic scaling by ``2 ** (w * aniso_std)`` along an axis at angle ``r`` (uniform in ``[-pi,
            pi]`` with probability ``aniso_rotate_prob``, else 0) and its inverse across it; labels ``w cos r, w sin
            r``.
        translate_frac: fractional translation by ``w * translate_frac_std`` of the width/height, ``w ~ N(0, I)``;
            labels ``w``.

    The geometric transforms (scale, rotate_frac, aniso, translate_frac) are composed into one affine map per image
    and executed once: reflect-pad, 2x up-sample with the symlet-6 filter :data:`SYM6_LOWPASS`, bilinear resampling,
    filtered 2x down-sample. A batch in which no image received a geometric transform is returned unresampled, so
    ``p = 0`` is exactly the identity with zero labels.
    """

    p: float
    xflip: float = 1e8
    yflip: float = 1.0
    rotate_int: float = 0.0
    translate_int: float = 0.0
    scale: float = 1.0
    rotate_frac: float = 1.0
    aniso: float = 1.0
    translate_frac: float = 1.0
    translate_int_max: float = 0.125
    scale_std: float = 0.2
    rotate_frac_max: float = 1.0
    aniso_std: float = 0.2
    aniso_rotate_prob: float = 0.5
    translate_frac_std: float = 0.125

    def __post_init__(self) -> None:
        unit = Bounds(low=0.0, high=1.0)
        for f in fields(self):
            bounds = unit if f.name in ("p", "aniso_rotate_prob") else Bounds(low=0.0)
            check_number(f"AugmentPipe {f.name}", float(getattr(self, f.name)), bounds)

    @property
    def active(self) -> tuple[str, ...]:
        """The transforms with a nonzero probability multiplier, in drawing order."""
        return tuple(name for name in AUGMENT_LABEL_WIDTHS if getattr(self, name) > 0)

    @property
    def augment_dim(self) -> int:
        """Length of the augmentation label vector (EDM's network ``augment_dim``: 9 with the defaults)."""
        return sum(AUGMENT_LABEL_WIDTHS[name] for name in self.active)

    # ---- the random half ----------------------------------------------------------------------------------------
    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Every random number of one call on images of shape ``(N, C, H, W)``, from ``generator`` (on the CPU).

        Returns the transform parameters, batch first (slice rows with ``{k: v[rows] for k, v in draws.items()}``):
        ``xflip``/``yflip`` ``(N,)`` int64 in {0, 1}; ``rotate_int`` ``(N,)`` int64 in {0..3}; ``translate_int``
        ``(N, 2)`` int64 pixel shifts; ``scale`` ``(N,)`` and ``translate_frac`` ``(N, 2)`` standard-normal draws;
        ``rotate_frac`` ``(N,)`` angles; ``aniso`` ``(N, 2)`` (``w``, ``r``). A transform not applied to an image has
        parameters 0 there. Drawn per transform in :data:`AUGMENT_LABEL_WIDTHS` order, parameters then the
        Bernoulli gate, with EDM's calls and shapes."""
        if len(shape) != 4:
            raise ValueError(f"AugmentPipe needs images of shape (N, C, H, W), got shape {tuple(shape)}")
        n, _, h, w = shape
        g = generator
        out: dict[str, Tensor] = {}

        def gate(value: Tensor, multiplier: float) -> Tensor:  # one Bernoulli draw per image (all its parameters)
            keep = torch.rand(n, generator=g) < multiplier * self.p
            return torch.where(keep, value, torch.zeros_like(value))

        for name, count in (("xflip", 2), ("yflip", 2), ("rotate_int", 4)):
            if getattr(self, name) > 0:
                out[name] = gate(torch.randint(count, (n,), generator=g), getattr(self, name))
        if self.translate_int > 0:
            u = gate(torch.rand(2, n, generator=g) * 2 - 1, self.translate_int)
            shift = torch.stack([u[0] * (w * self.translate_int_max), u[1] * (h * self.translate_int_max)], dim=1)
            out["translate_int"] = shift.round().to(torch.int64)
        if self.scale > 0:
            out["scale"] = gate(torch.randn(n, generator=g), self.scale)
        if self.rotate_frac > 0:
            angle = (torch.rand(n, generator=g) * 2 - 1) * (math.pi * self.rotate_frac_max)
            out["rotate_frac"] = gate(angle, self.rotate_frac)
        if self.aniso > 0:
            w_ = torch.randn(n, generator=g)
            r = (torch.rand(n, generator=g) * 2 - 1) * math.pi
            w_ = gate(w_, self.aniso)
            r = torch.where(torch.rand(n, generator=g) < self.aniso_rotate_prob, r, torch.zeros_like(r))
            out["aniso"] = torch.stack([w_, r], dim=1)
        if self.translate_frac > 0:
            out["translate_frac"] = gate(torch.randn(2, n, generator=g), self.translate_frac).T
        return out

    # ---- the deterministic half ---------------------------------------------------------------------------------
    def apply(self, images: Tensor, draws: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Augment ``images`` ``(N, C, H, W)`` (floating) with the parameters ``draws`` (:meth:`draw`'s, these rows);
        returns ``(augmented images, augment_labels)``, the labels float32 of shape ``(N, augment_dim)`` (zero for
        a transform not applied) on the images' device."""
        check_tensor("images", images)
        if images.dim() != 4 or not images.is_floating_point():
            raise ValueError(f"AugmentPipe needs floating images of shape (N, C, H, W), got {images.dtype} of shape "
                             f"{tuple(images.shape)}")
        n, _, h, w = images.shape
        missing = [name for name in self.active if name not in draws]
        if missing:
            raise ValueError(f"augmentation draws lack {', '.join(missing)} (make them with AugmentPipe.draw)")
        d = {name: draws[name].cpu() for name in self.active}  # parameters and labels on the CPU (small)
        if any(v.shape[0] != n for v in d.values()):
            raise ValueError(f"augmentation draws for {[v.shape[0] for v in d.values()]} rows, images have {n}")
        labels: list[Tensor] = []
        images = self._blit(images, d, labels)
        matrix = self._geometry(d, n, h, w, labels)
        if not bool((matrix == torch.eye(3)).all()):
            images = _resample(images, matrix)
        out = torch.cat([v.to(torch.float32).reshape(n, -1) for v in labels], dim=1) if labels else torch.zeros(n, 0)
        return images, out.to(images.device)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`apply` on :meth:`draw`'s parameters for this batch: ``(augmented images, augment_labels)``."""
        return self.apply(images, self.draw(tuple(images.shape), generator))

    def _blit(self, images: Tensor, d: dict[str, Tensor], labels: list[Tensor]) -> Tensor:
        """The pixel-moving transforms (flips, 90-degree rotations, integer translation): exact copies of pixels."""
        n, _, h, w = images.shape
        for name, dim in (("xflip", 3), ("yflip", 2)):
            if name in d:
                images = torch.where(d[name].to(images.device).view(n, 1, 1, 1) == 1, images.flip(dim), images)
                labels.append(d[name])
        if "rotate_int" in d:
            if h != w:
                raise ValueError(f"AugmentPipe rotate_int needs square images, got {h}x{w}")
            k = d["rotate_int"].view(n, 1, 1, 1)
            fx, fy = (k == 1) | (k == 2), (k == 2) | (k == 3)
            images = torch.where(fx.to(images.device), images.flip(3), images)
            images = torch.where(fy.to(images.device), images.flip(2), images)
            images = torch.where(((k == 1) | (k == 3)).to(images.device), images.transpose(2, 3), images)
            labels += [fx, fy]
        if "translate_int" in d:
            if h < 2 or w < 2:
                raise ValueError(f"AugmentPipe translate_int needs images of at least 2x2 pixels, got {h}x{w}")
            tx, ty = d["translate_int"][:, 0], d["translate_int"][:, 1]
            # output column x shows input column x - tx, output row y input row y + ty (EDM's convention)
            cols = _reflect(torch.arange(w) - tx[:, None], w).to(images.device)  # (N, W)
            rows = _reflect(torch.arange(h) + ty[:, None], h).to(images.device)  # (N, H)
            images = images.gather(3, cols[:, None, None, :].expand_as(images))
            images = images.gather(2, rows[:, None, :, None].expand_as(images))
            labels += [tx / (w * self.translate_int_max), ty / (h * self.translate_int_max)]
        return images

    def _geometry(self, d: dict[str, Tensor], n: int, h: int, w: int, labels: list[Tensor]) -> Tensor:
        """The composed inverse map ``(N, 3, 3)`` (output pixel -> input pixel, centred coordinates) of the
        geometric transforms, appending their labels."""
        inverse = _eye(n)
        if "scale" in d:
            s = d["scale"].mul(self.scale_std).exp2()
            inverse = inverse @ _scaling(1 / s, 1 / s)
            labels.append(d["scale"])
        if "rotate_frac" in d:
            angle = d["rotate_frac"]
            inverse = inverse @ _rotation(angle)
            labels += [angle.cos() - 1, angle.sin()]
        if "aniso" in d:
            a, r = d["aniso"].unbind(1)
            labels += [a * r.cos(), a * r.sin()]
            r = torch.where(a == 0, torch.zeros_like(r), r)  # no scaling: no frame (exactly the identity)
            s = a.mul(self.aniso_std).exp2()
            inverse = inverse @ _rotation(-r) @ _scaling(1 / s, s) @ _rotation(r)
        if "translate_frac" in d:
            t = d["translate_frac"].cpu()
            zero, one = torch.zeros(n), torch.ones(n)
            inverse = inverse @ _affine(one, zero, zero, one, -t[:, 0] * (w * self.translate_frac_std),
                                        -t[:, 1] * (h * self.translate_frac_std))
            labels += [d["translate_frac"][:, 0], d["translate_frac"][:, 1]]
        return inverse


def _resample(images: Tensor, inverse: Tensor) -> Tensor:
    """``images`` warped by the inverse affine maps ``inverse`` (CPU; centred pixel coordinates) without aliasing:
    reflect-pad by what the maps reach (at most the image size less one), up-sample 2x with the symlet-6 filter,
    resample bilinearly (zeros outside the padded image), filter and down-sample 2x (the scheme of ADA's and EDM's
    geometric augmentations)."""
    n, c, h, w = images.shape
    taps = len(SYM6_LOWPASS)
    pad = taps // 4  # border kept around the output while filtering (3 pixels)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    corners = torch.tensor([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1.0, 1.0, 1.0, 1.0]])
    reach = inverse @ corners  # (N, 3, 4): where the output's corners come from
    xs, ys = reach[:, 0].flatten(), reach[:, 1].flatten()
    lows = torch.stack([(-xs).max(), (-ys).max(), xs.max(), ys.max()])
    lows = lows + torch.tensor([2 * pad - cx, 2 * pad - cy] * 2)
    lows = lows.clamp_min(0).minimum(torch.tensor([w - 1, h - 1] * 2, dtype=lows.dtype))
    left, top, right, bottom = (int(v) for v in lows.ceil().tolist())
    images = F.pad(images, [left, right, top, bottom], mode="reflect")

    # up-sample 2x: zero insertion and the low-pass filter, as a transposed convolution per axis
    kernel = torch.tensor(SYM6_LOWPASS, dtype=images.dtype, device=images.device)
    images = F.conv_transpose2d(images, kernel.view(1, 1, 1, taps).repeat(c, 1, 1, 1), stride=(1, 2),
                                padding=(0, taps // 2 - 1), groups=c)
    images = F.conv_transpose2d(images, kernel.view(1, 1, taps, 1).repeat(c, 1, 1, 1), stride=(2, 1),
                                padding=(taps // 2 - 1, 0), groups=c)

    # the map in the normalised coordinates of affine_grid: output grid (with the border) -> up-sampled input
    out_h, out_w = 2 * (h + 2 * pad), 2 * (w + 2 * pad)
    in_h, in_w = images.shape[2], images.shape[3]
    shift = (left - right) / 2, (top - bottom) / 2  # the padded image's centre, relative to the original's

    def translation(tx: float, ty: float) -> Tensor:
        return _constant(n, [[1, 0, tx], [0, 1, ty], [0, 0, 1]])

    def scaling(sx: float, sy: float) -> Tensor:
        return _constant(n, [[sx, 0, 0], [0, sy, 0], [0, 0, 1]])

    theta = translation(*shift) @ inverse
    theta = scaling(2, 2) @ theta @ scaling(0.5, 0.5)  # pixel units of the 2x grid
    theta = translation(-0.5, -0.5) @ theta @ translation(0.5, 0.5)  # pixel centres of the 2x grid
    theta = scaling(2 / in_w, 2 / in_h) @ theta @ scaling(out_w / 2, out_h / 2)  # [-1, 1] units
    grid = F.affine_grid(theta[:, :2, :].to(images.device, images.dtype), [n, c, out_h, out_w], align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # filter and down-sample 2x per axis, dropping the border: output pixel i reads up-sampled pixels 2 i + 1 ...
    # (the border of ``pad`` pixels each side is exactly what these unpadded convolutions do not produce)
    images = F.conv2d(images[:, :, :, 1:], kernel.view(1, 1, 1, taps).repeat(c, 1, 1, 1), stride=(1, 2), groups=c)
    return F.conv2d(images[:, :, 1:, :], kernel.view(1, 1, taps, 1).repeat(c, 1, 1, 1), stride=(2, 1), groups=c)


def augment_rows(pipe: AugmentPipe | None, images: Tensor, draws: dict[str, Tensor] | None,
                 rows: slice) -> tuple[Tensor, dict[str, Tensor]]:
    """The trainer's call: ``images`` (rows ``rows`` of the global batch whose parameters are ``draws``) augmented,
    and the conditioning to add (``{"augment_labels": labels}``); ``pipe = None`` (``training.augment_p = 0``)
    returns ``images`` untouched and ``{}``."""
    if pipe is None:
        return images, {}
    out, labels = pipe.apply(images, {k: v[rows] for k, v in (draws or {}).items()})
    return out, {"augment_labels": labels}
