"""``scoresde restore``: image restoration under a noisy linear measurement ``y = A x + sigma_y n`` with a run's model
as the prior (a thin layer over :func:`scoresde.solve_inverse`, whose methods are :data:`scoresde.inverse.
INVERSE_METHODS`).

Tasks (``--task``) and the operator each builds (:mod:`scoresde.inverse.operators`), with its parameters as options:

* ``srF`` (``sr2``, ``sr4``, ...): super-resolution, :class:`~scoresde.inverse.Downsample` ``(F)`` (average pooling
  over ``F x F`` blocks; ``F`` divides the run's image size). The measurement is ``F`` times smaller.
* ``deblur``: :class:`~scoresde.inverse.Blur` (circular convolution) with ``--kernel gaussian`` (``--kernel-size``,
  ``--blur-std`` pixels) or ``--kernel motion`` (``--kernel-size``, ``--angle`` degrees).
* ``inpaint-random``: :class:`~scoresde.inverse.Mask` dropping a fraction ``--missing`` of the pixels (all channels of
  a pixel together), drawn from ``--mask-seed``: the same seed gives the same mask, so that a measurement made by
  ``--degrade`` can be restored again later.
* ``inpaint``: :class:`~scoresde.inverse.Mask` of ``--mask`` (a named half or a file, as ``scoresde inpaint``).
* ``colorize``: :class:`~scoresde.inverse.Grey` (the channel mean; colour runs).

``--image`` is the *measurement* ``y`` on the pixel scale ``[0, 1]`` (an ``F`` times smaller image for ``srF``, a
grey image for ``colorize``, the blurred or masked image otherwise; pixels outside an inpainting mask are ignored).
With ``--degrade`` it is instead a clean image of the run's size, which the command first measures with the task's
operator and adds noise of standard deviation ``--sigma-y`` (from ``--seed``): a demo of the round trip.
``--sigma-y`` is on the same ``[0, 1]`` pixel scale; :func:`model_measurement` maps ``y`` and ``sigma_y`` to the
model's data scale (``data.centered``).
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ..checkpoint.atomic import atomic_write
from ..data import inverse_data_scaler
from ..inverse import INVERSE_METHODS, Blur, Downsample, Grey, LinearOperator, Mask, solve_inverse
from ..inverse.operators import gaussian_kernel, motion_kernel
from .command_table import COMMAND_HELP
from .common import (
    add_common,
    add_run_options,
    check_out,
    class_cond,
    load_image_run,
    method_options,
    positive_int,
    run_image_shape,
    saved_config,
)
from .image_files import ARRAY_LAYOUT, HALF_MASKS, read_images, read_mask, save_images

#: the fixed task names of ``--task`` (super-resolution is ``srF`` for any integer factor ``F >= 2``)
TASKS = ("deblur", "inpaint-random", "inpaint", "colorize")
#: the blur kernels of ``--kernel``
KERNELS = ("gaussian", "motion")


# ---- options ------------------------------------------------------------------------------------------------------
def task_arg(text: str) -> str:
    """``type=`` of ``--task``: ``srF`` with an integer ``F >= 2`` or one of :data:`TASKS`."""
    match = re.fullmatch(r"sr(\d+)", text)
    if (match and int(match.group(1)) >= 2) or text in TASKS:
        return text
    raise argparse.ArgumentTypeError(f"unknown task {text!r}; use srF (super-resolution by F >= 2, e.g. sr2, sr4), "
                                     f"{', '.join(TASKS)}")


def _float_option(value: str, ok, allowed: str) -> float:
    """A float option's value, or one argparse error line naming the value and ``allowed``."""
    try:
        f = float(value)
    except ValueError:
        f = float("nan")
    if not (math.isfinite(f) and ok(f)):
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {value!r}")
    return f


def _unit_interval(value: str) -> float:
    return _float_option(value, lambda f: 0.0 < f < 1.0, "a fraction strictly between 0 and 1")


def _nonnegative(value: str) -> float:
    return _float_option(value, lambda f: f >= 0.0, "a finite number >= 0 (pixel scale [0, 1])")


def _positive(value: str) -> float:
    return _float_option(value, lambda f: f > 0.0, "a finite number > 0")


def _finite(value: str) -> float:
    return _float_option(value, lambda f: True, "a finite number")


