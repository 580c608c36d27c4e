"""Deprecated: moved to :mod:`scoresde.config.presets.phase_space`; re-exported here."""

from ..config.presets.phase_space import (
    PHASE_SPACE_PRESETS,
    cld_cifar10,
    psld_afhqv2_128,
    psld_celeba64,
    psld_cifar10,
)

__all__ = ["PHASE_SPACE_PRESETS", "cld_cifar10", "psld_afhqv2_128", "psld_celeba64", "psld_cifar10"]
