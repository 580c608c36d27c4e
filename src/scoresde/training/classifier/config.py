"""The options of ``scoresde train-classifier`` (``--set classifier.KEY=VALUE``): :class:`ClassifierConfig`.

It is a typed section like the run config's: built by :func:`scoresde.config.schema.section_from_dict` (each value
converted to its field's type, unknown keys refused with the closest valid ones) and overridden by
:func:`scoresde.config.apply_overrides`, with the range checks of :mod:`scoresde.numerics.checks`; a bad value is one
:class:`~scoresde.config.ConfigError` line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...config import ConfigError, apply_overrides
from ...config.schema import section_from_dict
from ...numerics.checks import check_choice, check_count, check_flag

__all__ = ["EVAL_SPLITS", "NETWORKS", "ClassifierConfig", "apply_classifier_overrides"]

#: ``classifier.network`` values: the NCSN++ encoder for images, the MLP for points
NETWORKS = ("ncsnpp", "mlp")
#: ``classifier.eval_split`` values
EVAL_SPLITS = ("train", "test")
#: the fields that must be positive integers
_COUNTS = ("nf", "num_res_blocks", "hidden", "depth", "time_embed_dim", "steps", "batch_size", "log_freq",
           "checkpoint_freq", "eval_bins", "eval_batch_size")


@dataclass
class ClassifierConfig:
    """The ``classifier`` options of ``scoresde train-classifier`` (``--set classifier.KEY=VALUE``).

    ``None`` defaults are derived from the data and the SDE, as documented per field.
    """

    network: str | None = None              # 'ncsnpp' (images) | 'mlp' (points); None: by the data's shape
    num_classes: int | None = None          # None: 1 + the largest training label
    nf: int = 32                            # NCSN++ encoder: base channels
    ch_mult: tuple[int, ...] = (1, 2, 2)    #   channel multiplier per resolution
    num_res_blocks: int = 1                 #   residual blocks per resolution
    attn_resolutions: tuple[int, ...] = ()  #   resolutions with self-attention
    dropout: float = 0.0                    #   dropout in the residual blocks
    resblock_type: str = "biggan"           #   'biggan' | 'ddpm'
    embedding_type: str | None = None       #   None: 'positional' for 999t labels (VP/sub-VP), else 'fourier'
    fir: bool = False                       #   FIR downsampling
    hidden: int = 128                       # MLP: width
    depth: int = 3                          #   residual layers
    time_embed_dim: int = 32                #   sinusoidal features
    max_period: float | None = None         #   None: 1e-3 for raw-t labels (PSLD/CLD), else 1e4
    steps: int = 2000                       # optimizer steps
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 100                       # steps of linear learning-rate warm-up; 0 disables it
    grad_clip: float = 1.0                  # max global gradient norm; negative disables clipping
    weight_decay: float = 0.0
    ema_rate: float = 0.999                 # EMA decay of the weights (Score SDE's rule); 0 disables the EMA
    eps: float = 1e-5                       # smallest training time: t ~ U(eps, T)
    seed: int = 0
    log_freq: int = 100                     # steps between logged losses
    checkpoint_freq: int = 500              # steps between checkpoints (and at the end)
    eval_bins: int = 10                     # bins of t in the accuracy table
    eval_num: int | None = None             # held-out examples for the table; None: the whole split
    eval_split: str = "test"
    eval_batch_size: int = 500

    def validate(self) -> ClassifierConfig:
        """Check the values the types alone do not; return ``self``."""
        if self.network is not None:
            check_choice("classifier.network", self.network, NETWORKS, error=ConfigError)
        for name in _COUNTS:
            check_count(f"classifier.{name}", getattr(self, name), error=ConfigError)
        if self.eval_num is not None:
            check_count("classifier.eval_num", self.eval_num, error=ConfigError)
        check_flag("classifier.fir", self.fir, error=ConfigError)
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"classifier.num_classes must be >= 2 or null, got {self.num_classes}")
        if not self.lr > 0 or self.warmup < 0 or not 0 <= self.ema_rate < 1 or not 0 < self.eps < 1:
            raise ConfigError(f"classifier.lr ({self.lr}) must be > 0, warmup ({self.warmup}) >= 0, ema_rate "
                              f"({self.ema_rate}) in [0, 1) and eps ({self.eps}) in (0, 1)")
        check_choice("classifier.eval_split", self.eval_split, EVAL_SPLITS, error=ConfigError)
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ClassifierConfig:
        """A validated config from plain values (JSON types; lists become tuples); unknown keys are an error."""
        return section_from_dict("classifier", cls, values).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def apply_classifier_overrides(cfg: ClassifierConfig, overrides: Sequence[str]) -> ClassifierConfig:
    """``cfg`` with ``classifier.KEY=VALUE`` overrides applied, parsed by the run config's
    :func:`scoresde.config.apply_overrides` (values by the field's type: JSON, or text for strings; ``none``/``null``
    is ``None`` where the field allows it)."""
    values = apply_overrides({"classifier": cfg.to_dict()}, overrides, sections={"classifier": ClassifierConfig})
    return ClassifierConfig.from_dict(values["classifier"])
