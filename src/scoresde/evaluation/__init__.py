"""Evaluation protocol: per-sample seeds, resumable rank-sharded rounds, and ``metrics.json`` (see :mod:`.run`)."""

from .rounds import check_protocol, gather_rounds, round_ranges, run_rounds
from .run import METRICS, SAMPLE_METRICS, EvalSettings, evaluate, generate_images, to_uint8, used_settings
from .seeding import batch_coupled, per_sample_generators

__all__ = ["METRICS", "SAMPLE_METRICS", "EvalSettings", "batch_coupled", "check_protocol", "evaluate", "gather_rounds",
           "generate_images", "per_sample_generators", "round_ranges", "run_rounds", "to_uint8", "used_settings"]
