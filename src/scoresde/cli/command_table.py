"""The sub-commands of ``scoresde``: name, one-line summary and the module that registers it, in ``--help`` order.

This module imports nothing heavy: ``scoresde --help`` lists the commands from this table alone, and ``scoresde
COMMAND ...`` imports only the module of ``COMMAND`` (torch and the model code load there), so start-up stays fast
(``tests/cli/test_startup.py``). Each command module takes its summary from :data:`COMMAND_HELP`.
"""

from __future__ import annotations

#: ``(command, module of scoresde.cli, its register function, one-line summary)``; a register function that adds
#: several commands (``import``/``export``) names them on consecutive rows
COMMANDS: tuple[tuple[str, str, str, str], ...] = (
    ("train", "train_commands", "add_train_command", "train a model (resumes from the workdir's newest checkpoint)"),
    ("sample", "sample_commands", "add_sample_command", "draw samples from a checkpoint"),
    ("optimize-grid", "grid_commands", "add_grid_command",
     "fit a fixed-step sampler's time grid to a run's model (for sample --grid fitted)"),
    ("likelihood", "eval_commands", "add_likelihood_command",
     "bits/dim of a data split under a checkpoint (probability-flow ODE)"),
    ("configs", "train_commands", "add_configs_command", "list the presets (ours and every original Score SDE config)"),
    ("import", "interop_commands", "add_interop_commands", "turn a Score SDE or PSLD checkpoint into a run folder"),
    ("export", "interop_commands", "add_interop_commands",
     "write a run's model as a diffusers folder or an EDM network file"),
    ("demo", "demo_commands", "add_demo_command", "train on the built-in digits (or a 2-D toy), sample, and evaluate"),
    ("eval", "eval_commands", "add_eval_commands",
     "FID / IS / KID / bits-per-dim / FPE residual of a checkpoint, written to eval/metrics.json"),
    ("fid-stats", "eval_commands", "add_eval_commands",
     "reference Inception statistics (and features for KID) of a dataset split"),
    ("train-classifier", "classifier_commands", "add_classifier_commands",
     "train a noise-conditional classifier p_t(y | x_t) for classifier guidance"),
    ("inpaint", "inverse_commands", "add_inverse_commands", "fill in the masked pixels of images with a run's model"),
    ("colorize", "inverse_commands", "add_inverse_commands", "colour grey images with a run's model (colour runs)"),
    ("restore", "restore_commands", "add_restore_command",
     "restore images from a noisy linear measurement (super-resolution, deblurring, inpainting, colorization)"),
    ("encode", "latent_commands", "add_latent_commands", "latent codes of images (probability-flow ODE to time T)"),
    ("interpolate", "latent_commands", "add_latent_commands", "a strip between two images through their latent codes"),
)

#: command -> its one-line summary (the ``help=`` of its sub-parser)
COMMAND_HELP: dict[str, str] = {name: summary for name, _, _, summary in COMMANDS}
