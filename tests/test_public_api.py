"""The public calls that users and outside checks rely on keep existing and working (issue 12's list)."""

from __future__ import annotations

import subprocess
import sys

import torch

import scoresde


def test_subpackages_are_reachable_from_the_top_level_import() -> None:
    """``import scoresde; scoresde.losses`` (the README's usage) must not raise AttributeError: in a fresh interpreter,
    so that another test's imports cannot hide it."""
    code = ("import scoresde; scoresde.losses.sde_loss; scoresde.models.as_model; scoresde.sampling.SAMPLERS; "
            "scoresde.metrics.frechet_distance; scoresde.sdes.PSLD")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_listed_public_names_exist() -> None:
    """The calls that keep their names and signatures through the 0.2.0 redesign (issue 21's list)."""
    for name in ("sample", "log_likelihood", "bits_per_dim", "load_checkpoint", "load_score_sde_checkpoint",
                 "load_diffusers", "export_diffusers", "inpaint", "colorize", "encode", "interpolate", "as_model"):
        assert callable(getattr(scoresde, name)), name
    from scoresde.guidance import classifier, classifier_free
    from scoresde.models import ScoreModel
    from scoresde.numerics.grids import GRIDS
    from scoresde.numerics.odeint import FIXED_STEP_METHODS

    assert callable(classifier) and callable(classifier_free) and isinstance(ScoreModel, type)
    assert "logSNR" in GRIDS and "rk4" in FIXED_STEP_METHODS
    assert callable(scoresde.losses.fp_loss)
    for name in ("VESDE", "VPSDE", "SubVPSDE", "PSLD", "CLD"):
        assert callable(getattr(scoresde.sdes, name))
    for name in ("sde_loss", "smld_loss", "ddpm_loss", "fp_regularizer"):
        assert callable(getattr(scoresde.losses, name))
    for name in ("frechet_distance", "kernel_inception_distance", "inception_score"):
        assert callable(getattr(scoresde.metrics, name))
    from scoresde.checkpoint import load_psld_checkpoint

    assert callable(load_psld_checkpoint) and callable(scoresde.load_score_sde_checkpoint)
    assert callable(scoresde.load_checkpoint) and callable(scoresde.bits_per_dim)


def test_every_sampler_runs_through_the_old_call_form() -> None:
    f = lambda x, t: -x  # noqa: E731
    for sde, name, opts in ((scoresde.sdes.VPSDE(N=30), "pc", {}), (scoresde.sdes.VPSDE(N=30), "ode", {}),
                            (scoresde.sdes.PSLD(N=10), "sscs", {}), (scoresde.sdes.VESDE(N=10), "ddim", {"eta": 0.5})):
        shape = (3, 1) if name == "sscs" else (3, 2)
        x = scoresde.sample(sde, f, shape, sampler=name, generator=torch.Generator().manual_seed(0), **opts)
        assert x.shape == shape and torch.isfinite(x).all()
    logp, info = scoresde.log_likelihood(scoresde.sdes.VPSDE(), f, torch.zeros(2, 2), trace="exact", return_info=True)
    assert logp.shape == (2,) and info.nfe > 0


def test_solve_inverse_and_the_operators_are_public() -> None:
    """Issue 24: ``scoresde.solve_inverse`` and the operators of ``scoresde.inverse``."""
    from scoresde.inverse import INVERSE_METHODS, Blur, Dense, Downsample, Grey, LinearOperator, Mask

    assert callable(scoresde.solve_inverse) and "solve_inverse" in scoresde.__all__
    assert all(issubclass(c, LinearOperator) for c in (Blur, Dense, Downsample, Grey, Mask))
    assert {"replacement", "repaint", "smc", "projection"} <= set(INVERSE_METHODS)
