"""Score networks in pure PyTorch: NCSN++/DDPM++, DDPM, NCSN and NCSNv2 (Score SDE architectures).

Modules: :mod:`~scoresde.nets.ncsnpp`, :mod:`~scoresde.nets.ddpm`, :mod:`~scoresde.nets.ncsn` and
:mod:`~scoresde.nets.toy` hold the networks, :mod:`~scoresde.nets.classifier` the noise-conditional classifiers;
they are built from :mod:`~scoresde.nets.unet_blocks` (residual / attention / resampling blocks of the U-Nets),
:mod:`~scoresde.nets.ncsn_blocks` (RefineNet blocks and InstanceNorm++ of NCSN), :mod:`~scoresde.nets.embeddings`
(noise-level and class embeddings), :mod:`~scoresde.nets.init` (initialisers), :mod:`~scoresde.nets.activations`,
:mod:`~scoresde.nets.upfirdn` (FIR resampling) and :mod:`~scoresde.nets.config_checks`. Original checkpoints:
:mod:`~scoresde.nets.original_keys` names the original keys, :mod:`scoresde.checkpoint.state_dict` loads them.
Class-conditional networks (:data:`CONDITIONAL_NETWORKS`, built with ``num_classes > 0``): ``class_labels`` int64
``(B,)``, :data:`NULL_LABEL` (``-1``) or None for "no class" (:class:`ClassEmbedding`).
"""

from .catalog import CONDITIONAL_NETWORKS as CONDITIONAL_NETWORKS
from .catalog import SCORE_NETWORKS as SCORE_NETWORKS
from .ddpm import DDPM as DDPM
from .embeddings import NULL_LABEL as NULL_LABEL
from .embeddings import NULL_LABEL_MODES as NULL_LABEL_MODES
from .embeddings import ClassEmbedding as ClassEmbedding
from .ncsn import NCSN as NCSN
from .ncsn import NCSNv2 as NCSNv2
from .ncsn import ncsn_from_config as ncsn_from_config
from .ncsnpp import NCSNpp as NCSNpp
