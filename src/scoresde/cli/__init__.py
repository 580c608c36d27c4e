"""The ``scoresde`` command line (also ``python -m scoresde``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


class _DeprecatedStepAlias(argparse.Action):
    """``--checkpoint N`` of ``sample``/``likelihood``/``eval``: the old name of ``--step N`` (``--checkpoint`` is a
    file in ``import``); works as before, with a one-line note on stderr."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated here (in `scoresde import` it is a file); "
              f"use --step {values}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_step(p: argparse.ArgumentParser) -> None:
    """``--step N`` (a numbered checkpoint of the run folder) and its deprecated alias ``--checkpoint N``, hidden
    from ``--help``; both set ``args.checkpoint``."""
    p.add_argument("--step", dest="checkpoint", type=int, default=None, metavar="STEP",
                   help="step of a numbered checkpoint (default: newest)")
    p.add_argument("--checkpoint", dest="checkpoint", type=int, default=None, action=_DeprecatedStepAlias,
                   help=argparse.SUPPRESS)


def _add_sampler(p: argparse.ArgumentParser, positive_int=_positive_int) -> None:
    """``--sampler`` (every registered sampler), ``--steps`` and ``--set sampling.KEY=VALUE``."""
    from ..sampling import SAMPLERS

    fixed = [name for name, spec in SAMPLERS.items() if spec.fixed_steps]
    p.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                   help="sampler (default: the run's sampling.method); its other options: --set sampling.KEY=VALUE")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help=f"number of sampling steps of a fixed-step sampler ({', '.join(fixed)}; default: the "
                        "model's number of noise scales)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a sampling option, e.g. --set sampling.corrector=none (repeatable; only sampling.*: "
                        "the model and its SDE are the checkpoint's)")


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.conditional:
        from .conditional_demo import cmd_conditional_demo

        return cmd_conditional_demo(args)
    if args.classifier is not None:
        raise ValueError("--classifier is an option of the conditional demo; add --conditional")
    if args.toy:
        from .demo import DemoConfig, format_summary, run_demo

        cfg = DemoConfig(steps=args.steps or DemoConfig.steps, seed=args.seed,
                         num_samples=args.num_samples or DemoConfig.num_samples)
        print(format_summary(run_demo(args.out, cfg, progress=not args.quiet)))
        return 0
    from .digits_demo import format_digits_summary, run_digits_demo

    overrides = [f"seed={args.seed}"] + ([f"training.n_iters={args.steps}"] if args.steps else [])
    metrics = run_digits_demo(args.out, overrides=tuple(overrides), num_samples=args.num_samples or 64,
                              progress=not args.quiet)
    print(format_digits_summary(metrics))
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: this rank's GPU if any, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads (default: torch's). On cores shared with other jobs use 1: two processes "
                        "of 2 threads on 2 cores ran a small model's training step 80x slower than 1 thread each")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scoresde`` command and its sub-commands."""
    from . import commands

    parser = argparse.ArgumentParser(prog="scoresde", description="Score-based diffusion models in PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model (resumes from the workdir's newest checkpoint)",
                           description="Train the config in --workdir. Launch with torchrun for DDP on several "
                                       "GPUs/processes; a plain launch is one process. An existing workdir resumes "
                                       "from its newest valid checkpoint (omit --config to reuse its config).")
    train.add_argument("--config", default=None, help="preset name (see `scoresde configs`), .json file or original "
                                                      "configs/**.py file")
    train.add_argument("--workdir", required=True, help="run folder (config.json, checkpoints/, samples/, tb/)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set training.batch_size=64 (repeatable)")
    train.add_argument("--max-steps", type=_positive_int, default=None, help="stop after this many steps")
    train.add_argument("--init-from", default=None, metavar="CKPT",
                       help="fine-tune: start a new run from the weights (online and EMA) of a run folder, a "
                            "checkpoint directory or an original Score SDE .pth; ignored once the workdir has "
                            "checkpoints (it then resumes)")
    _add_common(train)
    train.set_defaults(func=commands.cmd_train)

    smp = sub.add_parser("sample", help="draw samples from a checkpoint",
                         description="Sample a run's checkpoint (EMA weights) with its sampling config.")
    smp.add_argument("--workdir", required=True)
    _add_step(smp)
    smp.add_argument("--num", type=_positive_int, default=64, help="number of samples (default: %(default)s)")
    smp.add_argument("--batch-size", type=commands.batch_size_arg, default=256,
                     help="samples per batch, or 'auto': the largest that fits in half the free memory (default: "
                          "%(default)s); the samples depend on it (one generator per batch)")
    smp.add_argument("--out", default=None, help="output .png (grid / scatter) or .npz (uint8 images or points)")
    _add_sampler(smp)
    smp.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    smp.add_argument("--no-ema", action="store_true", help="use the online weights instead of the EMA")
    smp.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32",
                     help="network arithmetic: float32, bf16/fp16 autocast (refused where the device lacks it), or "
                          "auto = bf16 where native, else float32 (default: %(default)s)")
    _add_common(smp)
    from .controllable_commands import add_class_options, add_controllable_commands

    add_class_options(smp)  # --class, --guidance, --scale, --classifier
    smp.set_defaults(func=commands.cmd_sample)

    lik = sub.add_parser("likelihood", help="bits/dim of a data split under a checkpoint (probability-flow ODE)")
    lik.add_argument("--workdir", required=True)
    _add_step(lik)
    lik.add_argument("--split", default="test", choices=["train", "test"])
    lik.add_argument("--num", type=_positive_int, default=256, help="examples to evaluate (default: %(default)s)")
    lik.add_argument("--batch-size", type=_positive_int, default=64)
    lik.add_argument("--trace", default="hutchinson-rademacher",
                     choices=["hutchinson-rademacher", "hutchinson-gaussian", "exact"])
    lik.add_argument("--n-probes", type=_positive_int, default=1,
                     help="Hutchinson probes per example (momentum draws for PSLD/CLD runs) (default: %(default)s)")
    lik.add_argument("--seed", type=int, default=0)
    lik.add_argument("--no-ema", action="store_true")
    _add_common(lik)
    lik.set_defaults(func=commands.cmd_likelihood)

    cfgs = sub.add_parser("configs", help="list the presets (ours and every original Score SDE config)")
    cfgs.add_argument("--filter", default=None, help="only names containing this text")
    cfgs.set_defaults(func=commands.cmd_configs)

    imp = sub.add_parser("import", help="turn a Score SDE or PSLD checkpoint into a run folder",
                         description="Convert an original Score SDE checkpoint (.pth) or a PSLD PyTorch Lightning "
                                     "checkpoint (.ckpt) into a run folder that `sample`, `likelihood` and `train` "
                                     "(fine-tuning) use. Files are read with torch.load(weights_only=True).")
    imp.add_argument("--checkpoint", "--score-sde", dest="checkpoint", required=True, metavar="CKPT",
                     help="checkpoint file of the original code")
    imp.add_argument("--format", default="auto", choices=["auto", "score-sde", "psld"],
                     help="checkpoint format; auto: a Lightning checkpoint is PSLD's (default: %(default)s)")
    imp.add_argument("--config", required=True, help="its config: preset name, .json or original .py file")
    imp.add_argument("--workdir", required=True, help="new run folder")
    imp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    imp.set_defaults(func=commands.cmd_import)
    from .interop_commands import add_interop_commands  # `import --format diffusers` and `export`

    add_interop_commands(sub, imp, _add_step)

    demo = sub.add_parser(
        "demo", help="train on the built-in digits (or a 2-D toy), sample, and evaluate",
        description="Train DDPM++ on the built-in 16x16 digits (no download) for a few CPU minutes, sample a grid "
                    "(digits.png), and measure test bits/dim and digit-classifier confidence (metrics.json). "
                    "Re-running resumes the run in OUT/run. With --toy: a 2-D Gaussian mixture whose exact score "
                    "checks every sampler and the likelihood (samples.png, metrics.json).")
    demo.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    demo.add_argument("--toy", action="store_true", help="the 2-D Gaussian-mixture demo instead of the digits")
    demo.add_argument("--conditional", action="store_true",
                      help="the class-conditional digits demo: classifier-free and classifier guidance, inpainting, "
                           "interpolation (grid.png, inpainting.png, interpolation.png, metrics.json)")
    demo.add_argument("--classifier", default=None, metavar="DIR",
                      help="--conditional: a `scoresde train-classifier` folder for the digits' VP SDE (default: "
                           "train one in OUT/classifier)")
    demo.add_argument("--steps", type=_positive_int, default=None,
                      help="training steps (default: the preset's, 1000 for digits, 5000 for the toy)")
    demo.add_argument("--num-samples", type=_positive_int, default=None,
                      help="samples drawn (default: 64 digits, 2000 toy points; --conditional: per digit and guidance "
                           "setting, 20)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_cmd_demo)

    from .eval_commands import add_eval_commands  # `eval` and `fid-stats` (the evaluation issue)

    add_eval_commands(sub, _positive_int, _add_common, _add_step, _add_sampler)
    from .classifier_commands import add_classifier_commands  # `train-classifier` (controllable generation)

    add_classifier_commands(sub, _positive_int, _add_common)
    add_controllable_commands(sub, _positive_int, _add_common, _add_step)  # inpaint, colorize, encode, interpolate
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scoresde``: parse ``argv`` and run the sub-command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError, TypeError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"scoresde {args.command}: error: {message}", file=sys.stderr)
        return 3 if isinstance(err, FloatingPointError) else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
