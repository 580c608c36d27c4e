"""Score networks in pure PyTorch: NCSN++/DDPM++, DDPM, NCSN and NCSNv2 (Score SDE architectures)."""

# NCSN / NCSNv2 (checkpoint loaders: scoresde.nets.ncsn.load_original_state_dict / load_original_ema).
# NCSN++ / DDPM++ and DDPM (original checkpoints: scoresde.nets.layers.load_original_checkpoint /
# load_original_state_dict; FIR resampling ops: scoresde.nets.upfirdn).
# Class-conditional networks (num_classes > 0): NCSNpp, DDPM, ToyMLP; class_labels int64 (B,), NULL_LABEL = -1 or
# None for "no class" (scoresde.nets.layers.ClassEmbedding).
from .ddpm import DDPM as DDPM
from .layers import CONDITIONAL_NETWORKS as CONDITIONAL_NETWORKS
from .layers import NULL_LABEL as NULL_LABEL
from .layers import NULL_LABEL_MODES as NULL_LABEL_MODES
from .layers import ClassEmbedding as ClassEmbedding
from .ncsn import NCSN as NCSN
from .ncsn import NCSNv2 as NCSNv2
from .ncsn import ncsn_from_config as ncsn_from_config
from .ncsnpp import NCSNpp as NCSNpp
