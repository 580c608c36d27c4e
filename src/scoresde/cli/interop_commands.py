"""``scoresde import --format diffusers`` and ``scoresde export --format diffusers``: runs <-> Hugging Face folders.

``import`` keeps its Score SDE / PSLD behaviour; :func:`add_interop_commands` adds the ``diffusers`` format to it (a
local pipeline or model folder becomes a run folder that ``sample``, ``likelihood``, ``eval`` and ``train``
(fine-tuning) use) and registers ``export`` (a run's DDPM/NCSN++ model as a folder that
``UNet2DModel.from_pretrained`` loads). The folder logic is :mod:`scoresde.checkpoint.diffusers`'.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

#: the --sde names of a diffusers model folder without a scheduler config
FOLDER_SDES = ("vesde", "vpsde", "subvpsde", "discrete_vpsde")


def _default_sde(name: str):
    from ..sdes import VESDE, VPSDE, DiscreteVPSDE, SubVPSDE

    return {"vesde": VESDE, "vpsde": VPSDE, "subvpsde": SubVPSDE, "discrete_vpsde": DiscreteVPSDE}[name]()


def cmd_import_diffusers(args: argparse.Namespace) -> int:
    """``scoresde import --format diffusers``: a diffusers folder becomes a run folder with one checkpoint (step 0:
    the folder's weights as both the online and the EMA weights, a fresh optimizer)."""
    from ..checkpoint.diffusers import diffusers_config, diffusers_network_state, read_diffusers_folder
    from ..checkpoint.run import save_training_checkpoint
    from ..config import apply_overrides, build_network, config_from_dict
    from ..training.build import build_optimizer
    from ..training.trainer import prepare_workdir

    if args.config is not None:
        raise ValueError("--config is for Score SDE and PSLD checkpoints: a diffusers folder carries its own config "
                         "(change entries with --set section.key=value)")
    workdir, source = Path(args.workdir), Path(args.checkpoint)
    if (workdir / "config.json").exists():
        raise ValueError(f"{workdir} already holds a run; import into a new --workdir")
    unet_config, state, scheduler = read_diffusers_folder(source)
    sde = _default_sde(args.sde) if args.sde else None
    if scheduler is not None and sde is not None:
        raise ValueError(f"{source} has a scheduler config, which fixes the SDE: drop --sde")
    cfg = config_from_dict(apply_overrides(diffusers_config(unet_config, scheduler, sde=sde,
                                                            continuous=args.continuous), args.set))
    sections = cfg.to_dict()
    net = build_network(sections)
    net.load_state_dict(diffusers_network_state(unet_config, state, sections))
    optimizer = build_optimizer(cfg, net.parameters())
    prepare_workdir(workdir, cfg)
    trainer_state = {"ema_num_updates": 0, "ema_decay": float(cfg.model.get("ema_rate", 0.999)), "scaler": {},
                     "skipped_steps": 0, "world_size": 1}
    path = save_training_checkpoint(workdir, 0, kind="checkpoint", net=net, ema_state=net.state_dict(),
                                    optimizer=optimizer, config=sections, trainer_state=trainer_state)
    print(f"imported {source} (diffusers {unet_config.get('_class_name')}, {cfg.model['name']}, "
          f"{cfg.training.sde}) as {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``scoresde export --format diffusers``: a run's model as a diffusers folder."""
    from ..checkpoint import load_checkpoint
    from ..checkpoint.diffusers import export_diffusers
    from ..checkpoint.run import is_run_folder
    from .commands import _checkpoint_path

    source = Path(args.workdir)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist (expected a run folder or a checkpoint directory)")
    if is_run_folder(source):
        source = _checkpoint_path(source, args.checkpoint)
    elif args.checkpoint is not None:
        raise ValueError(f"--step needs a run folder; {source} is a single checkpoint")
    model = load_checkpoint(source, use_ema=not args.online)
    out = export_diffusers(model, args.out, pipeline=args.pipeline)
    print(f"exported {source} (step {model.step}) to {out}")
    return 0


def add_interop_commands(sub: argparse._SubParsersAction, imp: argparse.ArgumentParser,
                         add_step: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the ``diffusers`` format to the ``import`` parser ``imp`` and register ``export``."""
    from . import commands

    for action in imp._actions:
        if action.dest == "format":
            action.choices = [*action.choices, "diffusers"]
            action.help = "checkpoint format; auto: a Lightning checkpoint is PSLD's; diffusers: a local pipeline or " \
                          "model folder (default: %(default)s)"
        elif action.dest == "config":
            action.required = False
            action.help = "its config: preset name, .json or original .py file (Score SDE and PSLD only: a " \
                          "diffusers folder carries its own)"
        elif action.dest == "checkpoint":
            action.help = "checkpoint file of the original code, or a diffusers folder"
    imp.add_argument("--sde", choices=FOLDER_SDES, default=None,
                     help="diffusers model folder without a scheduler config: its SDE (default parameters; change "
                          "them with --set model.sigma_max=..., model.beta_max=...)")
    imp.add_argument("--continuous", action=argparse.BooleanOptionalAction, default=None,
                     help="diffusers: the time convention (default: the discrete DDPM chain for DDPM schedulers, "
                          "continuous for Score SDE schedulers; scoresde.load_diffusers explains both)")

    imp.description += (" A local Hugging Face diffusers folder (a DDPM or NCSN++ UNet2DModel with its scheduler; "
                        "--format diffusers, or auto for a folder) becomes a run folder at step 0.")

    def dispatch(args: argparse.Namespace) -> int:
        from ..checkpoint.diffusers import is_diffusers_folder

        if args.format == "diffusers" or (args.format == "auto" and Path(args.checkpoint).is_dir()
                                          and is_diffusers_folder(args.checkpoint)):
            return cmd_import_diffusers(args)
        if args.sde is not None or args.continuous is not None:
            raise ValueError("--sde and --continuous are options of --format diffusers")
        if args.config is None:
            raise ValueError("--config is required for Score SDE and PSLD checkpoints")
        return commands.cmd_import(args)

    imp.set_defaults(func=dispatch)

    exp = sub.add_parser("export", help="write a run's model as a diffusers folder",
                         description="Write the DDPM or NCSN++ model of a run folder (or of one checkpoint directory) "
                                     "as a Hugging Face diffusers folder: UNet2DModel.from_pretrained(OUT) loads it "
                                     "and gives the network's outputs; a matching scheduler config is written where "
                                     "diffusers has one. Networks diffusers cannot express are refused with the "
                                     "options named.")
    exp.add_argument("--format", choices=["diffusers"], required=True, help="output format")
    exp.add_argument("--workdir", required=True, help="run folder or checkpoint directory")
    exp.add_argument("--out", required=True, help="folder to write")
    add_step(exp)
    exp.add_argument("--online", action="store_true", help="the online weights instead of the EMA weights")
    exp.add_argument("--pipeline", action="store_true",
                     help="a pipeline folder (model_index.json, unet/, scheduler/) instead of a model folder")
    exp.set_defaults(func=cmd_export)