def add_restore_command(sub: argparse._SubParsersAction) -> None:
    """Register ``restore`` on the sub-parsers ``sub`` of ``scoresde``."""
    p = sub.add_parser("restore", help=COMMAND_HELP["restore"],
                       description="Sample restorations x of a measurement y = A x + sigma_y n (--image) from a run's "
                                   "model (scoresde.solve_inverse). --image is the measurement (e.g. the small image "
                                   "of sr2), or with --degrade a clean image that is measured first.")
    add_run_options(p)
    p.add_argument("--task", type=task_arg, required=True, metavar="TASK",
                   help="srF: super-resolution by F (average pooling, e.g. sr2, sr4); deblur: Gaussian or motion "
                        "blur (circular); inpaint-random: a random fraction --missing of the pixels is missing; "
                        "inpaint: the pixels of --mask are observed; colorize: the grey value (colour runs)")
    p.add_argument("--image", required=True,
                   help=f"the measurement y on the [0, 1] pixel scale (srF: an F times smaller image; colorize: grey; "
                        f"inpaint*: pixels outside the mask are ignored), or with --degrade a clean image of the "
                        f"run's size: a .png/.jpg file or a .npy/.npz array, {ARRAY_LAYOUT}, uint8 or float (a noisy "
                        f"measurement's floats may leave [0, 1]; a clean image's may not)")
    p.add_argument("--degrade", action="store_true",
                   help="--image is a clean image: measure it with the task's operator and add noise of --sigma-y "
                        "(from --seed) first; the grid then starts with the clean image")
    p.add_argument("--sigma-y", type=_nonnegative, required=True, metavar="S",
                   help="standard deviation of the measurement noise on the [0, 1] pixel scale (0: noiseless)")
    p.add_argument("--method", choices=list(INVERSE_METHODS), default="smc",
                   help="smc: the asymptotically exact particle filter (default); dps, pigdm, ddrm, mmps: the "
                        "heuristics (faster, biased); projection, replacement, repaint: noiseless only")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="sampling steps (default: the method's, e.g. the model's number of noise scales for smc)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, e.g. --set num_particles=8 or --set step_size=0.3 (see "
                        "scoresde.solve_inverse; repeatable)")
    p.add_argument("--kernel", choices=KERNELS, default="gaussian", help="deblur: the blur kernel (default: "
                                                                         "%(default)s)")
    p.add_argument("--kernel-size", type=positive_int, default=5, metavar="K",
                   help="deblur: the kernel is K x K pixels (default: %(default)s)")
    p.add_argument("--blur-std", type=_positive, default=1.0, metavar="STD",
                   help="deblur --kernel gaussian: its standard deviation in pixels (default: %(default)s)")
    p.add_argument("--angle", type=_finite, default=0.0, metavar="DEG",
                   help="deblur --kernel motion: direction of the motion in degrees, 0 = horizontal (default: "
                        "%(default)s)")
    p.add_argument("--missing", type=_unit_interval, default=0.5, metavar="FRACTION",
                   help="inpaint-random: the fraction of pixels that is missing (default: %(default)s)")
    p.add_argument("--mask-seed", type=int, default=0, metavar="SEED",
                   help="inpaint-random: seed of the random mask; give the seed that made the measurement "
                        "(default: %(default)s)")
    p.add_argument("--mask", default=None,
                   help=f"inpaint: the observed pixels: {', '.join(HALF_MASKS)}, a .png (white = observed) or a .npy "
                        "of 0/1, as scoresde inpaint --mask")
    p.add_argument("--num-per-image", type=positive_int, default=1, metavar="N",
                   help="restorations drawn per measurement (default: %(default)s)")
    p.add_argument("--out", required=True,
                   help=".png: one row per image ([the clean image with --degrade,] the measurement shown at the "
                        "run's size, then the restorations); .npy: the restorations (float32, [0, 1] scale, not "
                        "clipped, channels last (B * N, H, W, C))")
    p.add_argument("--save-measurement", default=None, metavar="PATH",
                   help="also write the measurement y (with --degrade: the one made) as a .png (one image) or .npy "
                        "array on the [0, 1] scale, not clipped, to restore it again without --degrade")
    add_common(p)
    p.set_defaults(func=cmd_restore)


