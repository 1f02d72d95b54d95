"""Metrics against closed forms and exact samples (fixed seeds, stated tolerances)."""

import math

import numpy as np
import pytest
import torch

from dmcmc_edu.evaluation import metrics
from dmcmc_edu.targets import GaussianMixture, lowrank, ring


def gaussian(mean, cov):
    return GaussianMixture([1.0], [mean], [cov])


def test_w2_pot_and_scipy_agree_and_match_the_gaussian_formula():
    """Two 2D Gaussians, 1500 samples each (seed 0): W2 by exact OT matches Bures within the noise floor.

    By the triangle inequality the empirical W2 differs from the population one by at most the distances of
    each empirical set to its law; the W2 between two exact sets of one law at the same size (the noise floor,
    about 0.15 here) bounds their sum in expectation.  Also checked against a fixed 0.1.
    """
    m1, c1 = [0.0, 0.0], [[1.0, 0.3], [0.3, 0.5]]
    m2, c2 = [2.0, -1.0], [[0.4, -0.1], [-0.1, 0.8]]
    g = torch.Generator().manual_seed(0)
    a, b = gaussian(m1, c1).sample(1500, g), gaussian(m2, c2).sample(1500, g)
    exact = metrics.gaussian_w2(torch.tensor(m1), torch.tensor(c1), torch.tensor(m2), torch.tensor(c2))
    pot, sp = metrics.w2(a, b, method="pot"), metrics.w2(a, b, method="scipy")
    assert pot == pytest.approx(sp, rel=1e-9)
    floor = metrics.w2(gaussian(m1, c1).sample(1500, g), gaussian(m1, c1).sample(1500, g))
    assert abs(pot - exact) < min(floor, 0.1)


def test_w2_of_unequal_sizes_and_identity():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, 3, generator=g, dtype=torch.float64)
    assert metrics.w2(a, a) == pytest.approx(0.0, abs=1e-9)
    assert metrics.w2(a, a + 1.0) == pytest.approx(math.sqrt(3.0), rel=1e-9)  # a shift moves every point
    assert metrics.w2(a[:200], a) > 0  # POT handles unequal sizes
    with pytest.raises(ValueError, match="same shape"):
        metrics.w2(a[:200], a, method="scipy")


def test_gaussian_w2_formula_special_cases():
    eye = torch.eye(2, dtype=torch.float64)
    # same covariance: only the means count; isotropic scales: |s1 - s2| sqrt(d)
    assert metrics.gaussian_w2(torch.zeros(2), eye, torch.tensor([3.0, 4.0]), eye) == pytest.approx(5.0)
    assert metrics.gaussian_w2(torch.zeros(2), eye, torch.zeros(2), 4 * eye) == pytest.approx(math.sqrt(2.0))


def test_tv_of_known_labels():
    mix = ring(n_modes=4, weights=[1.0, 1.0, 1.0, 1.0])
    # samples exactly at the means: 50 in mode 0, 30 in 1, 20 in 2, none in 3
    x = torch.cat([mix.means[0].expand(50, 2), mix.means[1].expand(30, 2), mix.means[2].expand(20, 2)])
    expected = 0.5 * (abs(0.5 - 0.25) + abs(0.3 - 0.25) + abs(0.2 - 0.25) + 0.25)
    assert metrics.mode_weight_tv(mix, x) == pytest.approx(expected)
    assert metrics.label_weight_tv([0] * 50 + [1] * 30 + [2] * 20, [1, 1, 1, 1]) == pytest.approx(expected)
    # and they collapse: spread 0, on the manifold
    assert metrics.spread(mix, x) == 0.0
    assert metrics.on_manifold_fraction(mix, x) == 1.0


def test_nll_of_exact_samples_matches_the_gaussian_entropy():
    """A 3D Gaussian: mean NLL of 4000 exact samples within 3 standard errors of the closed-form entropy."""
    cov = torch.tensor([[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, 2.0]], dtype=torch.float64)
    mix = gaussian([1.0, -1.0, 0.5], cov.tolist())
    x = mix.sample(4000, torch.Generator().manual_seed(3))
    st = metrics.nll_stats(mix, x)
    entropy = 0.5 * 3 * math.log(2 * math.pi * math.e) + 0.5 * float(torch.logdet(cov))
    assert abs(st["mean"] - entropy) < 3 * st["sem"]
    assert st["mean"] == pytest.approx(metrics.nll(mix, x))


