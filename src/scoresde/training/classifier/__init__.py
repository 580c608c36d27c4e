"""Noise-conditional classifiers ``p_t(y | x_t)`` for classifier guidance (Song et al. 2021, §5 and App. I.4; Dhariwal
& Nichol 2021, §4), one concept per module:

* :mod:`.config`: :class:`ClassifierConfig`, the ``classifier.KEY`` options (typed and overridden by the run config's
  schema);
* :mod:`.build`: :func:`build_classifier`, the network for the data's shape and the SDE's state;
* :mod:`.objective`: :func:`noisy_state`, :func:`perturbation_draws`, :func:`classifier_loss` (cross-entropy at
  ``t ~ U(eps, T)``);
* :mod:`.accuracy`: :func:`accuracy_by_time`, held-out accuracy per bin of ``t``, and its table;
* :mod:`.io`: :func:`save_classifier` / :func:`load_classifier`, scoresde checkpoint directories;
* :mod:`.loop`: :class:`ClassifierTrainer` (Adam with warm-up and clipping, optional EMA, every draw of step ``s``
  seeded by ``(seed, s)`` so a resumed run continues exactly) and :func:`labelled_tensors`.

``scoresde train-classifier`` (:func:`scoresde.cli.classifier_commands.train_classifier`) runs them on a run config's
data and SDE.
"""

from .accuracy import accuracy_by_time, format_accuracy_table
from .build import build_classifier
from .config import EVAL_SPLITS, NETWORKS, ClassifierConfig, apply_classifier_overrides
from .io import CLASSIFIER_KIND, RUN_CHECKPOINT, RUN_SETTINGS, load_classifier, save_classifier, sde_config
from .loop import ClassifierTrainer, labelled_tensors
from .objective import classifier_loss, noisy_state, perturbation_draws

__all__ = ["CLASSIFIER_KIND", "EVAL_SPLITS", "NETWORKS", "RUN_CHECKPOINT", "RUN_SETTINGS", "ClassifierConfig",
           "ClassifierTrainer", "accuracy_by_time", "apply_classifier_overrides", "build_classifier", "classifier_loss",
           "format_accuracy_table", "labelled_tensors", "load_classifier", "noisy_state", "perturbation_draws",
           "save_classifier", "sde_config"]
