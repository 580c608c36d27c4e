"""Score networks in pure PyTorch: NCSN++/DDPM++, DDPM, NCSN and NCSNv2 (Score SDE architectures)."""

# NCSN / NCSNv2 (checkpoint loaders: scoresde.nets.ncsn.load_original_state_dict / load_original_ema).
# NCSN++ / DDPM++ and DDPM (original checkpoints: scoresde.nets.layers.load_original_checkpoint /
# load_original_state_dict; FIR resampling ops: scoresde.nets.upfirdn).
from .ddpm import DDPM as DDPM
from .ncsn import NCSN as NCSN
from .ncsn import NCSNv2 as NCSNv2
from .ncsn import ncsn_from_config as ncsn_from_config
from .ncsnpp import NCSNpp as NCSNpp