# ---- the operator of a task ---------------------------------------------------------------------------------------
def random_mask(shape: tuple[int, int, int], missing: float, seed: int) -> Tensor:
    """The ``inpaint-random`` mask ``(1, H, W)`` (1 = observed) for images ``shape = (C, H, W)``: exactly
    ``round(missing * H * W)`` pixels missing, chosen by a permutation from ``torch.Generator().manual_seed(seed)`` (the
    same seed gives the same mask on every machine); broadcast over the channels."""
    _, h, w = shape
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(h * w)
    mask[perm[: round(missing * h * w)]] = 0.0
    return mask.reshape(1, h, w)


def task_operator(task: str, shape: tuple[int, int, int], *, kernel: str = "gaussian", kernel_size: int = 5,
                  blur_std: float = 1.0, angle: float = 0.0, missing: float = 0.5, mask_seed: int = 0,
                  mask: Tensor | None = None) -> LinearOperator:
    """The operator of ``--task task`` bound to images ``shape = (C, H, W)`` (module docstring for the tasks and
    their parameters; ``mask`` ``(C', H, W)`` is ``inpaint``'s). A task that does not fit the run is one
    ``ValueError``: ``srF`` with ``F`` not dividing ``H`` and ``W``, a kernel larger than the image, ``colorize`` on a
    grey run."""
    c, h, w = shape
    if task.startswith("sr"):
        factor = int(task[2:])
        if h % factor or w % factor:
            raise ValueError(f"--task {task}: the factor {factor} must divide this run's {w}x{h} images")
        return Downsample(factor, shape)
    if task == "deblur":
        if kernel_size > min(h, w):
            raise ValueError(f"--kernel-size {kernel_size}: larger than this run's {w}x{h} images")
        k = gaussian_kernel(kernel_size, blur_std) if kernel == "gaussian" else motion_kernel(kernel_size, angle)
        return Blur(k, shape)
    if task == "inpaint-random":
        return Mask(random_mask(shape, missing, mask_seed).expand(shape))
    if task == "inpaint":
        if mask is None:
            raise ValueError("--task inpaint needs --mask (a named half, a .png or a .npy of 0/1)")
        return Mask(mask.expand(shape))
    if task == "colorize":
        if c < 2:
            raise ValueError(f"--task colorize needs a run of colour images (>= 2 channels); this run has {c}")
        return Grey(c, shape)
    raise ValueError(f"unknown task {task!r}")


def model_measurement(operator: LinearOperator, y: Tensor, sigma_y: float, centered: bool) -> tuple[Tensor, float]:
    """``(y', sigma_y')``: a measurement ``y = A x + sigma_y n`` of pixels ``x`` in ``[0, 1]`` on the model's data
    scale ``x' = 2 x - 1`` when ``centered`` (:func:`scoresde.data.data_scaler`): ``y' = 2 y - A 1`` and
    ``sigma_y' = 2 sigma_y``, exact for every linear ``A``; unchanged otherwise. Use it whenever a measurement made on
    image pixels is handed to :func:`scoresde.solve_inverse` with a run's model."""
    if not centered:
        return y, sigma_y
    ones = torch.ones(y.shape[0], *operator.in_shape, dtype=y.dtype)  # a per-row mask needs every row
    return 2.0 * y - operator(ones).to(y), 2.0 * sigma_y


def shown_measurement(operator: LinearOperator, y: Tensor) -> Tensor:
    """The measurement ``y`` drawn at the images' size for the grid: ``srF`` enlarged by nearest neighbours, a mask's
    missing pixels grey (0.5), a grey image in every channel, a blurred image as it is."""
    if isinstance(operator, Downsample):
        return torch.nn.functional.interpolate(y, scale_factor=operator.factor, mode="nearest")
    if isinstance(operator, Mask):
        m = operator.mask[0].to(y)
        return y * m + 0.5 * (1.0 - m)
    if isinstance(operator, Grey):
        return y.expand(y.shape[0], *operator.in_shape)
    return y


