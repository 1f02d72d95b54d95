"""Intervals, verdicts and stable noise floors (issue 18): dmcmc_edu.evaluation.uncertainty and metrics.exact_floors."""

import math

import numpy as np
import pytest
import torch

from dmcmc_edu.evaluation import metrics
from dmcmc_edu.evaluation.uncertainty import (
    MIN_REACH_FRACTION,
    floor_interval,
    interval,
    ratio_interval,
    reach_summary,
    verdict,
)
from dmcmc_edu.targets import load_target


def test_interval_covers_the_true_median_about_95_percent_of_the_time():
    # 80 data sets of 40 normal draws: the 95% interval of the median should hold 0 about 76 times (binomial sd ~2)
    rng = np.random.default_rng(0)
    hits = sum(interval(rng.normal(size=40), seed=i).contains(0.0) for i in range(80))
    assert 68 <= hits <= 80


def test_interval_of_one_or_equal_values_is_a_point_and_non_finite_values_are_refused():
    iv = interval([3.0, 3.0, 3.0])
    assert (iv.estimate, iv.low, iv.high, iv.method) == (3.0, 3.0, 3.0, "degenerate")
    assert interval([5.0]).low == 5.0
    with pytest.raises(ValueError, match="non-finite"):
        interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="no measurements"):
        interval([])


def test_paired_ratio_finds_a_known_factor_and_its_interval_is_narrower_than_unpaired():
    rng = np.random.default_rng(1)
    b = rng.uniform(20, 80, size=8)  # seeds differ a lot ...
    a = 0.5 * b * np.exp(rng.normal(0, 0.02, size=8))  # ... but A is half of B at every seed
    paired = ratio_interval(a, b, paired=True)
    unpaired = ratio_interval(a, b, paired=False)
    assert paired.contains(0.5) and abs(paired.estimate - 0.5) < 0.02
    assert paired.high - paired.low < 0.5 * (unpaired.high - unpaired.low)
    with pytest.raises(ValueError, match="same seeds"):
        ratio_interval(a, b[:7], paired=True)
    with pytest.raises(ValueError, match="positive"):
        ratio_interval([0.0, 1.0], [1.0, 1.0])


def test_reach_counts_from_seven_of_eight_seeds():
    assert MIN_REACH_FRACTION == 7 / 8
    seven = reach_summary([10, 11, 12, 10, 11, 12, 10, None])
    six = reach_summary([10, 11, 12, 10, 11, float("inf"), 10, float("nan")])
    assert seven.counts and seven.n_reached == 7 and seven.cost.estimate == 11
    assert not six.counts and six.n_reached == 6 and "needs 7" in six.text()
    assert not reach_summary([None] * 8).counts
    with pytest.raises(ValueError, match="8 values but 3 seeds"):
        reach_summary([1] * 8, seeds=[0, 1, 2])


def test_verdict_says_who_is_cheaper_only_when_the_interval_excludes_one():
    rng = np.random.default_rng(2)
    b = rng.uniform(40, 60, size=8)
    cheaper = verdict(0.6 * b * np.exp(rng.normal(0, 0.05, 8)), b, "DLG", "KAR1")
    assert cheaper.outcome == "a_cheaper" and cheaper.ratio.high < 1
    assert cheaper.text.startswith("DLG needs 0.") and "of KAR1's NFE (8 seeds)" in cheaper.text
    dearer = verdict(1.7 * b, b, "DLG", "KAR1")
    assert dearer.outcome == "b_cheaper" and dearer.ratio.low > 1
    same = verdict(b * np.exp(rng.normal(0, 0.05, 8)), b, "DLG", "KAR1")
    assert same.outcome == "no_difference" and "includes 1" in same.text
    assert same.ratio.low <= 1 <= same.ratio.high


def test_verdict_compares_no_cost_when_an_arm_does_not_count():
    b = [10.0] * 8
    only_b = verdict([5, 5, 5, 5, 5, 5, None, None], b, "DLG", "KAR1")
    assert only_b.outcome == "only_b" and only_b.ratio is None
    assert "only KAR1 reaches" in only_b.text and "6/8" in only_b.text
    neither = verdict([None] * 8, [1.0] + [None] * 7, "DLG", "KAR1")
    assert neither.outcome == "neither" and "no comparison" in neither.text


def test_floor_interval_needs_twenty_sets_and_brackets_its_quantile():
    rng = np.random.default_rng(3)
    v = rng.exponential(size=200)
    iv = floor_interval(v, 0.99)
    assert iv.estimate == pytest.approx(np.quantile(v, 0.99))
    assert iv.low <= iv.estimate <= iv.high and iv.high > iv.low
    with pytest.raises(ValueError, match="at least 20"):
        floor_interval(v[:10])


@pytest.fixture(scope="module")
def ring():
    return load_target("ring")


@pytest.fixture(scope="module")
def floors_n200(ring):
    return metrics.exact_floors(ring, 200, repeats=200)


def test_exact_floors_depend_only_on_target_and_size(ring, floors_n200):
    again = metrics.exact_floors(ring, 200, repeats=200)
    for k in metrics.FLOOR_METRICS:
        assert again[k]["threshold"] == floors_n200[k]["threshold"]  # two notebooks asking get the same number
        lo, hi = floors_n200[k]["threshold_ci"]
        assert lo <= floors_n200[k]["threshold"] <= hi
    assert floors_n200["repeats"] == 200 and floors_n200["quantile"] == metrics.FLOOR_QUANTILE
    with pytest.raises(ValueError, match="at least 20"):
        metrics.exact_floors(ring, 200, repeats=10)


