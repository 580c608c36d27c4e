"""``scoresde inpaint`` and ``scoresde colorize``: inverse problems on a run's model (a thin layer over
:func:`scoresde.inpaint` and :func:`scoresde.colorize`, whose methods are :data:`scoresde.inverse.INVERSE_METHODS`):
read the images and the mask, check them against the run, draw completions and write them as a PNG grid (the
observation, then the completions, per row) or a ``.npy`` array."""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
from torch import Tensor

from ..data import data_scaler, inverse_data_scaler
from ..inverse import INVERSE_METHODS, colorize, inpaint
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
)
from .image_files import ARRAY_LAYOUT, HALF_MASKS, read_images, read_mask, save_images


def _add_inverse_options(p: argparse.ArgumentParser, observed: str) -> None:
    """The options shared by ``inpaint`` and ``colorize`` (``observed`` describes ``--image``)."""
    add_run_options(p)
    p.add_argument("--image", required=True, help=f"{observed}: a .png/.jpg file or a .npy/.npz array, "
                                                  f"{ARRAY_LAYOUT}, uint8 or float in [0, 1]")
    p.add_argument("--method", choices=list(INVERSE_METHODS), default="replacement",
                   help="replacement: Score SDE's PC inpainter (fast, biased); repaint: RePaint resampling; "
                        "smc: the asymptotically exact particle filter (default: %(default)s)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="sampling steps (default: the model's number of noise scales)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, e.g. --set num_particles=8 or --set corrector=none (see "
                        "scoresde.inpaint; repeatable)")
    p.add_argument("--num-per-image", type=positive_int, default=1, metavar="N",
                   help="completions drawn per input image (default: %(default)s)")
    p.add_argument("--out", required=True,
                   help=".png: one row per image (the observation, then the completions); .npy: the completions "
                        "(float32, pixels on the [0, 1] scale, not clipped, channels last (B * N, H, W, C))")
    add_common(p)


def add_inverse_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``inpaint`` and ``colorize`` on the sub-parsers ``sub`` of ``scoresde``."""
    inp = sub.add_parser("inpaint", help=COMMAND_HELP["inpaint"],
                         description="Sample the unobserved pixels of --image given the observed ones (--mask, 1 = "
                                     "observed) from a run's model (scoresde.inpaint).")
    _add_inverse_options(inp, "the images to complete")
    inp.add_argument("--mask", required=True,
                     help=f"the observed pixels: {', '.join(HALF_MASKS)} (the half that is kept), a .png (white = "
                          "observed) or a .npy of 0/1 broadcastable to the images, channels last as --image")
    inp.set_defaults(func=cmd_inpaint)

    col = sub.add_parser("colorize", help=COMMAND_HELP["colorize"],
                         description="Sample colour images whose channel mean equals the grey value of --image "
                                     "(scoresde.colorize; colour images are turned grey first).")
    _add_inverse_options(col, "the images to colour (their channel mean is kept)")
    col.set_defaults(func=cmd_colorize)


def _refuse_short_discrete_chain(model: Any, method: str, options: dict[str, Any], err: ValueError) -> None:
    """Re-raise ``err`` with this command's remedies when it came from a VP run's discrete DDPM chain being undefined
    at ``--steps`` (``VPSDE.require_discrete_chain``: ``beta_max / steps < 1``, read by the replacement method's
    ``reverse_diffusion`` predictor and Langevin corrector). The library's message suggests the ddim sampler, which
    ``inpaint``/``colorize`` do not offer; nothing is raised for any other error."""
    sde = getattr(model, "sde", None)
    if method != "replacement" or not hasattr(sde, "require_discrete_chain") or "discrete" not in str(err):
        return  # another error (e.g. an empty batch) keeps its own message
    steps = options.get("steps", sde.N)
    try:
        sde.with_steps(steps).require_discrete_chain("the replacement method")
    except ValueError:
        beta_max = float(sde.beta_1)
        raise ValueError(f"--steps {steps}: the replacement method's reverse_diffusion predictor and Langevin "
                         f"corrector step the discrete DDPM chain of this VP run, which needs more steps than beta_max "
                         f"= {beta_max:g}; use --steps {math.floor(beta_max) + 1} or more, --set "
                         "predictor=euler_maruyama --set corrector=none, or --method repaint / smc") from err


def _broadcast_mask(mask: Tensor, x: Tensor, source: str) -> Tensor:
    """``mask`` expanded to the images' shape, or a ``ValueError`` naming both shapes."""
    try:
        ok = torch.broadcast_shapes(mask.shape, x.shape) == x.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"--mask {source}: a mask of shape {tuple(mask.shape)} does not broadcast to the images "
                         f"{tuple(x.shape)} (B, C, H, W); give (H, W) = {tuple(x.shape[2:])}, (C, H, W) or "
                         "(B, C, H, W)")
    return mask.expand(x.shape).contiguous()


def _observation_and_outputs(x: Tensor, mask: Tensor, out: Tensor, per_image: int) -> Tensor:
    """Grid rows ``[observed (unobserved pixels grey), completion 1..per_image]`` per input image."""
    shown = x * mask + 0.5 * (1.0 - mask)
    rows = torch.cat([shown[:, None], out.reshape(x.shape[0], per_image, *x.shape[1:])], dim=1)
    return rows.flatten(0, 1)


def _inverse(args: argparse.Namespace, colour: bool) -> int:
    out = check_out(args.out, (".png", ".npy"))
    cfg, model, device = load_image_run(args)
    shape = run_image_shape(cfg)
    if colour and shape[0] < 2:
        raise ValueError(f"colorize needs a run of colour images (>= 2 channels); {args.workdir} has "
                         f"{shape[0]} channel")
    x = read_images(args.image, shape)
    if colour:
        x = x.mean(1, keepdim=True).expand(x.shape).contiguous()
        mask = torch.ones(1, 1, *shape[1:])  # for the grid: the grey input is shown whole
    else:
        mask = _broadcast_mask(read_mask(args.mask, shape), x, args.mask)
    per = args.num_per_image
    xs = x.repeat_interleave(per, dim=0)
    m = mask.repeat_interleave(per, dim=0)
    options = method_options(args.set, args.steps)
    g = torch.Generator(device).manual_seed(args.seed)
    obs = data_scaler(xs, cfg.data.centered).to(device)
    call = dict(method=args.method, generator=g, cond=class_cond(args, model, xs.shape[0]), return_info=True,
                progress=not args.quiet, **options)
    try:
        if colour:
            y, info = colorize(model, obs, **call)
        else:
            y, info = inpaint(model, obs, m.to(device), **call)
    except ValueError as err:
        _refuse_short_discrete_chain(model, args.method, options, err)
        raise
    y = inverse_data_scaler(y.cpu(), cfg.data.centered)
    if out.suffix == ".npy":  # not clipped: the observed values (pixels, grey level) are exact
        save_images(y, out, per)
    else:
        save_images(_observation_and_outputs(x, mask.expand(x.shape), y.clamp(0, 1), per), out, per + 1)
    what = "colorized" if colour else "inpainted"
    print(f"{what} {x.shape[0]} image(s) x {per} with {args.method} (NFE {info.nfe}) to {out}")
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    """``scoresde inpaint``: complete the unobserved pixels of ``--image`` (``--mask``) with a run's model."""
    return _inverse(args, colour=False)


def cmd_colorize(args: argparse.Namespace) -> int:
    """``scoresde colorize``: colour images whose channel mean is ``--image``'s grey value."""
    return _inverse(args, colour=True)