def test_exact_samples_sit_inside_every_noise_floor_and_collapse_does_not():
    mix = ring()
    g = torch.Generator().manual_seed(4)
    n = 500
    ref = mix.sample(n, g)
    refv = metrics.reference_values(mix, n=50000, generator=g)
    assert refv["on_manifold"] == pytest.approx(0.99, abs=0.005)
    assert refv["spread"] == pytest.approx(1.0, abs=0.03)
    floors = metrics.noise_floors(mix, n, ref, refv, generator=g)
    # thresholds at mean + 3 sd over 40 exact sets (10 for W2): an exact set passes all seven ~95 % of the time
    passed = [metrics.within_floors(metrics.evaluate(mix, mix.sample(n, g), ref, refv), floors)["all"]
              for _ in range(10)]
    assert sum(passed) >= 8, passed
    # samples shrunk halfway toward their component means: inside the manifold, caught by spread and W2
    x = mix.sample(n, g)
    lab = mix.assign(x)
    shrunk = mix.means[lab] + 0.5 * (x - mix.means[lab])
    bad = metrics.within_floors(metrics.evaluate(mix, shrunk, ref, refv), floors)
    assert bad["on_manifold"] is True and bad["spread"] is False and bad["all"] is False


def test_mmd_of_identical_laws_is_about_zero_and_positive_for_different_ones():
    mix = ring()
    g = torch.Generator().manual_seed(5)
    a, b = mix.sample(800, g), mix.sample(800, g)
    assert metrics.mmd2(a, a) == pytest.approx(0.0, abs=2e-3)  # same set: only the diagonal is left out
    same = metrics.mmd2(a, b)
    assert abs(same) < 2e-3
    wrong = ring(weights=[1.0] * 8).sample(800, g)  # equal weights instead of 1..8
    assert metrics.mmd2(a, wrong) > 5 * abs(same)


def test_decorrelation_of_copies_and_of_independent_draws():
    mix = lowrank(d=16, n_components=3, rank=2)
    g = torch.Generator().manual_seed(6)
    x = mix.sample(400, g)
    copies = x[None].expand(3, 400, 16)
    assert metrics.decorrelation(mix, copies) == 0.0
    # independent draws of the same component for every chain: about 1 (400 chains x 2 pairs; tolerance 0.1)
    lab = mix.assign(x)
    fresh = []
    pool, pool_lab = mix.sample_with_labels(20000, g)
    for _ in range(2):
        rows = []
        for k in lab.tolist():
            idx = (pool_lab == k).nonzero().flatten()
            rows.append(pool[idx[torch.randint(len(idx), (1,), generator=g)]].squeeze(0))
        fresh.append(torch.stack(rows))
    indep = torch.stack([x, *fresh])
    assert metrics.decorrelation(mix, indep) == pytest.approx(1.0, abs=0.1)


def test_chain_metrics_of_stuck_and_independent_chains():
    mix = ring()
    g = torch.Generator().manual_seed(7)
    C, T = 300, 4
    x = mix.sample(C, g)
    stuck = x.repeat(T, 1)  # round-by-round order: output r*C + c is chain c's copy
    sig = torch.full((C * T,), 0.1, dtype=torch.float64)
    rep = metrics.chain_metrics(mix, stuck, sig, C)
    assert rep["mode_switch_rate"] == 0.0 and rep["decorrelation"] == 0.0
    assert rep["ess_component_ratio"] == pytest.approx(1 / T, rel=0.2)
    assert rep["acf1_component"] == pytest.approx((T - 1) / T)  # the biased estimator (sum / T) of copies
    indep = mix.sample(C * T, g)
    rep = metrics.chain_metrics(mix, indep, torch.rand(C * T, generator=g, dtype=torch.float64) + 0.1, C)
    assert rep["ess_component_ratio"] > 0.8 and abs(rep["acf1_component"]) < 0.05
    assert rep["decorrelation"] == pytest.approx(1.0, abs=0.15)
    one = metrics.chain_metrics(mix, x, sig[:C], C)
    assert one["ess_component_ratio"] == 1.0


def test_summary_keeps_its_keys():
    mix = ring()
    s = metrics.summary(mix, mix.sample(300, torch.Generator().manual_seed(8)))
    assert set(s) == {"n", "w2", "w2_floor", "mode_tv", "mode_tv_exact", "spread", "spread_exact", "nll",
                      "nll_exact"}
    assert np.isfinite(list(s.values())).all()
