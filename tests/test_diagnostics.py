"""Chain diagnostics against series with known correlation."""

import numpy as np
import pytest
import torch

from dmcmc_edu.core.sampler import DMCMCSampler
from dmcmc_edu.evaluation.diagnostics import autocorrelation, chain_report, effective_sample_size, mode_switch_rate
from dmcmc_edu.targets import dlg_config, ring


def ar1(phi, T, C, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((T, C))
    x[0] = rng.standard_normal(C) / np.sqrt(1 - phi**2)
    for t in range(1, T):
        x[t] = phi * x[t - 1] + rng.standard_normal(C)
    return x


def test_autocorrelation_of_ar1():
    """AR(1) with phi = 0.6: rho_k = 0.6^k (200 x 200 draws, tolerance 0.03)."""
    rho = autocorrelation(ar1(0.6, 200, 200), 3)
    np.testing.assert_allclose(rho, 0.6 ** np.arange(4), atol=0.03)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ess_of_ar1_matches_theory(phi):
    """ESS = n (1 - phi) / (1 + phi) for AR(1), within 15% (seed 1)."""
    x = ar1(phi, 400, 100, seed=1)
    expected = x.size * (1 - phi) / (1 + phi)
    assert effective_sample_size(x) == pytest.approx(expected, rel=0.15)


def test_copies_have_ess_of_the_number_of_chains_and_no_switches():
    rng = np.random.default_rng(2)
    x = np.repeat(rng.standard_normal((1, 50)), 10, axis=0)  # each chain repeats one value 10 times
    assert effective_sample_size(x) == pytest.approx(50, rel=0.2)
    assert mode_switch_rate(np.repeat(np.arange(50)[None], 10, axis=0)) == 0.0


def test_chain_report_on_a_dlg_run():
    mix = ring()
    cfg = dlg_config(mix, 400, outputs_per_chain=4, steps=3, init_steps=5)
    res = DMCMCSampler(mix, cfg, data_shape=(2,)).run()
    rep = chain_report(res, mix)
    assert rep["n_chains"] == 100 and rep["n_outputs"] == 400
    assert 0 < rep["ess_component"] <= 400 and 0 < rep["ess_sigma"] <= 400
    assert 0 <= rep["mode_switch_rate"] <= 1
    # outputs of one chain are correlated: fewer independent components than outputs
    assert rep["ess_component"] < 400
    assert torch.is_tensor(res.chosen_sigma)
