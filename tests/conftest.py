"""Test-suite switches: ``slow`` tests run only with ``--run-slow``; ``gpu`` tests only where CUDA exists."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist every worker is one process: one intra-op thread each keeps 2 workers on 2 cores from
    # oversubscribing the CPU (small convolutions slow down many-fold when threads contend).
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (long accuracy checks; CI skips them)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow")
    has_cuda = torch.cuda.is_available()
    skip_slow = pytest.mark.skip(reason="slow test: run with --run-slow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
