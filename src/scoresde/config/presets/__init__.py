"""Every preset behind one registry: the original Score SDE configs, ours (2-D toys, digits), the phase-space
papers' (PSLD, CLD) and FP-Diffusion's fine-tuning ones.

A preset (:class:`~scoresde.config.presets.entry.Preset`) is a function returning a fresh config as nested plain
dicts in the original layout (:data:`~scoresde.config.presets.entry.RawConfig`) with a one-line description stored
beside its definition (``scoresde configs`` prints it, :func:`describe_preset` returns it); :func:`get_preset` calls
it, and :func:`scoresde.config.resolve_config` / :func:`scoresde.config.load_config` reach every preset through it.

* ``ve/...``, ``vp/...``, ``subvp/...``: the files of the original ``configs/`` tree (:mod:`.original`);
* ``toy/...``, ``digits/...``: scoresde's own (:mod:`.ours`);
* ``psld/...``, ``cld/...``: the phase-space papers' image configs (:mod:`.psld_cld`);
* ``fp/<base>``: FP-Diffusion fine-tuning of ``<base>`` (:mod:`.fp`);
* ``edm/...``, ``fm/...``: EDM's and rectified flow's training recipes (:mod:`.recipes`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

from .entry import Preset
from .fp import FP_BASES, FP_FINETUNE_ITERS, FP_PRESETS
from .original import (
    DEFAULTS,
    RawConfig,
    list_original_presets,
    merge_config,
    original_description,
    original_preset,
    unknown_preset_error,
)
from .ours import OUR_PRESETS
from .psld_cld import PHASE_SPACE_PRESETS
from .recipes import RECIPE_PRESETS

__all__ = ["DEFAULTS", "FP_BASES", "FP_FINETUNE_ITERS", "PRESETS", "Preset", "RawConfig", "describe_preset",
           "get_preset", "list_original_presets", "list_presets", "merge_config", "original_preset"]

#: every preset by name -> a :class:`Preset`: calling it returns its config (nested dicts, a fresh copy on every
#: call); ``.description`` is its one line
PRESETS: Mapping[str, Preset] = MappingProxyType({
    **OUR_PRESETS,
    **PHASE_SPACE_PRESETS,
    **RECIPE_PRESETS,
    **FP_PRESETS,
    **{name: Preset(functools.partial(original_preset, name), original_description(name))
       for name in list_original_presets()},
})


def list_presets() -> list[str]:
    """Every preset name: ours (``toy/``, ``digits/``, ``psld/``, ``cld/``, ``fp/``) sorted, then the original
    Score SDE ones sorted."""
    originals = list_original_presets()
    return sorted(set(PRESETS) - set(originals)) + originals


def get_preset(name: str) -> RawConfig:
    """The config of preset ``name`` as nested dicts (a fresh copy: the caller may modify it).

    An original preset may also be named by its file (``configs/ve/cifar10_ncsnpp.py``). An unknown name raises
    ``ValueError`` listing the closest names.
    """
    key = name if name in PRESETS else name.removeprefix("configs/").removesuffix(".py")
    if key not in PRESETS:
        raise unknown_preset_error(name, list(PRESETS))
    return PRESETS[key]()


def describe_preset(name: str) -> str:
    """The one-line description of preset ``name`` (SDE, network, data, resolution, source), as ``scoresde configs``
    prints it. An unknown name raises ``ValueError`` listing the closest names (as :func:`get_preset`)."""
    key = name if name in PRESETS else name.removeprefix("configs/").removesuffix(".py")
    if key not in PRESETS:
        raise unknown_preset_error(name, list(PRESETS))
    return PRESETS[key].description
