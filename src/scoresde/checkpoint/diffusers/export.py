"""Exporting a scoresde DDPM or NCSN++ model as a diffusers folder: :func:`export_diffusers`.

The ``UNet2DModel`` and scheduler configs come from :mod:`.translate`, the weights are renamed with the key map of
:mod:`.keymap` read backwards, and :mod:`.folder` writes the folder.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ...models import DiffusionModel, ScoreModel
from ...sdes import ScheduleSDE
from ..run import load_directory
from .folder import is_diffusers_folder, write_diffusers_folder
from .keymap import check_groups, diffusers_key_map
from .load import load_diffusers
from .translate import export_scheduler_config, export_unet_config

__all__ = ["export_diffusers"]


def export_diffusers(model: ScoreModel | str | Path, out: str | Path, *, pipeline: bool = False,
                     use_ema: bool = True) -> Path:
    """Write a scoresde DDPM or NCSN++ model as a diffusers folder; returns ``out``.

    ``UNet2DModel.from_pretrained(out)`` loads the network and gives the same outputs (the network's own input and
    output; the conventions are the scheduler's). The scheduler config matching the model's SDE is written where
    diffusers has one (discrete DDPM chain: ``DDPMScheduler``; VE: ``ScoreSdeVeScheduler``; continuous VP:
    ``ScoreSdeVpScheduler``; sub-VP: none). Use it to share a model trained here; :func:`load_diffusers` reads the
    folder back.

    Args:
        model: a :class:`~scoresde.models.ScoreModel` with a :class:`~scoresde.nets.DDPM`
            (``decoder_attn_per_block=True``) or :class:`~scoresde.nets.NCSNpp` (skip layout: ``biggan`` blocks, FIR,
            ``output_skip``/``input_skip``) network, or a run folder / checkpoint directory (its EMA weights with
            ``use_ema``).
        out: the folder to write (created; existing files of the same names are replaced).
        pipeline: ``False``: a model folder (``config.json``, ``diffusion_pytorch_model.safetensors``,
            ``scheduler_config.json``), which ``UNet2DModel.from_pretrained(out)`` loads; ``True``: a pipeline folder
            (``model_index.json``, ``unet/``, ``scheduler/``) for ``DDPMPipeline``/``ScoreSdeVePipeline``.
        use_ema: with a path: load the EMA weights (default) or the online ones.

    Raises:
        ValueError: a network or option diffusers' ``UNet2DModel`` cannot express (named); a checkpoint file as
            ``model`` (load it with :func:`scoresde.load_checkpoint` and pass the model).
        FileNotFoundError: ``model`` is a path that does not exist, or a run folder without checkpoints.
    """
    if not isinstance(model, nn.Module):
        model = _load_source(Path(model), use_ema)
    if not isinstance(model, ScoreModel):
        raise ValueError(f"cannot export {type(model).__name__}: only ScoreModel (DDPM / NCSN++ networks) has a "
                         "diffusers counterpart")
    if isinstance(model.sde, ScheduleSDE):  # EDM, CosineVP, RectifiedFlow: no diffusers scheduler has their schedule
        raise ValueError(f"cannot export a model on {type(model.sde).__name__}: no diffusers scheduler matches its "
                         "noise schedule (diffusers folders hold VE, VP and DDPM models)")
    net = model.net
    unet_config = export_unet_config(net)
    km = diffusers_key_map(net, unet_config)
    check_groups(net, km)
    own = net.state_dict()
    tensors = {theirs: from_ours(own[ours].detach()).to("cpu").contiguous()
               for theirs, (ours, (_, from_ours)) in km.entries.items()}
    scheduler = export_scheduler_config(model)
    return write_diffusers_folder(out, unet_config, tensors, scheduler, pipeline=pipeline)


def _load_source(path: Path, use_ema: bool) -> DiffusionModel:
    """The model of a run folder or checkpoint directory (or of a diffusers folder, read back as it is)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected a run folder or a checkpoint directory)")
    if not path.is_dir():
        raise ValueError(f"{path} is a file: export_diffusers reads a run folder or a checkpoint directory (load a "
                         "Score SDE or PSLD checkpoint file with scoresde.load_checkpoint(path, config) and pass the "
                         "model)")
    if is_diffusers_folder(path):
        return load_diffusers(path)
    return load_directory(path, use_ema=use_ema)
