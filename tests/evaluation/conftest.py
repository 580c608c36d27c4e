"""Shared fixtures: the locally generated Inception weights file and one torch thread (see tests/metrics)."""

from tests.metrics.conftest import _one_thread, inception_weights  # noqa: F401
