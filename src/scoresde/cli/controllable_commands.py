"""The controllable-generation commands of ``scoresde`` (issue "Controllable generation"): class-conditional sampling
options of ``sample`` (``--class``, ``--guidance cfg|classifier``, ``--scale``, ``--classifier``) and the commands
``inpaint``, ``colorize``, ``encode`` and ``interpolate`` on a run folder.

Everything here is a thin layer over :mod:`scoresde.guidance` (:func:`~scoresde.guidance.classifier_free`,
:func:`~scoresde.guidance.classifier`, :func:`~scoresde.inpaint`, :func:`~scoresde.colorize`) and
:mod:`scoresde.sampling.latent` (:func:`~scoresde.encode`, :func:`~scoresde.interpolate`): reading images and masks,
checking them against the run (one ``ValueError`` line naming the bad value), and writing PNG grids / ``.npy`` files.
Images on the command line are PNG/JPEG files or ``.npy`` arrays with pixel values in ``[0, 1]`` (floats) or
``0..255`` (``uint8``); the run's ``data.centered`` maps them to the model's range.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["GUIDANCE", "HALF_MASKS", "add_class_options", "add_controllable_commands", "class_labels",
           "conditioned_model", "half_mask", "read_images", "read_mask", "save_grid"]

#: ``--guidance`` values of ``scoresde sample``: classifier-free (a class-conditional run) or classifier guidance
GUIDANCE = ("cfg", "classifier")
#: the named masks of ``scoresde inpaint --mask``: the half of the image that is *observed* (kept)
HALF_MASKS = ("top-half", "bottom-half", "left-half", "right-half")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


# ---- class-conditional sampling (options of `scoresde sample`) ---------------------------------------------------
def add_class_options(p: argparse.ArgumentParser) -> None:
    """Add ``--class``, ``--guidance``, ``--scale`` and ``--classifier`` to a sampling command's parser."""
    g = p.add_argument_group("class-conditional sampling")
    g.add_argument("--class", dest="class_spec", default=None, metavar="LABELS",
                   help="requested class(es): one label (3), a comma list (0,2,7) or 'all'; a list splits the samples "
                        "into equal consecutive blocks, one per label, so --num K*K --class all is one grid row per "
                        "class. Needs a class-conditional run or --guidance classifier")
    g.add_argument("--guidance", choices=GUIDANCE, default=None,
                   help="cfg: classifier-free guidance of a class-conditional run (Ho & Salimans); classifier: the "
                        "gradient of a noise-conditional classifier (--classifier) added to the score. Without it a "
                        "conditional run samples its plain conditional model (= cfg with --scale 0)")
    g.add_argument("--scale", type=float, default=None, metavar="W",
                   help="guidance strength: cfg's w (0 = plain conditional model; diffusers' guidance_scale is 1 + w) "
                        "or the classifier's gradient weight (1 = exact Bayes rule) (default: 1)")
    g.add_argument("--classifier", default=None, metavar="DIR",
                   help="output folder of `scoresde train-classifier` (same SDE as the run) for --guidance classifier")


def class_labels(spec: str, num: int, num_classes: int) -> Tensor:
    """The int64 labels ``(num,)`` of ``--class spec``: one label for all samples, or a comma list / ``all`` (every
    class in ``[0, num_classes)``) split into equal consecutive blocks (sample ``i`` gets label ``i * L // num`` of
    the ``L`` listed), so that a grid of ``L`` rows shows one label per row. Labels outside ``[0, num_classes)`` are a
    ``ValueError``."""
    text = spec.strip()
    if text == "all":
        listed = list(range(num_classes))
    else:
        try:
            listed = [int(item) for item in text.split(",")]
        except ValueError:
            raise ValueError(f"--class {spec!r}: expected a label, a comma list of labels or 'all'") from None
    bad = [y for y in listed if not 0 <= y < num_classes]
    if bad:
        raise ValueError(f"--class {spec}: label {bad[0]} is outside [0, {num_classes}) (the classes of this model)")
    index = torch.arange(num) * len(listed) // num
    return torch.tensor(listed, dtype=torch.long)[index]


def _num_classes(model: Any) -> int:
    n = getattr(getattr(model, "net", None), "num_classes", 0)
    return int(n or 0)


