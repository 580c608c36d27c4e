"""Checkpoints in and out of run folders: ``scoresde import`` (an original Score SDE ``.pth``, a PSLD Lightning
``.ckpt``, an NVlabs/edm network pickle or a local Hugging Face diffusers folder becomes a run folder that
``sample``, ``likelihood``, ``eval`` and ``train`` (fine-tuning) use) and ``scoresde export --format diffusers`` (a
run's DDPM/NCSN++ model as a folder that ``UNet2DModel.from_pretrained`` loads) or ``--format edm`` (a preconditioned
NCSN++ model as the file of :func:`scoresde.checkpoint.edm_export.export_edm` for NVlabs/edm's code). The folder
logic is :mod:`scoresde.checkpoint.diffusers`'.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..checkpoint.atomic import atomic_directory
from ..checkpoint.diffusers.export import export_diffusers
from ..checkpoint.diffusers.folder import is_diffusers_folder, read_diffusers_folder
from ..checkpoint.diffusers.load import diffusers_network_state
from ..checkpoint.diffusers.translate import diffusers_config
from ..checkpoint.edm import load_edm_checkpoint
from ..checkpoint.edm_export import EDM_CLASS_NAMES, export_edm
from ..checkpoint.edm_pickle import is_edm_pickle
from ..checkpoint.native import read_original_training_state
from ..checkpoint.psld import (
    is_lightning_checkpoint,
    load_weights_only,
    read_psld_checkpoint,
    read_psld_training_state,
)
from ..checkpoint.run import is_run_folder, save_training_checkpoint
from ..config import apply_overrides, build_network, config_from_dict, resolve_config
from ..models.preconditioning import make_preconditioning
from ..sdes import VESDE, VPSDE, DiscreteVPSDE, SubVPSDE
from ..training.build import build_optimizer
from ..training.lock import WorkdirLock
from ..training.workdir import prepare_workdir
from .command_table import COMMAND_HELP
from .common import add_step, load_run_model

#: the --sde names of a diffusers model folder without a scheduler config
FOLDER_SDES = ("vesde", "vpsde", "subvpsde", "discrete_vpsde")
#: the --format values of a checkpoint file (diffusers folders add "diffusers")
IMPORT_FORMATS = ("auto", "score-sde", "psld")


def add_interop_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``import`` and ``export`` on the sub-parsers ``sub`` of ``scoresde``."""
    imp = sub.add_parser("import", help=COMMAND_HELP["import"],
                         description="Convert an original Score SDE checkpoint (.pth) or a PSLD PyTorch Lightning "
                                     "checkpoint (.ckpt) into a run folder that `sample`, `likelihood` and `train` "
                                     "(fine-tuning) use. Files are read with torch.load(weights_only=True). A local "
                                     "Hugging Face diffusers folder (a DDPM or NCSN++ UNet2DModel with its scheduler; "
                                     "--format diffusers, or auto for a folder) becomes a run folder at step 0, and so "
                                     "does an NVlabs/edm network pickle (--format edm, or auto; read without executing "
                                     "anything from it).")
    imp.add_argument("--checkpoint", "--score-sde", dest="checkpoint", required=True, metavar="CKPT",
                     help="checkpoint file of the original code, or a diffusers folder")
    imp.add_argument("--format", default="auto", choices=[*IMPORT_FORMATS, "diffusers", "edm"],
                     help="checkpoint format; auto: a Lightning checkpoint is PSLD's; diffusers: a local pipeline or "
                          "model folder (default: %(default)s)")
    imp.add_argument("--config", default=None,
                     help="its config: preset name, .json or original .py file (Score SDE and PSLD only: a diffusers "
                          "folder carries its own)")
    imp.add_argument("--workdir", required=True, help="new run folder")
    imp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    imp.add_argument("--sde", choices=FOLDER_SDES, default=None,
                     help="diffusers model folder without a scheduler config: its SDE (default parameters; change "
                          "them with --set model.sigma_max=..., model.beta_max=...)")
    imp.add_argument("--continuous", action=argparse.BooleanOptionalAction, default=None,
                     help="diffusers: the time convention (default: the discrete DDPM chain for DDPM schedulers, "
                          "continuous for Score SDE schedulers; scoresde.load_diffusers explains both)")
    imp.set_defaults(func=cmd_import)

    exp = sub.add_parser("export", help=COMMAND_HELP["export"],
                         description="Write the DDPM or NCSN++ model of a run folder (or of one checkpoint directory) "
                                     "as a Hugging Face diffusers folder (--format diffusers: "
                                     "UNet2DModel.from_pretrained(OUT) loads it and gives the network's outputs; a "
                                     "matching scheduler config is written where diffusers has one), or an EDM/VP/VE-"
                                     "preconditioned NCSN++ model as an NVlabs/edm network (--format edm: a torch.save "
                                     "file of class_name, init_kwargs and state_dict; EDM's EDMPrecond(**init_kwargs)."
                                     "load_state_dict(state_dict) gives the model's denoiser). Networks the format "
                                     "cannot express are refused with the options named.")
    exp.add_argument("--format", choices=["diffusers", "edm"], required=True, help="output format")
    exp.add_argument("--workdir", required=True, help="run folder or checkpoint directory")
    exp.add_argument("--out", required=True, help="folder (diffusers) or file (edm, e.g. model.pt) to write")
    add_step(exp)
    exp.add_argument("--online", action="store_true", help="the online weights instead of the EMA weights")
    exp.add_argument("--pipeline", action="store_true",
                     help="diffusers: a pipeline folder (model_index.json, unet/, scheduler/) instead of a model "
                          "folder")
    exp.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    """``scoresde import``: a diffusers folder (``--format diffusers``, or ``auto`` for a folder that is one) goes to
    :func:`cmd_import_diffusers`, a Score SDE or PSLD checkpoint to :func:`cmd_import_original`."""
    if args.format == "diffusers" or (args.format == "auto" and Path(args.checkpoint).is_dir()
                                      and is_diffusers_folder(args.checkpoint)):
        return cmd_import_diffusers(args)
    if args.format == "edm" or (args.format == "auto" and is_edm_pickle(args.checkpoint)):
        return cmd_import_edm(args)
    if args.sde is not None or args.continuous is not None:
        raise ValueError("--sde and --continuous are options of --format diffusers")
    if args.config is None:
        raise ValueError("--config is required for Score SDE and PSLD checkpoints")
    return cmd_import_original(args)


