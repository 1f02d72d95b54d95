"""Integrators outside the paper's six (dmcmc_edu.solvers): registered by name, checked against a transcription."""

import math

import torch

from dmcmc_edu.core.integrators import INTEGRATORS, PAPER_INTEGRATORS, sample_from_noise
from dmcmc_edu.registry import get_integrator, integrator_table
from dmcmc_edu.solvers import euler_maruyama_score_sde, predictor_corrector
from dmcmc_edu.targets import ring


def score_sde_em_transcribed(mix, x, sigma_max, sigma_min, n, g):
    """score_sde's EulerMaruyamaPredictor on the VE SDE, written from its equations (eps = 0, dt = 1/N)."""
    log_r = math.log(sigma_max / sigma_min)
    mean = x
    for t in torch.linspace(1.0, 0.0, n, dtype=torch.float64):
        sigma = sigma_min * (sigma_max / sigma_min) ** t
        s = torch.full((x.shape[0],), float(sigma), dtype=torch.float64)
        score = (mix(x, s) - x) / sigma**2
        g2 = 2 * sigma**2 * log_r  # g(t)^2 = d sigma^2 / dt
        mean = x + g2 * score / n
        x = mean + math.sqrt(g2 / n) * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return mean


def test_em_score_sde_matches_the_transcription():
    mix, n = ring(), 12
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
    ours, info = euler_maruyama_score_sde(mix, x0, 80.0, 0.01, n, generator=torch.Generator().manual_seed(1))
    ref = score_sde_em_transcribed(mix, x0, 80.0, 0.01, n, torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert info.nfe == n and info.sigma_end == 0.0


def test_em_score_sde_per_sample_start_equals_single_runs_and_no_tweedie():
    mix = ring()
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    starts = torch.tensor([0.5, 3.0, 40.0], dtype=torch.float64)
    gens = [torch.Generator().manual_seed(10 + b) for b in range(3)]
    batch, _ = euler_maruyama_score_sde(mix, x * starts[:, None], starts, 0.01, 7, generator=gens)
    for b in range(3):
        one, _ = euler_maruyama_score_sde(mix, x[b:b + 1] * starts[b], starts[b:b + 1], 0.01, 7,
                                          generator=[torch.Generator().manual_seed(10 + b)])
        torch.testing.assert_close(one[0], batch[b], rtol=1e-12, atol=1e-12)
    _, info = sample_from_noise(mix, (20, 2), integrator=euler_maruyama_score_sde, steps=9, sigma_max=80.0,
                                sigma_min=0.01,
                                generator=torch.Generator().manual_seed(3))
    assert info.nfe == 9 and info.extra["final_tweedie"] is False  # the last mean is the output: no +1


def test_registry_holds_the_paper_six_then_the_solvers():
    assert tuple(INTEGRATORS)[:6] == PAPER_INTEGRATORS and tuple(integrator_table())[:6] == PAPER_INTEGRATORS
    assert get_integrator("pc") is predictor_corrector and get_integrator("em_score_sde") is euler_maruyama_score_sde