def conditioned_model(args: argparse.Namespace, model: Any, num: int, device: str | torch.device,
                      data_shape: tuple[int, ...] | None = None) -> tuple[Any, Tensor | None]:
    """``(model to sample, labels (num,) or None)`` for the class options of ``args`` (:func:`add_class_options`):
    the plain model without ``--class``; the conditional model, its :func:`~scoresde.guidance.classifier_free`
    wrapper (``--guidance cfg``) or its :func:`~scoresde.guidance.classifier` wrapper with the loaded classifier
    (``--guidance classifier``). Options that would be ignored, guidance on an unconditional run, labels outside the
    classes and a classifier of another SDE or of another ``data_shape`` (the run's ``(C, H, W)``) are one
    ``ValueError`` line."""
    from ..guidance import classifier, classifier_free

    spec, guidance, scale, path = args.class_spec, args.guidance, args.scale, args.classifier
    if spec is None:
        for name, value in (("--guidance", guidance), ("--scale", scale), ("--classifier", path)):
            if value is not None:
                raise ValueError(f"{name} needs --class (the requested class, e.g. --class 3 or --class all)")
        return model, None
    if scale is not None and guidance is None:
        raise ValueError("--scale needs --guidance cfg or --guidance classifier")
    if path is not None and guidance != "classifier":
        raise ValueError("--classifier is used by --guidance classifier only; add it or drop --classifier")
    num_classes = _num_classes(model)
    scale = 1.0 if scale is None else scale
    if guidance == "classifier":
        if path is None:
            raise ValueError("--guidance classifier needs --classifier DIR (a `scoresde train-classifier` folder)")
        from ..training.classifier import load_classifier

        clf = load_classifier(path, map_location=device)
        if num_classes and clf.num_classes != num_classes:
            raise ValueError(f"the classifier {path} has {clf.num_classes} classes, the conditional model "
                             f"{num_classes}")
        _check_classifier_shape(path, data_shape)
        return classifier(model, clf, scale), class_labels(spec, num, clf.num_classes)
    if not num_classes:
        raise ValueError("this run's model is unconditional (model.num_classes = 0): --class needs a class-conditional "
                         "run (e.g. digits/vp_ddpmpp_conditional) or --guidance classifier --classifier DIR")
    labels = class_labels(spec, num, num_classes)
    return (classifier_free(model, scale) if guidance == "cfg" else model), labels


def _check_classifier_shape(path: str, data_shape: tuple[int, ...] | None) -> None:
    """Refuse a classifier trained on data of another shape than the run's (``data_shape`` of its checkpoint's
    config; a ``train-classifier`` folder keeps it in ``checkpoint/checkpoint.json``)."""
    folder = Path(path) / "checkpoint" if (Path(path) / "classifier.json").is_file() else Path(path)
    meta = json.loads((folder / "checkpoint.json").read_text()).get("config", {})
    shape = meta.get("data_shape")
    if data_shape is not None and shape is not None and tuple(shape) != tuple(data_shape):
        raise ValueError(f"the classifier {path} was trained on data of shape {tuple(shape)}, the run's data have "
                         f"{tuple(data_shape)}")


# ---- images and masks -------------------------------------------------------------------------------------------
def _run_shape(cfg: Any) -> tuple[int, int, int]:
    if cfg.model.get("name") == "toy_mlp":
        raise ValueError("this run models 2-D points, not images: inpaint/colorize/encode/interpolate need an image "
                         "run (use scoresde.inpaint / scoresde.encode from Python for points)")
    return cfg.data.num_channels, cfg.data.image_size, cfg.data.image_size


