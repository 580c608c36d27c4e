"""The score networks of this package, and which of them take class labels.

Each network class declares its ``model.name`` values (``config_names``) and whether it can be class-conditional
(``class_conditional``); the tuples here are read from those declarations, so adding a network means adding its class
to :data:`SCORE_NETWORKS` and nothing else here. The config factory (:mod:`scoresde.config.factory`) takes its list
of conditional ``model.name`` values from :data:`CONDITIONAL_NETWORKS`.
"""

from __future__ import annotations

from torch import nn

from .ddpm import DDPM
from .ncsn import NCSN, NCSNv2
from .ncsnpp import NCSNpp
from .toy import ToyMLP

__all__ = ["CONDITIONAL_NETWORKS", "SCORE_NETWORKS"]

#: every score network class (the noise-conditional classifiers of :mod:`scoresde.nets.classifier` are not ones)
SCORE_NETWORKS: tuple[type[nn.Module], ...] = (NCSNpp, DDPM, NCSN, NCSNv2, ToyMLP)
#: the networks that take ``model.num_classes`` / ``class_labels`` (the others are class-unconditional)
CONDITIONAL_NETWORKS: tuple[type[nn.Module], ...] = tuple(net for net in SCORE_NETWORKS if net.class_conditional)
