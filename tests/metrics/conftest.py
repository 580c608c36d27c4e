"""A random-valued Inception-v3 weights file in torch-fidelity's format, generated locally (no download); tests
run torch on one thread (on shared cores OpenMP's spinning threads slow them down many times)."""

from __future__ import annotations

from unittest import mock

import pytest
import torch


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """Path of a ``torch.save``'d state dict with the keys and shapes of torch-fidelity's Inception-v3 and seeded
    random values. The module's layers are built with loading switched off only to learn those keys; the file is
    then loaded by the real path under test."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    cls = fidelity.FeatureExtractorInceptionV3
    torch.manual_seed(0)
    with mock.patch.object(fidelity, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(cls, "load_state_dict", lambda self, sd: None):
        net = cls("inception-v3-compat", ["2048"])
    state = {}
    for key, value in net.state_dict().items():
        if value.dim() >= 2:  # conv / fc weights: variance-preserving (He) scale so the input still matters
            value = torch.randn_like(value) * (2.0 / value[0].numel()) ** 0.5
        elif key.endswith("running_var"):
            value = torch.rand_like(value) + 0.5
        elif key.endswith("running_mean") or key.endswith(".bias"):
            value = torch.randn_like(value) * 0.1
        state[key] = value.clone()
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(state, path)
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