def _as_float_images(arr: np.ndarray, source: str) -> Tensor:
    if arr.dtype == np.uint8:
        x = torch.from_numpy(arr.astype(np.float32) / 255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        x = torch.from_numpy(arr.astype(np.float32))
        if x.numel() and (not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError(f"{source}: float pixel values must lie in [0, 1], got [{float(x.min()):.3g}, "
                             f"{float(x.max()):.3g}]")
    else:
        raise ValueError(f"{source}: pixels must be uint8 (0..255) or float in [0, 1], got {arr.dtype}")
    return x


def read_images(path: str | Path, shape: tuple[int, int, int]) -> Tensor:
    """Images ``(B, C, H, W)`` in ``[0, 1]`` from a PNG/JPEG/BMP file (one image, converted to ``C`` channels) or a
    ``.npy`` array of shape ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)``; ``(C, H, W) = shape`` (the run's) or a
    ``ValueError`` naming both shapes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    c, h, w = shape
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if arr.shape[0] != c:  # channels other than 1 and 3: the grey value in every channel
            arr = np.repeat(np.asarray(Image.open(path).convert("L"), dtype=np.uint8)[None], c, axis=0)
        x = _as_float_images(arr[None], str(path))
    elif path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        arr = arr[None, None] if arr.ndim == 2 else arr[None] if arr.ndim == 3 else arr
        if arr.ndim != 4:
            raise ValueError(f"{path}: expected an array of shape (H, W), (C, H, W) or (B, C, H, W), got "
                             f"{tuple(np.load(path, allow_pickle=False).shape)}")
        x = _as_float_images(arr, str(path))
    else:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}; use {', '.join(_IMAGE_SUFFIXES)} or .npy")
    if tuple(x.shape[1:]) != (c, h, w) and not (x.shape[1] == 1 and tuple(x.shape[2:]) == (h, w)):
        raise ValueError(f"{path} holds images of shape {tuple(x.shape[1:])} (C, H, W); this run's images are "
                         f"{(c, h, w)}")
    return x.expand(x.shape[0], c, h, w).contiguous()


def half_mask(name: str, shape: tuple[int, int, int]) -> Tensor:
    """The mask ``(1, 1, H, W)`` (1 = observed) of a named half: ``top-half`` observes rows ``< H // 2``, and so on
    (:data:`HALF_MASKS`)."""
    if name not in HALF_MASKS:
        raise ValueError(f"unknown mask {name!r}; valid names are {', '.join(HALF_MASKS)} (or a .png/.npy file)")
    _, h, w = shape
    mask = torch.zeros(1, 1, h, w)
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    keep = {"top-half": rows < h // 2, "bottom-half": rows >= h // 2, "left-half": cols < w // 2,
            "right-half": cols >= w // 2}[name]
    mask[0, 0] = keep.expand(h, w).float()
    return mask


def read_mask(spec: str, shape: tuple[int, int, int]) -> Tensor:
    """The inpainting mask of ``--mask spec`` (1 = observed, 0 = to fill in): a name of :data:`HALF_MASKS`, a PNG
    (pixels > 127 observed, one channel) or a ``.npy`` array of 0/1 (or bool) of shape ``(H, W)``, ``(C, H, W)`` or
    ``(B, C, H, W)``; its broadcasting to the images is checked by :func:`scoresde.inpaint`."""
    if spec in HALF_MASKS:
        return half_mask(spec, shape)
    path = Path(spec)
    if path.suffix.lower() not in (*_IMAGE_SUFFIXES, ".npy"):
        raise ValueError(f"--mask {spec!r}: expected one of {', '.join(HALF_MASKS)} or a .png/.npy file")
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} does not exist")
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim not in (2, 3, 4):
            raise ValueError(f"{path}: a mask has shape (H, W), (C, H, W) or (B, C, H, W), got {arr.shape}")
        mask = torch.from_numpy(arr.astype(np.float32))
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{path}: a mask holds only 0 (to fill in) and 1 (observed)")
    else:
        from PIL import Image

        with Image.open(path) as im:
            mask = torch.from_numpy((np.asarray(im.convert("L")) > 127).astype(np.float32))
    return mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))


def save_grid(x: Tensor, path: str | Path, nrow: int, min_size: int = 64) -> Path:
    """Save images ``(B, C, H, W)`` in ``[0, 1]`` as a PNG grid of ``nrow`` images per row (small images enlarged by
    an integer nearest-neighbour factor to at least ``min_size`` pixels), or as a ``.npy`` float32 array."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, x.detach().cpu().float().numpy())
        return path
    if path.suffix != ".png":
        raise ValueError(f"--out must end in .png or .npy, got {path.name!r}")
    from torchvision.utils import save_image

    scale = max(1, math.ceil(min_size / x.shape[-1]))
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    save_image(x.detach().cpu().clamp(0, 1), str(path), nrow=nrow, padding=scale)
    return path


# ---- commands ----------------------------------------------------------------------------------------------------
def _load(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """``(config, model, device)`` of ``--workdir`` / ``--step`` / ``--no-ema`` / ``--device``."""
    from .commands import _load_model, _saved_config

    workdir = Path(args.workdir)
    cfg = _saved_config(workdir)
    _run_shape(cfg)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, _, _ = _load_model(workdir, args.checkpoint, not args.no_ema, device)
    return cfg, model, device


def _labels_for(args: argparse.Namespace, model: Any, num: int) -> dict[str, Any] | None:
    """``cond`` of the inverse-problem and latent commands: ``--class`` on a conditional run, else ``None`` (the
    unconditional / null-label model)."""
    if args.class_spec is None:
        return None
    n = _num_classes(model)
    if not n:
        raise ValueError("this run's model is unconditional (model.num_classes = 0): --class needs a "
                         "class-conditional run")
    return {"class_labels": class_labels(args.class_spec, num, n)}


def _check_out(path: str, suffixes: tuple[str, ...]) -> Path:
    """``--out`` as a path, checked before any work: its suffix must be one of ``suffixes``."""
    out = Path(path)
    if out.suffix not in suffixes:
        raise ValueError(f"--out must end in {' or '.join(suffixes)}, got {out.name!r}")
    return out


def _method_options(items: list[str], steps: int | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` method options (values read as JSON, else as strings) and ``--steps``."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set num_particles=8")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    if steps is not None:
        options["steps"] = steps
    return options


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
    from ..data import data_scaler, inverse_data_scaler
    from ..guidance import colorize, inpaint

    _check_out(args.out, (".png", ".npy"))
    cfg, model, device = _load(args)
    shape = _run_shape(cfg)
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
    options = _method_options(args.set, args.steps)
    g = torch.Generator(device).manual_seed(args.seed)
    obs = data_scaler(xs, cfg.data.centered).to(device)
    call = dict(method=args.method, generator=g, cond=_labels_for(args, model, xs.shape[0]), return_info=True,
                progress=not args.quiet, **options)
    if colour:
        y, info = colorize(model, obs, **call)
    else:
        y, info = inpaint(model, obs, m.to(device), **call)
    y = inverse_data_scaler(y.cpu(), cfg.data.centered)
    out = Path(args.out)
    if out.suffix == ".npy":  # not clipped: the observed values (pixels, grey level) are exact
        save_grid(y, out, per)
    else:
        save_grid(_observation_and_outputs(x, mask.expand(x.shape), y.clamp(0, 1), per), out, per + 1)
    what = "colorized" if colour else "inpainted"
    print(f"{what} {x.shape[0]} image(s) x {per} with {args.method} (NFE {info.nfe}) to {out}")
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    """``scoresde inpaint``: complete the unobserved pixels of ``--image`` (``--mask``) with a run's model."""
    return _inverse(args, colour=False)


def cmd_colorize(args: argparse.Namespace) -> int:
    """``scoresde colorize``: colour images whose channel mean is ``--image``'s grey value."""
    return _inverse(args, colour=True)


def _encode(args: argparse.Namespace, model: Any, z0: Tensor, cond: dict[str, Any] | None, generator: torch.Generator
            ) -> tuple[Tensor, int]:
    from ..sampling.latent import encode

    code, info = encode(model, z0, rtol=args.rtol, atol=args.atol, eps=args.eps, cond=cond, generator=generator,
                        return_info=True)
    return code, info.nfe


def cmd_encode(args: argparse.Namespace) -> int:
    """``scoresde encode``: the probability-flow ODE codes of ``--image`` written as a float32 ``.npy``."""
    from ..data import data_scaler

    out = _check_out(args.out, (".npy",))
    cfg, model, device = _load(args)
    x = data_scaler(read_images(args.image, _run_shape(cfg)), cfg.data.centered).to(device)
    g = torch.Generator(device).manual_seed(args.seed)
    code, nfe = _encode(args, model, x, _labels_for(args, model, x.shape[0]), g)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, code.detach().cpu().float().numpy())
    print(f"encoded {x.shape[0]} image(s) to codes of shape {tuple(code.shape)} (NFE {nfe}) in {out}; decode with "
          f"scoresde.sample(model, shape, 'ode', x_T=codes)")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    """``scoresde interpolate``: encode two images, interpolate their codes spherically and decode (ODE) a strip."""
    from ..data import data_scaler, inverse_data_scaler
    from ..sampling import sample
    from ..sampling.latent import interpolate

    _check_out(args.out, (".png", ".npy"))
    cfg, model, device = _load(args)
    shape = _run_shape(cfg)
    images = []
    for path in args.images:
        x = read_images(path, shape)
        if x.shape[0] != 1:
            raise ValueError(f"{path} holds {x.shape[0]} images; interpolate takes one image per file")
        images.append(x)
    x = data_scaler(torch.cat(images), cfg.data.centered).to(device)
    cond = _labels_for(args, model, 1)
    g = torch.Generator(device).manual_seed(args.seed)
    code, nfe = _encode(args, model, x, None if cond is None else {"class_labels": cond["class_labels"].repeat(2)}, g)
    path_codes = interpolate(code[:1], code[1:], args.num).flatten(0, 1)
    frames_cond = None if cond is None else {"class_labels": cond["class_labels"].repeat(args.num)}
    frames, info = sample(model, (args.num, *shape), "ode", x_T=path_codes, cond=frames_cond, rtol=args.rtol,
                          atol=args.atol, eps=args.eps, return_info=True)
    frames = inverse_data_scaler(frames.cpu(), cfg.data.centered).clamp(0, 1)
    save_grid(frames, args.out, args.num)
    print(f"wrote {args.num} frames of the spherical interpolation between {args.images[0]} and {args.images[1]} "
          f"(encode NFE {nfe}, decode NFE {info.nfe}) to {args.out}")
    return 0


def add_controllable_commands(sub: Any, positive_int: Callable[[str], int],
                              add_common: Callable[[argparse.ArgumentParser], None],
                              add_step: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``inpaint``, ``colorize``, ``encode`` and ``interpolate`` on the sub-parsers ``sub`` of ``scoresde``
    (``--step``, ``--device``, ``--quiet`` and ``--threads`` come from ``add_step`` and ``add_common``)."""
    from ..guidance import INVERSE_METHODS

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workdir", required=True, help="run folder (its config and checkpoints)")
        add_step(p)
        p.add_argument("--no-ema", action="store_true", help="use the online weights instead of the EMA")
        p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
        p.add_argument("--class", dest="class_spec", default=None, metavar="LABELS",
                       help="condition a class-conditional run on these class(es) (a label, a comma list or 'all'); "
                            "default: its unconditional (null-label) model")

    def inverse_options(p: argparse.ArgumentParser, observed: str) -> None:
        run_options(p)
        p.add_argument("--image", required=True, help=f"{observed}: a .png/.jpg file or a .npy array (H, W), (C, H, W) "
                                                      "or (B, C, H, W), uint8 or float in [0, 1]")
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
                            "(float32, pixels on the [0, 1] scale, not clipped, shape (B * N, C, H, W))")
        add_common(p)

    inp = sub.add_parser("inpaint", help="fill in the masked pixels of images with a run's model",
                         description="Sample the unobserved pixels of --image given the observed ones (--mask, 1 = "
                                     "observed) from a run's model (scoresde.inpaint).")
    inverse_options(inp, "the images to complete")
    inp.add_argument("--mask", required=True,
                     help=f"the observed pixels: {', '.join(HALF_MASKS)} (the half that is kept), a .png (white = "
                          "observed) or a .npy of 0/1 broadcastable to the images")
    inp.set_defaults(func=cmd_inpaint)

    col = sub.add_parser("colorize", help="colour grey images with a run's model (colour runs)",
                         description="Sample colour images whose channel mean equals the grey value of --image "
                                     "(scoresde.colorize; colour images are turned grey first).")
    inverse_options(col, "the images to colour (their channel mean is kept)")
    col.set_defaults(func=cmd_colorize)

    def ode_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rtol", type=float, default=1e-5, help="ODE relative tolerance (default: %(default)s)")
        p.add_argument("--atol", type=float, default=1e-5, help="ODE absolute tolerance (default: %(default)s)")
        p.add_argument("--eps", type=float, default=1e-3, help="the data end time of the ODE (default: %(default)s)")
        add_common(p)

    enc = sub.add_parser("encode", help="latent codes of images (probability-flow ODE to time T)",
                         description="Integrate the probability-flow ODE from images (time eps) to T: the "
                                     "'uniquely identifiable' codes of Song et al. 2021 (scoresde.encode). Phase-space "
                                     "runs (PSLD/CLD) draw the initial momentum from --seed.")
    run_options(enc)
    enc.add_argument("--image", required=True, help="a .png/.jpg file or a .npy array of images")
    enc.add_argument("--out", required=True, help="output .npy (float32 codes, the model's state shape)")
    ode_options(enc)
    enc.set_defaults(func=cmd_encode)

    itp = sub.add_parser("interpolate", help="a strip between two images through their latent codes",
                         description="Encode two images with the probability-flow ODE, interpolate their codes "
                                     "spherically (slerp) and decode every frame with the ODE into a PNG strip.")
    run_options(itp)
    itp.add_argument("--images", nargs=2, required=True, metavar=("A", "B"), help="the two end images (.png or .npy)")
    itp.add_argument("--num", type=positive_int, default=8, help="frames, ends included (default: %(default)s)")
    itp.add_argument("--out", required=True, help="output .png strip (or .npy of the frames)")
    ode_options(itp)
    itp.set_defaults(func=cmd_interpolate)
