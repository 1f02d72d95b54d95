"""The checks of assignment A1 (dmcmc_edu.grading.a1_noise). Beyond what tests/test_grading_common.py checks for every
assignment: the model answers agree with the library."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from assignment_harness import define  # noqa: E402

from dmcmc_edu.core.schedules import geometric_sigmas, karras_sigmas  # noqa: E402
from dmcmc_edu.grading import a1_noise  # noqa: E402
from dmcmc_edu.grading.feedback import CheckFailed  # noqa: E402
from dmcmc_edu.targets import ring  # noqa: E402

NAME = "a1_noise_and_denoising"


def model_answer(fn: str):
    return define(NAME, fn)[fn]


def test_unknown_wrong_answer_gets_a_hint_and_numbers():
    """An error that is not a listed mistake: the message shows where, both values and the hint."""
    with pytest.raises(CheckFailed) as info:
        a1_noise.check_forward_noise(lambda x, sigma, eps: x + 0.5 * sigma[:, None] * eps)
    text = str(info.value)
    assert "sigma = [" in text and "expected" in text and "sigma reshaped to [B, 1]" in text


def test_wrong_shape_and_crash_are_reported_by_name():
    with pytest.raises(CheckFailed, match="has shape"):
        a1_noise.check_tweedie_denoiser(lambda m, x, s: (x + s[:, None] ** 2 * m.score(x, s))[:, :1])
    with pytest.raises(CheckFailed, match="score_from_denoiser raised RuntimeError"):
        a1_noise.check_score_from_denoiser(lambda d, x, s: (d(x, s) - x) / s**2)  # [B] against [B, 2]


def assert_close(got, want, rtol, atol):
    assert got.shape == want.shape and torch.allclose(got, want, rtol=rtol, atol=atol), (got, want)


def test_model_answers_agree_with_the_library():
    g = torch.Generator().manual_seed(0)
    s0 = torch.tensor([50.0, 3.0, 0.5], dtype=torch.float64)
    kar = model_answer("karras_schedule")(s0, 0.01, 8, 7.0)
    assert_close(kar, karras_sigmas(s0, 0.01, 8, 7.0, append_zero=False), rtol=1e-12, atol=0)
    geo = model_answer("geometric_schedule")(s0, 0.01, 8)
    assert_close(geo, geometric_sigmas(s0, 0.01, 8), rtol=1e-12, atol=1e-15)
    mix = ring()
    x = mix.sample(16, generator=g) + torch.randn(16, 2, generator=g, dtype=torch.float64)
    sigma = torch.linspace(0.1, 4.0, 16, dtype=torch.float64)
    d = model_answer("tweedie_denoiser")(mix, x, sigma)
    assert_close(d, mix.denoise(x, sigma), rtol=1e-9, atol=1e-10)
    score = model_answer("score_from_denoiser")(mix.denoise, x, sigma)
    assert_close(score, mix.score(x, sigma), rtol=1e-8, atol=1e-10)
    eps = torch.randn(16, 2, generator=g, dtype=torch.float64)
    noised = model_answer("forward_noise")(x, sigma, eps)
    assert_close((noised - x) / sigma[:, None], eps, rtol=1e-12, atol=1e-12)


def test_hidden_cases_differ_from_the_visible_ones():
    """A function that only remembers the visible answers fails the hidden check."""
    seen = {}

    def recorder(sigma_start, sigma_min, steps, rho=7.0):
        seen.setdefault("visible" if not seen.get("done") else "hidden", []).append((steps, float(sigma_min)))
        return model_answer("karras_schedule")(sigma_start, sigma_min, steps, rho)

    a1_noise.check_karras_schedule(recorder)
    seen["done"] = True
    a1_noise.check_karras_schedule(recorder, hidden=True)
    assert set(seen["visible"]).isdisjoint(seen["hidden"])


def test_plot_denoiser_field_draws_one_panel_per_sigma():
    fig = a1_noise.plot_denoiser_field(model_answer("tweedie_denoiser"), sigmas=(0.5, 2.0), n_grid=5)
    assert len(fig.axes) == 2
    matplotlib.pyplot.close(fig)
