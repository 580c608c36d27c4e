"""The NCSN++-encoder classifier on 16x16 digits under VE, VP and PSLD: shapes, label conventions, and gradients (for
the parameters, and in x for guidance)."""

from __future__ import annotations

import pytest
import torch

from scoresde.data import load_digits16, preprocess
from scoresde.models import ClassifierModel
from scoresde.nets.classifier import NCSNppClassifier
from scoresde.sdes import PSLD, VESDE, VPSDE
from scoresde.training.classifier import ClassifierConfig, build_classifier, classifier_loss

SDES = {"ve": lambda: VESDE(sigma_min=0.01, sigma_max=50.0, N=100), "vp": lambda: VPSDE(N=100),
        "psld": lambda: PSLD(N=100)}
SMALL = ClassifierConfig(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,))


@pytest.fixture(scope="module")
def digits():
    ds = load_digits16("train")
    return preprocess(ds.images[:16], centered=True), ds.labels[:16]


@pytest.mark.parametrize("name", sorted(SDES))
def test_shapes_labels_and_gradients(name, digits):
    x, y = digits
    sde = SDES[name]()
    torch.manual_seed(0)
    clf = build_classifier(sde, (1, 16, 16), 10, SMALL)
    channels = 2 if name == "psld" else 1
    assert isinstance(clf.net, NCSNppClassifier) and clf.net.in_channels == channels
    # the score networks' conventions: sigma(t) for VE (Fourier features), 999 t for VP, the raw t for PSLD
    t = torch.full((16,), 0.5)
    expected = {"ve": sde.sigma(t) if name == "ve" else None, "vp": 999 * t, "psld": t}[name]
    torch.testing.assert_close(clf.labels(t), expected)
    assert clf.net.embedding_type == ("positional" if name == "vp" else "fourier")
    z = sde.initial_state(x)  # the state: [x, 0] on phase space
    assert z.shape == (16, channels, 16, 16)
    logits = clf(z, t)
    assert logits.shape == (16, 10) and torch.isfinite(logits).all()
    loss = classifier_loss(clf, x, y, generator=torch.Generator().manual_seed(0))
    loss.backward()
    params = [p for p in clf.net.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    # every trainable tensor gets a non-zero gradient except the Fourier W (frozen, as NCSN++'s)
    assert sum(bool(p.grad.abs().sum() > 0) for p in params) == len(params)
    # guidance differentiates log p_t(y | x) in x: a finite, non-zero gradient of the state's shape
    zg = z.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(clf.class_log_prob(zg, t, y).sum(), zg)
    assert grad.shape == z.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_float64_states_get_float64_logits(digits):
    """The network runs in its own dtype; the logits come back in the state's (guidance with float64 oracles)."""
    x, _ = digits
    clf = build_classifier(VPSDE(N=100), (1, 16, 16), 10, SMALL)
    out = clf(x.double(), torch.full((16,), 0.3, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert isinstance(clf, ClassifierModel) and clf.num_classes == 10
