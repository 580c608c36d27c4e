"""Bad sampler names and options raise errors that list what is allowed."""

from __future__ import annotations

import pytest
import torch

from scoresde import sample
from scoresde.sampling import sampler_options
from scoresde.sdes import VPSDE


def _score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -x


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampler": "nope"}, r"unknown sampler 'nope'; valid samplers are: pc, ode, sscs, ddim"),
        ({"predictor": "heun"}, r"unknown predictor 'heun'; valid predictors are: ancestral_sampling, "
                                r"euler_maruyama, none, reverse_diffusion"),
        ({"corrector": "hmc"}, r"unknown corrector 'hmc'; valid correctors are: ald, langevin, none"),
        ({"snr_value": 0.1}, r"unknown option\(s\) \['snr_value'\] for sampler 'pc'"),
        ({"predictor": "none", "corrector": "none"}, "prior draw unchanged"),
        ({"predictor": "ancestral_sampling", "probability_flow": True}, "no probability-flow form"),
        ({"eps": 0.0}, r"eps must lie in \(0, T=1.0\)"),
        ({"n_steps_each": 0}, "n_steps_each must be a positive integer"),
        ({"sampler": "ode", "method": "rk4"}, "unknown ODE method 'rk4'; valid methods are: dopri5"),
        ({"sampler": "ode", "snr": 0.1}, r"valid options are: atol, denoise, eps, method, progress, rtol"),
    ],
)
def test_errors_name_the_bad_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample(VPSDE(N=40), _score, (2, 3), **kwargs)


def test_options_listing_and_info() -> None:
    opts = sampler_options("pc")
    assert opts["snr"] == 0.16 and opts["predictor"] == "reverse_diffusion" and opts["denoise"] is True
    x, info = sample(VPSDE(N=40), _score, (3, 2, 4, 4), "pc", generator=torch.Generator().manual_seed(0),
                     return_info=True, corrector="none")
    assert x.shape == (3, 2, 4, 4) and info.nfe == 40 and info.options["corrector"] == "none"
    assert torch.isfinite(x).all()


def test_custom_predictor_callable_is_used() -> None:
    calls = []

    def my_predictor(rsde, x, t, t_next, generator=None):
        calls.append(float(t[0]))
        return x * 0.5, x * 0.5

    sample(VPSDE(N=5), _score, (2, 2), predictor=my_predictor, corrector="none")
    assert len(calls) == 5 and calls[0] == 1.0 and calls[-1] == pytest.approx(1e-3)


def test_too_few_steps_for_the_ddpm_chain_is_an_error_not_nan() -> None:
    """VPSDE(N=10) has beta_max / N = 2 > 1: the discrete rules must refuse, continuous ones still work."""
    with pytest.raises(ValueError, match=r"beta_max / N < 1 \(got 20 / 10 = 2\)"):
        sample(VPSDE(N=10), _score, (2, 3), corrector="none")
    x = sample(VPSDE(N=10), _score, (2, 3), predictor="euler_maruyama", corrector="none")
    assert torch.isfinite(x).all()