# ---- the command --------------------------------------------------------------------------------------------------
def _read_measurement(path: str, task: str, operator: LinearOperator, run_shape: tuple[int, int, int]) -> Tensor:
    """The measurement of ``--image``: images of ``operator.out_shape``; one of another size is one line naming the
    size it has, the size this task and run need, and ``--degrade``."""
    c, h, w = operator.out_shape
    need = f"--task {task} on this run ({run_shape[2]}x{run_shape[1]}, {run_shape[0]} channel(s)) measures {w}x{h} " \
           f"images with {c} channel(s)"
    if Path(path).suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp") and Path(path).is_file():
        try:
            with Image.open(path) as im:
                size = im.size
        except (OSError, SyntaxError, ValueError):
            size = None  # read_images names an unreadable file
        if size is not None and size != (w, h):
            raise ValueError(f"--image {path} is {size[0]}x{size[1]} pixels; {need} (give a clean {run_shape[2]}x"
                             f"{run_shape[1]} image with --degrade)")
    try:
        return read_images(path, (c, h, w), unit_range=False)  # noise may leave [0, 1]
    except ValueError as err:
        if "does not fit" in str(err) or "channels first" in str(err):
            raise ValueError(f"--image: {need}; {err}") from None
        raise


def _save_measurement(path: Path, y: Tensor) -> None:
    """``--save-measurement``: ``y`` ``(B, C, h, w)`` as one PNG image at its own size, or a ``.npy`` (channels
    last), written atomically."""
    if path.suffix == ".npy":
        save_images(y, path, 1)
        return
    if y.shape[0] != 1:
        raise ValueError(f"--save-measurement {path}: {y.shape[0]} measurements do not fit one .png; use .npy")
    arr = (y[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def cmd_restore(args: argparse.Namespace) -> int:
    """``scoresde restore``: sample restorations of the measurement ``--image`` (module docstring)."""
    out = check_out(args.out, (".png", ".npy"))
    save_y = None if args.save_measurement is None else check_out(args.save_measurement, (".png", ".npy"),
                                                                    "--save-measurement")
    if not Path(args.image).is_file():
        raise FileNotFoundError(f"image file {args.image} does not exist")
    shape = run_image_shape(saved_config(Path(args.workdir)))  # checked before the model loads
    mask = read_mask(args.mask, shape) if args.task == "inpaint" and args.mask is not None else None
    if args.mask is not None and args.task != "inpaint":
        raise ValueError(f"--mask is the mask of --task inpaint; --task {args.task} does not use it")
    operator = task_operator(args.task, shape, kernel=args.kernel, kernel_size=args.kernel_size,
                             blur_std=args.blur_std, angle=args.angle, missing=args.missing,
                             mask_seed=args.mask_seed, mask=None if mask is None else mask[0])
    g = torch.Generator().manual_seed(args.seed)
    clean = None
    if args.degrade:
        clean = read_images(args.image, shape)
        y = operator(clean)
        y = y + args.sigma_y * torch.randn(y.shape, generator=g)
    else:
        y = _read_measurement(args.image, args.task, operator, shape)
    if isinstance(operator, Mask):
        y = y * operator.mask[0].to(y)  # the pixels outside the mask carry nothing (no noise either)
    if save_y is not None:
        _save_measurement(save_y, y)
    cfg, model, device = load_image_run(args)
    per = args.num_per_image
    ys = y.repeat_interleave(per, dim=0)
    y_model, sigma_model = model_measurement(operator, ys, args.sigma_y, cfg.data.centered)
    options = method_options(args.set, args.steps)
    x, info = solve_inverse(model, operator, y_model.to(device), sigma_y=sigma_model, method=args.method,
                            generator=torch.Generator(device).manual_seed(args.seed),
                            cond=class_cond(args, model, ys.shape[0]), return_info=True, progress=not args.quiet,
                            **options)
    x = inverse_data_scaler(x.cpu(), cfg.data.centered)
    if out.suffix == ".npy":
        save_images(x, out, per)
    else:
        rows = [shown_measurement(operator, y)[:, None], x.clamp(0, 1).reshape(y.shape[0], per, *shape)]
        if clean is not None:
            rows.insert(0, clean[:, None])
        save_images(torch.cat(rows, dim=1).flatten(0, 1), out, len(rows) - 1 + per)
    print(f"restored {y.shape[0]} image(s) x {per} ({args.task}, sigma_y {args.sigma_y:g}) with {args.method} "
          f"(NFE {info.nfe}) to {out}")
    return 0

