"""scoresde.sample's core contract: steps/times/x_T/cond/callback on every fixed-step sampler, the model-first form,
the registry (options, coupling) and the time grids."""

from __future__ import annotations

import pytest
import torch

from scoresde import sample
from scoresde.models import ScoreModel
from scoresde.numerics.grids import GRIDS, time_steps
from scoresde.sampling import SAMPLERS
from scoresde.sdes import PSLD, VESDE, VPSDE, SubVPSDE
from scoresde.toy import GaussianMixture

F64 = torch.float64
FIXED = [("pc", VPSDE(N=30), {"predictor": "euler_maruyama", "corrector": "none"}), ("ddim", VPSDE(N=30), {}),
         ("sscs", PSLD(N=30), {})]


def _score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -x


def _data_shape(sde) -> tuple[int, ...]:
    return (4, 1) if isinstance(sde, PSLD) else (4, 2)


def test_pc_steps_equal_an_sde_with_that_many_scales() -> None:
    """steps=n runs the reference rules of an N=n SDE (what `--set model.num_scales=n` did by rebuilding the SDE)."""
    for sde_cls in (VESDE, VPSDE):
        g = torch.Generator().manual_seed(0)
        a = sample(sde_cls(N=1000), _score, (3, 2), "pc", steps=50, dtype=F64, generator=g)
        b = sample(sde_cls(N=50), _score, (3, 2), "pc", dtype=F64, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_discrete_model_keeps_its_own_labels_when_sampled_with_fewer_steps() -> None:
    seen = []

    class Net(torch.nn.Module):
        def forward(self, x, noise_labels, class_labels=None):
            seen.append(noise_labels.clone())
            return torch.zeros_like(x)

    model = ScoreModel(Net(), VPSDE(N=1000), continuous=False)
    sample(model, (2, 2), "pc", steps=10, predictor="euler_maruyama", corrector="none",
           generator=torch.Generator().manual_seed(0))
    assert len(seen) == 10 and float(seen[0][0]) == pytest.approx(999.0)  # t=1 -> label t (N - 1) of the N=1000 chain


@pytest.mark.parametrize(("name", "sde", "options"), FIXED)
def test_fixed_step_samplers_take_steps_times_x_T_cond_and_callback(name: str, sde, options: dict) -> None:
    shape = _data_shape(sde)
    labels = torch.arange(4)
    calls, seen_labels = [], []

    def score(x, t, class_labels=None):
        seen_labels.append(class_labels)
        return -x

    x_T = sde.prior_sampling(sde.state_shape(shape), torch.Generator().manual_seed(1), dtype=F64)
    times = torch.tensor([1.0, 0.5, 0.2, 0.05], dtype=F64)
    out, info = sample(sde, score, shape, name, x_T=x_T, times=times, dtype=F64, cond={"class_labels": labels},
                       callback=lambda i, t, x, x0: calls.append((i, float(t), x.shape, x0 is not None)),
                       generator=torch.Generator().manual_seed(2), return_info=True, **options)
    assert out.shape == shape
    assert all(s is labels for s in seen_labels) and len(seen_labels) == info.nfe
    n = len(times) if name == "pc" else len(times) - 1  # PC evaluates at each time and steps to 0 after the last
    assert [c[0] for c in calls] == list(range(n)) and all(c[3] for c in calls)
    ends = [*times[1:].tolist(), 0.0] if name == "pc" else times[1:].tolist()
    assert [c[1] for c in calls] == pytest.approx(ends[:n])
    again = sample(sde, score, shape, name, x_T=x_T, times=times, dtype=F64, cond={"class_labels": labels},
                   generator=torch.Generator().manual_seed(2), **options)
    torch.testing.assert_close(out, again, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "sde", "options"), FIXED)
def test_steps_default_to_sde_N_and_set_the_nfe(name: str, sde, options: dict) -> None:
    shape = _data_shape(sde)
    _, info = sample(sde, _score, shape, name, return_info=True, denoise=False, **options)
    assert info.nfe == sde.N
    _, info = sample(sde, _score, shape, name, steps=7, return_info=True, denoise=False, **options)
    assert info.nfe == 7


class _HalfNet(torch.nn.Module):
    def forward(self, x, noise_labels, class_labels=None):
        return 0.5 * x


def test_model_first_form_and_plain_score_form_agree() -> None:
    model = ScoreModel(_HalfNet(), VPSDE(N=20), output_type="eps", label_type="time")
    a = sample(model, (3, 2), "ddim", generator=torch.Generator().manual_seed(0))
    b = sample(model.sde, model.score, (3, 2), "ddim", generator=torch.Generator().manual_seed(0))
    c = sample(model, (3, 2), sampler="ddim", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_a_model_with_another_sde_is_refused() -> None:
    model = ScoreModel(_HalfNet(), VPSDE(), output_type="eps", label_type="time")
    with pytest.raises(ValueError, match=r"the model's SDE \(VPSDE.*differs from the SDE passed \(SubVPSDE"):
        sample(SubVPSDE(), model, (2, 2))
    sample(VPSDE(), model, (2, 2), "ddim", steps=2)  # an equal SDE object is fine


@pytest.mark.parametrize("shape", [4, "4x2", (4, 0), ()])
def test_a_bad_shape_is_one_clear_error(shape) -> None:
    with pytest.raises(ValueError, match="shape must be"):
        sample(VPSDE(N=5), _score, shape)


def test_x_T_of_the_wrong_shape_and_cond_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match=r"x_T has shape \(3, 2\), but the state of data shape \(4, 2\)"):
        sample(VPSDE(N=5), _score, (4, 2), x_T=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"cond\['class_labels'\] has 3 rows but the batch has 4"):
        sample(VPSDE(N=5), _score, (4, 2), cond={"class_labels": torch.arange(3)})
    with pytest.raises(ValueError, match="sampler 'ode' takes no callback"):
        sample(VPSDE(N=5), _score, (4, 2), "ode", callback=print)


