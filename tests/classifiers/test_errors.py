"""Bad input to the classifiers, their trainer and their config: one clear ValueError each."""

from __future__ import annotations

import pytest
import torch

from scoresde.data import TensorImageDataset
from scoresde.guidance import classifier as classifier_guidance
from scoresde.models import ClassifierModel, ScoreModel
from scoresde.nets import NCSNpp
from scoresde.nets.classifier import MLPClassifier, NCSNppClassifier
from scoresde.sdes import PSLD, VESDE, VPSDE
from scoresde.training.classifier import (
    ClassifierConfig,
    ClassifierTrainer,
    apply_classifier_overrides,
    build_classifier,
    classifier_loss,
    labelled_tensors,
)
from scoresde.training.data import PointDataset

CFG = ClassifierConfig(hidden=8, depth=1)


def test_bad_labels():
    clf = build_classifier(VPSDE(N=10), (2,), 3, CFG)
    x = torch.randn(4, 2)
    for bad, match in ((torch.tensor([0, 1, 2, 3]), "got label 3"), (torch.tensor([0, -1, 2, 1]), "got label -1"),
                       (torch.tensor([0.0, 1.0, 2.0, 1.0]), "torch.float32"), (torch.tensor([0, 1]), r"shape \(2,\)"),
                       ([0, 1, 2, 1], "list")):
        with pytest.raises(ValueError, match=match):
            classifier_loss(clf, x, bad)
        with pytest.raises(ValueError, match=r"entries in \[0, 3\)"):
            clf(x, torch.rand(4), class_labels=bad)
    with pytest.raises(ValueError, match="besides class_labels"):
        clf(x, torch.rand(4), mask=torch.ones(4))
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(4,\)"):
        clf(x, torch.rand(3))
    with pytest.raises(ValueError, match="got label 5"):
        ClassifierTrainer(clf, CFG, x, torch.tensor([0, 1, 5, 1]))


def test_unlabelled_data():
    with pytest.raises(ValueError, match="unlabelled"):
        labelled_tensors(PointDataset(torch.randn(10, 2)), "the toy data")
    with pytest.raises(ValueError, match="unlabelled"):
        labelled_tensors(TensorImageDataset(torch.zeros(3, 1, 4, 4, dtype=torch.uint8)))
    images, labels = labelled_tensors(TensorImageDataset(torch.zeros(3, 1, 4, 4, dtype=torch.uint8),
                                                         torch.tensor([2, 0, 1])))
    assert images.shape == (3, 1, 4, 4) and labels.tolist() == [2, 0, 1]


def test_wrong_sde_is_refused_by_guidance():
    """A classifier trained under VE guiding a VP score model: refused by scoresde.guidance (it reads .sde)."""
    score = ScoreModel(NCSNpp(image_size=8, in_channels=1, nf=8, ch_mult=(1,), num_res_blocks=1,
                              attn_resolutions=()), VPSDE(N=10))
    clf = build_classifier(VESDE(N=10), (1, 8, 8), 3, ClassifierConfig(nf=8, ch_mult=(1,)))
    with pytest.raises(ValueError, match="another SDE"):
        classifier_guidance(score, clf)
    classifier_guidance(score, build_classifier(VPSDE(N=10), (1, 8, 8), 3, ClassifierConfig(nf=8, ch_mult=(1,))))


def test_bad_constructions():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        MLPClassifier(2, 1)
    with pytest.raises(ValueError, match="not divisible"):
        NCSNppClassifier(12, 1, 10, ch_mult=(1, 2, 2, 2))
    with pytest.raises(ValueError, match="unknown embedding_type"):
        NCSNppClassifier(8, 1, 10, embedding_type="learned")
    with pytest.raises(ValueError, match="needs a scalar SDE"):
        ClassifierModel(MLPClassifier(4, 3), PSLD(N=10), label_type="time")
    with pytest.raises(ValueError, match="unknown label_type"):
        ClassifierModel(MLPClassifier(2, 3), VPSDE(N=10), label_type="log_sigma")
    with pytest.raises(ValueError, match="no num_classes"):
        ClassifierModel(torch.nn.Linear(2, 3), VPSDE(N=10))
    with pytest.raises(ValueError, match="'ncsnpp' needs square images"):
        build_classifier(VPSDE(N=10), (2,), 3, ClassifierConfig(network="ncsnpp"))
    with pytest.raises(ValueError, match="'mlp' needs points"):
        build_classifier(VPSDE(N=10), (1, 8, 8), 3, ClassifierConfig(network="mlp"))
    with pytest.raises(ValueError, match=r"NCSNppClassifier expects inputs of shape \(B, 2, H, W\)"):
        build_classifier(PSLD(N=10), (1, 8, 8), 3, ClassifierConfig(nf=8, ch_mult=(1,)))(
            torch.zeros(2, 1, 8, 8), torch.rand(2))


def test_config_overrides():
    cfg = apply_classifier_overrides(ClassifierConfig(), ["classifier.steps=7", "classifier.ch_mult=[1,2]",
                                                          "classifier.network=mlp", "classifier.num_classes=null"])
    assert (cfg.steps, cfg.ch_mult, cfg.network, cfg.num_classes) == (7, (1, 2), "mlp", None)
    for bad, match in (("classifier.stepz=3", "unknown config key classifier.stepz; did you mean steps"),
                       ("classifier.steps=1.5", "must be of type int"),
                       ("classifier.network=unet", "unknown classifier.network 'unet'; valid values are: ncsnpp, mlp"),
                       ("classifier.lr=0", "lr"), ("steps=3", "classifier.KEY=VALUE"),
                       ("classifier.ch_mult=[1,2.5]", "must be of type tuple")):
        with pytest.raises(ValueError, match=match):
            apply_classifier_overrides(ClassifierConfig(), [bad])