def _read_import_state(path: Path, fmt: str, sections: dict):
    """``(format, TrainingState)`` of a checkpoint to import: a Score SDE ``.pth`` or a PSLD Lightning ``.ckpt``
    (``fmt='auto'``: a file with a Lightning ``state_dict`` is PSLD's, anything else Score SDE's)."""
    if fmt not in IMPORT_FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; valid values are: {', '.join(IMPORT_FORMATS)}")
    if fmt == "auto":
        ckpt = load_weights_only(path)  # Score SDE files are read again by their reader
        if is_lightning_checkpoint(ckpt):
            return "psld", read_psld_training_state(ckpt, sections)
        del ckpt
        fmt = "score-sde"
    if fmt == "psld":
        return fmt, read_psld_training_state(read_psld_checkpoint(path), sections)
    return fmt, read_original_training_state(path, sections)


def cmd_import_original(args: argparse.Namespace) -> int:
    """``scoresde import``: an original Score SDE checkpoint or a PSLD (Lightning) checkpoint becomes a run folder
    (sample, evaluate, fine-tune)."""
    workdir = Path(args.workdir)
    if (workdir / "config.json").exists():
        raise ValueError(f"{workdir} already holds a run; import into a new --workdir")
    cfg = config_from_dict(apply_overrides(resolve_config(args.config), args.set))
    sections = cfg.to_dict()
    fmt, state = _read_import_state(Path(args.checkpoint), getattr(args, "format", "auto"), sections)
    if state.ema_state is None:
        raise ValueError(f"{args.checkpoint} has no EMA weights")
    net = build_network(sections)
    net.load_state_dict(state.model_state)
    optimizer = build_optimizer(cfg, net.parameters())
    if state.optimizer_state is not None and state.optimizer_state.get("state"):
        optimizer.load_state_dict(state.optimizer_state)
    trainer_state = {"ema_num_updates": int(state.trainer_state["ema_num_updates"]),
                     "ema_decay": float(cfg.model.get("ema_rate", 0.999)),
                     "scaler": {}, "skipped_steps": 0, "world_size": 1}
    path = _write_run(workdir, cfg, state.step, net=net, ema_state=state.ema_state, optimizer=optimizer,
                      trainer_state=trainer_state)
    print(f"imported {args.checkpoint} ({fmt} checkpoint, step {state.step}) as {path}")
    return 0