def test_fresh_exact_sets_pass_the_floors_at_about_their_quantile(ring, floors_n200):
    # 150 new pairs of exact sets, other seeds: each metric inside its 0.995-quantile threshold in >= 95% of them
    g = torch.Generator().manual_seed(4242)
    ref = metrics.reference_values(ring)
    inside = {k: 0 for k in metrics.FLOOR_METRICS}
    for _ in range(150):
        x, y = ring.sample(200, g), ring.sample(200, g)
        e = metrics.evaluate(ring, x, y, ref, mmd_bandwidth=floors_n200["mmd_bandwidth"])
        ok = metrics.within_floors(e, floors_n200)
        for k in inside:
            inside[k] += ok[k]
    assert min(inside.values()) >= 0.95 * 150, inside


def test_a_broken_sample_set_is_outside_the_floors(ring, floors_n200):
    g = torch.Generator().manual_seed(5)
    one_mode = ring.means[0].double() + 0.1 * torch.randn(200, 2, generator=g, dtype=torch.float64)
    e = metrics.evaluate(ring, one_mode, ring.sample(200, g), metrics.reference_values(ring),
                         mmd_bandwidth=floors_n200["mmd_bandwidth"])
    ok = metrics.within_floors(e, floors_n200)
    assert not ok["all"] and not ok["mode_tv"] and not ok["w2"]
    assert math.isfinite(e["w2"])


def test_verdict_words_a_quality_comparison():
    rng = np.random.default_rng(6)
    w2_b = rng.uniform(0.5, 0.7, size=8)
    v = verdict(1.5 * w2_b, w2_b, "DLG", "KAR1", what="W2", kind="value")
    assert v.outcome == "b_cheaper" and v.text.startswith("DLG's W2 is 1.50x KAR1's") and "KAR1 is better" in v.text
    with pytest.raises(ValueError, match="kind"):
        verdict(w2_b, w2_b, kind="quality")


def test_verdict_sentence_is_capitalised():
    v = verdict([1.0, 1.1, 0.9, 1.0], [1.0, 1.0, 1.0, 1.05], "a", "b")
    assert v.outcome == "no_difference" and v.sentence().startswith("No measurable") and v.sentence().endswith(").")


# ----------------------------------------------------------------------------- FID of a set with its interval


def _gauss(n, d, shift, seed):
    return np.random.default_rng(seed).normal(shift, 1.0, size=(n, d))


def test_fid_interval_holds_its_value_and_narrows_with_the_sample_size():
    from dmcmc_edu.evaluation.mnist_fid import fid_interval

    ref = {"mu": np.zeros(8), "sigma": np.eye(8)}
    small = fid_interval(_gauss(200, 8, 0.0, 1), ref, n_resamples=300, seed=0)
    large = fid_interval(_gauss(3200, 8, 0.0, 2), ref, n_resamples=300, seed=0)
    for r in (small, large):
        assert r["low"] <= r["fid"] <= r["high"] and len(r["replicates"]) == 300
        assert r["bootstrap_shift"] > 0  # repeated rows score worse: the raw replicates sit above the value
    # the spread of an estimate from n samples falls like 1/sqrt(n) or faster: 16x the samples, < 1/2 the width
    assert (large["high"] - large["low"]) < 0.5 * (small["high"] - small["low"])


def test_fid_interval_resamples_whole_groups_so_copies_widen_it():
    from dmcmc_edu.evaluation.mnist_fid import fid_interval

    ref = {"mu": np.zeros(8), "sigma": np.eye(8)}
    base = _gauss(100, 8, 0.0, 3)
    copies = np.repeat(base, 16, axis=0)  # 16 near copies per "chain", like outputs of one slow chain
    naive = fid_interval(copies, ref, n_resamples=300, seed=0)
    blocks = fid_interval(copies, ref, groups=np.repeat(np.arange(100), 16), n_resamples=300, seed=0)
    assert naive["fid"] == pytest.approx(blocks["fid"], rel=1e-12)
    assert (blocks["high"] - blocks["low"]) > 2.0 * (naive["high"] - naive["low"])
    with pytest.raises(ValueError, match="group ids"):
        fid_interval(copies, ref, groups=np.arange(5))
    with pytest.raises(ValueError, match="non-finite|NaN|finite"):
        fid_interval(np.full((10, 8), np.nan), ref)


def test_difference_verdict_finds_a_shift_and_not_a_non_shift():
    from dmcmc_edu.evaluation.mnist_fid import fid_interval
    from dmcmc_edu.evaluation.uncertainty import difference_verdict

    ref = {"mu": np.zeros(8), "sigma": np.eye(8)}
    same_a = [fid_interval(_gauss(1000, 8, 0.0, 10 + s), ref, n_resamples=300, seed=s) for s in range(3)]
    same_b = [fid_interval(_gauss(1000, 8, 0.0, 20 + s), ref, n_resamples=300, seed=s) for s in range(3)]
    worse = [fid_interval(_gauss(1000, 8, 0.3, 30 + s), ref, n_resamples=300, seed=s) for s in range(3)]

    def v(a, b, na="A", nb="B"):
        return difference_verdict([r["fid"] for r in a], [r["fid"] for r in b], [r["replicates"] for r in a],
                                  [r["replicates"] for r in b], na, nb, what="FID")

    assert v(same_a, same_b).outcome == "no_difference"
    shifted = v(same_a, worse)  # 8 * 0.3^2 = 0.72 of FID added by the mean shift
    assert shifted.outcome == "a_cheaper" and "A's FID is lower than B's" in shifted.text
    assert shifted.ratio.high < 0 and -1.1 < shifted.ratio.estimate < -0.4
    assert v(worse, same_a).outcome == "b_cheaper"
    with pytest.raises(ValueError, match="replicate rows"):
        difference_verdict([1.0, 2.0], [1.0], [[0.0] * 200], [[0.0] * 200])
