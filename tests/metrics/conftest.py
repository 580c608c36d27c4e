"""A random-valued Inception-v3 weights file in torch-fidelity's format, generated locally (no download); tests
run torch on one thread (on shared cores OpenMP's spinning threads slow them down many times)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """Path of a random-valued weights file with the keys and shapes of torch-fidelity's Inception-v3, loaded by
    the tests through the real path."""
    pytest.importorskip("torch_fidelity")
    from scoresde.metrics.inception import write_random_inception_weights

    return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "weights-inception-random.pth")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