def _write_run(workdir: Path, cfg, step: int, **state) -> Path:
    """Write the imported run folder (``config.json`` and one checkpoint) under the workdir lock: a trainer or
    another import writing the same folder meanwhile is refused in one line naming its PID
    (:class:`~scoresde.training.lock.WorkdirLockedError`), never interleaved."""
    with WorkdirLock(workdir):
        if (workdir / "config.json").exists():  # checked again under the lock: another process may have started
            raise ValueError(f"{workdir} already holds a run; import into a new --workdir")
        prepare_workdir(workdir, cfg)
        return save_training_checkpoint(workdir, step, kind="checkpoint", config=cfg.to_dict(), **state)


def _write_step0_run(workdir: Path, cfg, net) -> Path:
    """A run folder at step 0 for weights that come without a training state (a diffusers folder, an EDM pickle):
    ``net``'s weights as both the online and the EMA weights, a fresh optimizer."""
    optimizer = build_optimizer(cfg, net.parameters())
    trainer_state = {"ema_num_updates": 0, "ema_decay": float(cfg.model.get("ema_rate", 0.999)), "scaler": {},
                     "skipped_steps": 0, "world_size": 1}
    return _write_run(workdir, cfg, 0, net=net, ema_state=net.state_dict(), optimizer=optimizer,
                      trainer_state=trainer_state)


def _default_sde(name: str):
    return {"vesde": VESDE, "vpsde": VPSDE, "subvpsde": SubVPSDE, "discrete_vpsde": DiscreteVPSDE}[name]()


def cmd_import_diffusers(args: argparse.Namespace) -> int:
    """``scoresde import --format diffusers``: a diffusers folder becomes a run folder with one checkpoint (step 0:
    the folder's weights as both the online and the EMA weights, a fresh optimizer)."""
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
    path = _write_step0_run(workdir, cfg, net)
    print(f"imported {source} (diffusers {unet_config.get('_class_name')}, {cfg.model['name']}, "
          f"{cfg.training.sde}) as {path}")
    return 0


def cmd_import_edm(args: argparse.Namespace) -> int:
    """``scoresde import --format edm``: an EDM network pickle becomes a run folder with one checkpoint (step 0: its
    EMA network as both the online and the EMA weights, a fresh optimizer), on the ``edm`` SDE with the file's
    preconditioning (:func:`scoresde.checkpoint.edm.load_edm_checkpoint`)."""
    if args.config is not None or args.sde is not None or args.continuous is not None:
        raise ValueError("--config, --sde and --continuous are not options of --format edm: an EDM pickle carries its "
                         "own architecture and preconditioning (change entries with --set section.key=value)")
    workdir, source = Path(args.workdir), Path(args.checkpoint)
    if (workdir / "config.json").exists():
        raise ValueError(f"{workdir} already holds a run; import into a new --workdir")
    model = load_edm_checkpoint(source)
    if model.precond.options() != make_preconditioning(model.precond.name).options() and (
            model.precond.name != "edm"):
        raise ValueError(f"{source}: its {model.precond!r} has parameters a run config cannot hold; use "
                         "scoresde.load_checkpoint on the file instead")
    cfg = config_from_dict(apply_overrides(model.config.to_dict(), args.set))
    sections = cfg.to_dict()
    net = build_network(sections)
    net.load_state_dict(model.net.state_dict())
    path = _write_step0_run(workdir, cfg, net)
    print(f"imported {source} (EDM {model.precond.name} preconditioning, {cfg.model['embedding_type']} NCSN++) as "
          f"{path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``scoresde export``: a run's model as a diffusers folder (``--format diffusers``) or as an EDM network file
    (``--format edm``, :func:`scoresde.checkpoint.edm_export.export_edm`)."""
    if args.format == "edm" and args.pipeline:
        raise ValueError("--pipeline is an option of --format diffusers; --format edm writes one file")
    source = Path(args.workdir)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist (expected a run folder or a checkpoint directory)")
    if is_run_folder(source):  # its newest valid checkpoint, as every command that reads a run
        model, _, source = load_run_model(source, args.checkpoint, not args.online, "cpu")
    elif args.checkpoint is not None:
        raise ValueError(f"--step needs a run folder; {source} is a single checkpoint")
    else:
        model = load_checkpoint(source, use_ema=not args.online)
    if args.format == "edm":  # one file, written atomically by export_edm
        out = export_edm(model, args.out)
        print(f"exported {source} (step {model.step}) to {out} (EDM {EDM_CLASS_NAMES[model.precond.name]})")
        return 0
    # the folder appears whole or not at all; a full disk is one line naming it
    out = atomic_directory(args.out, lambda tmp: export_diffusers(model, tmp, pipeline=args.pipeline))
    print(f"exported {source} (step {model.step}) to {out}")
    return 0
