"""One torch thread per test (the autouse fixture of tests/metrics: OpenMP's spinning threads slow tiny batches down
many times on shared cores)."""

from tests.metrics.conftest import _one_thread  # noqa: F401 (autouse)