def test_mixture_oracle_refuses_a_phase_space_sde() -> None:
    with pytest.raises(ValueError, match=r"GaussianMixture needs a scalar SDE.*PhaseSpaceMixture"):
        GaussianMixture.example_2d().score_fn(PSLD())


def test_registry_derives_options_and_coupling() -> None:
    assert list(SAMPLERS)[:4] == ["pc", "ode", "sscs", "ddim"]
    assert SAMPLERS["pc"].is_coupled({}) and not SAMPLERS["pc"].is_coupled({"corrector": "ald"})
    assert SAMPLERS["ode"].is_coupled({}) and not SAMPLERS["sscs"].is_coupled({})
    assert not SAMPLERS["ddim"].is_coupled({"eta": 1.0})
    assert SAMPLERS["ddim"].options()["eta"] == 0.0 and SAMPLERS["ddim"].fixed_steps
    assert not SAMPLERS["ode"].fixed_steps
    with pytest.raises(ValueError, match="unknown sampler 'nope'; valid samplers are: pc, ode, sscs, ddim"):
        SAMPLERS["nope"]
    assert "ddim" in SAMPLERS and "nope" not in SAMPLERS


@pytest.mark.parametrize("sde", [VESDE(), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
def test_grids(sde) -> None:
    n, eps = 8, 1e-3
    for name in GRIDS:
        t = time_steps(sde, n, grid=name, eps=eps)
        assert t.shape == (n + 1,) and float(t[0]) == sde.T and float(t[-1]) == pytest.approx(eps, rel=1e-12)
        assert bool((t[1:] < t[:-1]).all()), name
    lam = sde.lambda_t(time_steps(sde, n, grid="logSNR", eps=eps))
    torch.testing.assert_close(lam[1:] - lam[:-1], (lam[-1] - lam[0]).expand(n) / n, rtol=1e-9, atol=1e-9)
    # karras: k-diffusion's get_sigmas_karras levels in sigma/alpha = exp(-lambda), written out independently
    rho = 7.0
    smax, smin = float(torch.exp(-sde.lambda_t(torch.tensor(sde.T, dtype=F64)))), float(
        torch.exp(-sde.lambda_t(torch.tensor(eps, dtype=F64))))
    ramp = torch.linspace(0, 1, n + 1, dtype=F64)
    expected = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    got = torch.exp(-sde.lambda_t(time_steps(sde, n, grid="karras", eps=eps)))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=0)
    tq = time_steps(sde, n, grid="time_quadratic", eps=eps)
    torch.testing.assert_close(tq.sqrt(), torch.linspace(sde.T**0.5, eps**0.5, n + 1, dtype=F64), rtol=1e-12, atol=0)


def test_lambda_grids_need_a_noise_schedule() -> None:
    """PSLD/CLD have one (their matrix half log-SNR); an SDE without ``lambda_t`` is refused by name."""
    assert time_steps(PSLD(), 4, grid="logSNR").shape == (5,)

    class NoSchedule:
        T, N = 1.0, 10

    with pytest.raises(ValueError, match=r"grid 'logSNR' needs a noise schedule .*NoSchedule has none"):
        time_steps(NoSchedule(), 4, grid="logSNR")


def test_a_removed_option_name_is_an_unknown_option() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['n_steps'\] for sampler 'sscs'"):
        sample(PSLD(), _score, (2, 1), "sscs", n_steps=4)


def test_an_sde_with_another_N_still_sets_the_step_count_of_a_model() -> None:
    """The old way to sample a model with 50 steps, sample(VPSDE(N=50), model.score, ...), keeps working: the
    model keeps its SDE (and labels), the passed N becomes steps."""
    model = ScoreModel(_HalfNet(), VPSDE(N=1000), output_type="eps", label_type="time")
    _, info = sample(VPSDE(N=50), model.score, (2, 2), "pc", corrector="none", return_info=True,
                     generator=torch.Generator().manual_seed(0))
    assert info.nfe == 50
    with pytest.raises(ValueError, match="differs from the SDE passed"):
        sample(VPSDE(N=50, beta_max=10.0), model.score, (2, 2))


def test_the_docstring_of_sample_names_every_registered_sampler() -> None:
    doc = sample.__doc__ or ""
    assert all(f'``"{name}"``' in doc for name in SAMPLERS), [n for n in SAMPLERS if f'``"{n}"``' not in doc]
