"""``scoresde encode`` and ``scoresde interpolate``: the latent codes of images under a run's probability-flow ODE
(:func:`scoresde.encode`) and a strip decoded from the spherical interpolation of two codes
(:func:`scoresde.interpolate`)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checkpoint.atomic import atomic_write
from ..data import data_scaler, inverse_data_scaler
from ..sampling import sample
from ..sampling.latent import encode, interpolate
from .command_table import COMMAND_HELP
from .common import (
    add_common,
    add_run_options,
    check_out,
    class_cond,
    load_image_run,
    positive_int,
    run_image_shape,
)
from .image_files import ARRAY_LAYOUT, read_images, save_images


def _add_ode_options(p: argparse.ArgumentParser) -> None:
    """``--rtol``, ``--atol`` and ``--eps`` of the probability-flow ODE, and the common options."""
    p.add_argument("--rtol", type=float, default=1e-5, help="ODE relative tolerance (default: %(default)s)")
    p.add_argument("--atol", type=float, default=1e-5, help="ODE absolute tolerance (default: %(default)s)")
    p.add_argument("--eps", type=float, default=None,
                   help="the data end time of the ODE (default: the SDE's sampling_eps: 1e-3, EDM's sigma_min)")
    add_common(p)


def add_latent_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``encode`` and ``interpolate`` on the sub-parsers ``sub`` of ``scoresde``."""
    enc = sub.add_parser("encode", help=COMMAND_HELP["encode"],
                         description="Integrate the probability-flow ODE from images (time eps) to T: the "
                                     "'uniquely identifiable' codes of Song et al. 2021 (scoresde.encode). Phase-space "
                                     "runs (PSLD/CLD) draw the initial momentum from --seed.")
    add_run_options(enc)
    enc.add_argument("--image", required=True, help=f"a .png/.jpg file or a .npy/.npz array of images, {ARRAY_LAYOUT}")
    enc.add_argument("--out", required=True,
                     help="output .npy: float32 codes in the model's state layout (N, C, H, W), channels first as "
                          "scoresde.sample(..., x_T=codes) takes them (codes are not images)")
    _add_ode_options(enc)
    enc.set_defaults(func=cmd_encode)

    itp = sub.add_parser("interpolate", help=COMMAND_HELP["interpolate"],
                         description="Encode two images with the probability-flow ODE, interpolate their codes "
                                     "spherically (slerp) and decode every frame with the ODE into a PNG strip.")
    add_run_options(itp)
    itp.add_argument("--images", nargs=2, required=True, metavar=("A", "B"),
                     help="the two end images (.png, or .npy/.npz channels last)")
    itp.add_argument("--num", type=positive_int, default=8, help="frames, ends included (default: %(default)s)")
    itp.add_argument("--out", required=True,
                     help="output .png strip, or .npy of the frames (float32 in [0, 1], channels last (N, H, W, C))")
    _add_ode_options(itp)
    itp.set_defaults(func=cmd_interpolate)


def _encode(args: argparse.Namespace, model: Any, z0: Tensor, cond: dict[str, Any] | None, generator: torch.Generator
            ) -> tuple[Tensor, int]:
    code, info = encode(model, z0, rtol=args.rtol, atol=args.atol, eps=args.eps, cond=cond, generator=generator,
                        return_info=True)
    return code, info.nfe


def cmd_encode(args: argparse.Namespace) -> int:
    """``scoresde encode``: the probability-flow ODE codes of ``--image`` written as a float32 ``.npy``."""
    out = check_out(args.out, (".npy",))
    cfg, model, device = load_image_run(args)
    x = data_scaler(read_images(args.image, run_image_shape(cfg)), cfg.data.centered).to(device)
    g = torch.Generator(device).manual_seed(args.seed)
    code, nfe = _encode(args, model, x, class_cond(args, model, x.shape[0]), g)
    atomic_write(out, lambda tmp: np.save(tmp, code.detach().cpu().float().numpy()))
    print(f"encoded {x.shape[0]} image(s) to codes of shape {tuple(code.shape)} (NFE {nfe}) in {out}; decode with "
          f"scoresde.sample(model, shape, 'ode', x_T=codes)")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    """``scoresde interpolate``: encode two images, interpolate their codes spherically and decode (ODE) a strip."""
    check_out(args.out, (".png", ".npy"))
    cfg, model, device = load_image_run(args)
    shape = run_image_shape(cfg)
    images = []
    for path in args.images:
        x = read_images(path, shape)
        if x.shape[0] != 1:
            raise ValueError(f"{path} holds {x.shape[0]} images; interpolate takes one image per file")
        images.append(x)
    x = data_scaler(torch.cat(images), cfg.data.centered).to(device)
    cond = class_cond(args, model, 1)
    g = torch.Generator(device).manual_seed(args.seed)
    code, nfe = _encode(args, model, x, None if cond is None else {"class_labels": cond["class_labels"].repeat(2)}, g)
    path_codes = interpolate(code[:1], code[1:], args.num).flatten(0, 1)
    frames_cond = None if cond is None else {"class_labels": cond["class_labels"].repeat(args.num)}
    frames, info = sample(model, (args.num, *shape), "ode", x_T=path_codes, cond=frames_cond, rtol=args.rtol,
                          atol=args.atol, eps=args.eps, return_info=True)
    frames = inverse_data_scaler(frames.cpu(), cfg.data.centered).clamp(0, 1)
    save_images(frames, args.out, args.num)
    print(f"wrote {args.num} frames of the spherical interpolation between {args.images[0]} and {args.images[1]} "
          f"(encode NFE {nfe}, decode NFE {info.nfe}) to {args.out}")
    return 0


