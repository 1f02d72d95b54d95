"""The named pieces of the core: the Langevin x-updates, the randomness path, per-sample generators in DLG."""

import math

import pytest
import torch

from dmcmc_edu.core.dlg import dlg_init, dlg_step
from dmcmc_edu.core.langevin import X_UPDATES, get_x_update, langevin_stability_bound, mala_step, ula_step
from dmcmc_edu.core.random import categorical, normal, uniform
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import make_sigma_update
from dmcmc_edu.targets import GaussianMixture, ring

GAUSS = GaussianMixture(torch.tensor([1.0]), torch.tensor([[0.5, -1.0]]), torch.tensor([[[0.3, 0.1], [0.1, 0.2]]]))


def test_ula_step_has_drift_half_eta_score_and_variance_eta():
    """From one x, x' = x + (eta/2) score + sqrt(eta) z: mean and variance over 200,000 draws (seed 0, 5 s.e.)."""
    n, eta, sigma = 200_000, 0.3, 0.7
    x = torch.tensor([[2.0, 1.0]], dtype=torch.float64).expand(n, 2).clone()
    s = torch.full((n,), sigma, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x_new, accepted = ula_step(GAUSS, x, s, torch.full((n,), eta, dtype=torch.float64), g)
    assert accepted is None
    drift = 0.5 * eta * GAUSS.score(x[:1], s[:1])[0]
    se = math.sqrt(eta / n)
    torch.testing.assert_close(x_new.mean(0), x[0] + drift, rtol=0, atol=5 * se)
    torch.testing.assert_close(x_new.var(0), torch.full((2,), eta, dtype=torch.float64), rtol=0.02, atol=0)


def test_mala_step_leaves_p_sigma_invariant_even_with_a_large_step():
    """Exact samples of p_sigma stay exact after 5 MALA steps at eta = 2 (ULA at that step is far off)."""
    n, sigma, eta = 40_000, 0.5, 2.0
    g = torch.Generator().manual_seed(1)
    x = GAUSS.sample(n, g) + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)
    s = torch.full((n,), sigma, dtype=torch.float64)
    e = torch.full((n,), eta, dtype=torch.float64)
    x_mala, x_ula = x, x
    for _ in range(5):
        x_mala, acc = mala_step(GAUSS, x_mala, s, e, g)
        x_ula, _ = ula_step(GAUSS, x_ula, s, e, g)
    cov = GAUSS.covariances[0] + sigma**2 * torch.eye(2, dtype=torch.float64)
    assert acc.dtype == torch.bool and 0.05 < acc.double().mean() < 0.95
    torch.testing.assert_close(torch.cov(x_mala.T), cov, rtol=0, atol=0.03)  # ~4 s.e. of a covariance at n = 40,000
    assert (torch.cov(x_ula.T) - cov).abs().max() > 0.2


def test_x_updates_by_name_and_errors():
    assert X_UPDATES == {"ula": ula_step, "mala": mala_step} and get_x_update("mala") is mala_step
    with pytest.raises(ValueError, match="unknown x-update 'mlaa'; choose one of ula, mala"):
        get_x_update("mlaa")
    with pytest.raises(TypeError, match="log_prob"):
        mala_step(lambda x, s: x, torch.zeros(2, 2), torch.ones(2), torch.ones(2))
    assert langevin_stability_bound(0.25, 0.5) == pytest.approx(2.0)


def test_random_draws_per_sample_generators_reproduce_alone():
    """With one generator per row, each row of normal / uniform / categorical equals a batch of one."""
    log_p = torch.log_softmax(torch.randn(4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64), 1)
    gens = lambda: [torch.Generator().manual_seed(10 + b) for b in range(4)]  # noqa: E731
    batch = (normal((4, 3), gens(), torch.float64, "cpu"), uniform(4, gens(), "cpu"), categorical(log_p, gens()))
    for b in range(4):
        g = [torch.Generator().manual_seed(10 + b)]
        assert torch.equal(batch[0][b], normal((1, 3), g, torch.float64, "cpu")[0])
        g = [torch.Generator().manual_seed(10 + b)]
        assert torch.equal(batch[1][b], uniform(1, g, "cpu")[0])
        g = [torch.Generator().manual_seed(10 + b)]
        assert torch.equal(batch[2][b], categorical(log_p[b:b + 1], g)[0])
    with pytest.raises(ValueError, match="got 3 per-sample generators for a batch of 4"):
        normal((4, 3), gens()[:3], torch.float64, "cpu")


def test_categorical_frequencies_match_the_probabilities():
    """200,000 draws from p = (0.5, 0.3, 0.15, 0.05): each frequency within 5 s.e. (seed 4)."""
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    n = 200_000
    idx = categorical(torch.log(p).expand(n, 4) + 7.0, torch.Generator().manual_seed(4))  # unnormalised is fine
    freq = torch.bincount(idx, minlength=4).double() / n
    assert (freq - p).abs().max() < 5 * math.sqrt(0.25 / n)


@pytest.mark.parametrize("x_update", ["ula", "mala"])
def test_dlg_step_with_per_sample_generators(x_update):
    """A DLG step accepts one generator per chain, and each chain then does not depend on the batch."""
    mix = ring()
    grid = noise_level_grid(0.01, 80.0, 50)
    upd = make_sigma_update("exact", model=mix)
    g = torch.Generator().manual_seed(5)
    x = mix.sample(3, g)
    state = dlg_init(x, torch.tensor([10, 30, 45]), grid)
    new, _ = dlg_step(mix, state, upd, eta=0.05, generator=[torch.Generator().manual_seed(b) for b in range(3)],
                      x_update=x_update)
    for b in range(3):
        one = dlg_init(x[b:b + 1], state.index[b:b + 1], grid)
        alone, _ = dlg_step(mix, one, upd, eta=0.05, generator=[torch.Generator().manual_seed(b)], x_update=x_update)
        torch.testing.assert_close(alone.x[0], new.x[b], rtol=1e-12, atol=1e-12)
        assert alone.index[0] == new.index[b]
