"""Checks of assignment A6, a small research question: the full NFE ledger per output, the effective sample size,
NFE per independent sample, and the cheapest NFE that reaches a quality target (the ladder's equal-quality rule).

References: :meth:`dmcmc_edu.core.ledger.NFELedger.per_output` (``"full"``), the Geyer estimate of
:func:`dmcmc_edu.evaluation.diagnostics.effective_sample_size`, the ladder's ``nfe_per_independent = full / ess_ratio``
and its "first point that reaches the targets" (:mod:`dmcmc_edu.experiments.ladder.report`).  Student signatures
(notebook ``a6_research_question``):

* ``full_nfe_per_output(ledger) -> float``;
* ``effective_sample_size(rho, n_total) -> float`` (``rho``: the pooled autocorrelation at lags 0, 1, ...);
* ``nfe_per_independent_sample(nfe_per_output, n_outputs, ess) -> float``;
* ``nfe_to_reach(nfe, metric, target) -> float`` (``inf`` when no point reaches the target).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from dmcmc_edu.core.ledger import NFELedger
from dmcmc_edu.evaluation.diagnostics import autocorrelation, effective_sample_size
from dmcmc_edu.grading.feedback import as_array, call_student, compare, fail, graded, hidden_seed, ok, plain

__all__ = ["check_full_nfe_per_output", "check_effective_sample_size", "check_nfe_per_independent_sample",
           "check_nfe_to_reach", "reference_ess", "reference_nfe_to_reach"]


def _ledger(seed: int) -> NFELedger:
    g = torch.Generator().manual_seed(seed)
    C = int(torch.randint(50, 200, (), generator=g))
    T = int(torch.randint(2, 9, (), generator=g))
    n_skip, steps = int(torch.randint(1, 4, (), generator=g)), int(torch.randint(3, 9, (), generator=g))
    return NFELedger(n_chains=C, n_outputs=C * T, init=C * (37 + 10 * n_skip), gibbs=C * T * 2 * n_skip,
                     denoise=C * T * (2 * steps - 1), tweedie=C * T, classifier_init=C * 11,
                     classifier=C * T * n_skip)


@graded(off_limits=("dmcmc_edu.core.ledger:NFELedger.per_output",))
def check_full_nfe_per_output(student_fn, hidden: bool = False) -> str:
    """``full_nfe_per_output(ledger)``: every counted evaluation, initialisation included, divided by the outputs."""
    for seed in ((hidden_seed(61), hidden_seed(62)) if hidden else (1,)):
        led = _ledger(seed)
        got = call_student(student_fn, "full_nfe_per_output", NFELedger(**vars(led)))
        n, C = led.n_outputs, led.n_chains
        paper = (led.gibbs + led.denoise + led.tweedie) / n
        where = f"a ledger of {C} chains, {n} outputs ({led.init} init rows, {led.gibbs} Gibbs rows, ...)"
        compare("full_nfe_per_output(ledger)", got, led.per_output()["full"], where=where, rtol=1e-9, atol=1e-9,
                mistakes={"the paper's count (Gibbs + integrator + Tweedie, without the initialisation, burn-in and "
                          "classifier)": paper,
                          "the initialisation and burn-in left out (not amortised over the outputs)":
                              paper + (led.classifier + led.classifier_init) / n,
                          "the initialisation and burn-in charged once per chain (init / n_chains), not amortised "
                          "over all outputs": paper + (led.init + led.classifier_init) / C + led.classifier / n,
                          "the classifier's evaluations left out": paper + led.init / n,
                          "the total, not divided by the number of outputs": led.per_output()["full"] * n},
                hint="the full ledger adds every part (init, gibbs, denoise, tweedie, classifier_init, classifier) "
                     "and divides by n_outputs")
    return ok("full_nfe_per_output: the full ledger, initialisation amortised")


# ----------------------------------------------------------------------------- ESS


def _geyer_sum(rho, stop_at_zero: bool = True) -> float:
    """Geyer's sum s of the pairs rho_2m + rho_2m+1 while they are positive (or, ``stop_at_zero=False``, while
    they are not negative: the strict ``pair < 0`` test)."""
    s = 0.0
    for m in range(0, len(rho) - 1, 2):
        pair = float(rho[m] + rho[m + 1])
        if pair < 0 or (stop_at_zero and pair == 0):
            break
        s += pair
    return s


def reference_ess(rho, n_total: int) -> float:
    """Geyer's initial-positive-sequence ESS from the autocorrelation ``rho`` (lags 0, 1, ...), at most n_total.

    Written apart from :func:`dmcmc_edu.evaluation.diagnostics.effective_sample_size` on purpose: the check asserts
    that the two agree on every AR(1) case, so a fault in the library's estimate stops the check instead of becoming
    the answer students are graded against (``tests/test_grading_a6.py`` compares them too).
    """
    return float(min(n_total, n_total / max(2 * _geyer_sum(rho) - 1, 1.0 / n_total)))


def _ar1(seed: int, phi: float, T: int, C: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    x = np.zeros((T, C))
    x[0] = g.standard_normal(C) / math.sqrt(1 - phi**2)
    for t in range(1, T):
        x[t] = phi * x[t - 1] + g.standard_normal(C)
    return x


def _compare_ess(student_fn, rho: np.ndarray, n: int, want: float, where: str) -> None:
    """One case of :func:`check_effective_sample_size`: the student's ESS against ``want``, mistakes named."""
    s, s_strict = _geyer_sum(rho), _geyer_sum(rho, stop_at_zero=False)
    mistakes = {"rho_0 counted twice (tau = 1 + 2 * sum from lag 0)": min(n, n / (2 * s + 1)),
                "the sum stopped only at a negative pair (pair < 0 instead of pair <= 0: a pair of 0 ends it)":
                    min(n, n / max(2 * s_strict - 1, 1.0 / n)),
                "no truncation (every lag summed)": min(n, n / max(2 * float(np.sum(rho)) - 1, 1.0 / n)),
                "not capped at n_total (an anti-correlated chain cannot count for more than its draws)":
                    n / max(2 * s - 1, 1.0 / n),
                "tau returned instead of n_total / tau": 2 * s - 1}
    got = call_student(student_fn, "effective_sample_size", rho.copy(), n)
    compare("effective_sample_size(rho, n_total)", got, want, where=where, rtol=1e-8, atol=1e-8,
            mistakes=mistakes, hint="sum the pairs rho_2m + rho_2m+1 while they are positive (s), tau = 2 s - 1, "
                                    "ESS = min(n_total, n_total / tau)")


@graded(off_limits=("dmcmc_edu.evaluation.diagnostics:effective_sample_size",
                    "dmcmc_edu.evaluation.diagnostics:_ess_from_rho", "dmcmc_edu.grading.a6_research:reference_ess"))
def check_effective_sample_size(student_fn, hidden: bool = False) -> str:
    """``effective_sample_size(rho, n_total)`` against the library's Geyer estimate, on AR(1) chains."""
    cases = (((hidden_seed(71), 0.8, 60, 20), (hidden_seed(72), -0.6, 40, 10), (hidden_seed(73), 0.3, 80, 5))
             if hidden else ((7, 0.7, 50, 10), (8, -0.5, 30, 8)))
    for seed, phi, T, C in cases:
        series = _ar1(seed, phi, T, C)
        rho = autocorrelation(series)
        n = series.size
        want = effective_sample_size(series)
        assert abs(want - reference_ess(rho, n)) <= 1e-9 * n  # the library's estimate, step by step
        _compare_ess(student_fn, rho, n, want, f"{C} AR(1) chains of {T} steps with phi = {phi}")
    # the boundary: a pair rho_2m + rho_2m+1 exactly 0 ends the sum (only positive pairs count)
    n = 200 if not hidden else 100 + hidden_seed(74) % 400
    rho = np.array([1.0, 0.6, 0.3, -0.3, 0.2, 0.1, 0.05, -0.2])
    _compare_ess(student_fn, rho, n, reference_ess(rho, n),
                 f"rho = {plain(rho.tolist())} (its second pair is exactly 0), n_total = {n}")
    # the other ends of the sum (found by the mutation run, bench/grading_mutants.py): every pair positive up to the
    # last lag, with and without an unpaired last lag (left out), and 2 s - 1 below 0 (the ESS is then n_total)
    for rho, what in (([1.0, 0.9, 0.8, 0.7, 0.6], "every pair positive to the end; the unpaired last lag is left out"),
                      ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], "every pair positive to the end"),
                      ([1.0, -0.8, 0.1, -0.3], "2 s - 1 is below 0: strongly anti-correlated")):
        rho = np.array(rho)
        _compare_ess(student_fn, rho, n, reference_ess(rho, n), f"rho = {plain(rho.tolist())} ({what}), n_total = {n}")
    return ok("effective_sample_size: Geyer's estimate")


# ----------------------------------------------------------------------------- NFE per independent sample


@graded
def check_nfe_per_independent_sample(student_fn, hidden: bool = False) -> str:
    """``nfe_per_independent_sample``: the total cost divided by the effective sample size."""
    cases = ((43.5, 400, 131.7), (12.25, 1000, 1000.0), (80.0, 240, 61.0)) if hidden else ((25.0, 300, 120.0),)
    if hidden:  # the hidden costs scaled by a factor drawn from the grader's secret
        scale = 0.5 + float(np.random.default_rng(hidden_seed(91)).random())
        cases = tuple((nfe * scale, n, ess) for nfe, n, ess in cases)
    for nfe, n, ess in cases:
        got = call_student(student_fn, "nfe_per_independent_sample", nfe, n, ess)
        compare("nfe_per_independent_sample(nfe_per_output, n_outputs, ess)", got, nfe * n / ess,
                where=f"{nfe} NFE per output, {n} outputs, ESS {ess}", rtol=1e-9, atol=1e-9,
                mistakes={"NFE per output instead of per independent sample (the ESS ignored)": nfe,
                          "NFE per output times the ESS ratio (multiplied instead of divided)": nfe * ess / n,
                          "the total NFE, not divided by the ESS": nfe * n},
                hint="the run's total cost is nfe_per_output * n_outputs; it bought ess independent samples")
    return ok("nfe_per_independent_sample: total cost / ESS (the ladder's nfe_per_independent)")


# ----------------------------------------------------------------------------- equal quality


def reference_nfe_to_reach(nfe, metric, target) -> float:
    """The smallest NFE among the points whose metric is at or below ``target`` (``inf`` if none), as the ladder."""
    good = [float(c) for c, m in zip(nfe, metric) if m <= target]
    return min(good) if good else math.inf


def _reach_cases(hidden: bool) -> tuple[list[float], list[float], tuple[float, ...]]:
    """Points (NFE, metric) in no order and the targets; each set has a target that one point's metric equals
    exactly (it reaches it: ``<=``).  The hidden points are shuffled and scaled from the grader's secret."""
    if not hidden:
        return [37.0, 5.0, 15.0, 9.0, 75.0, 23.0], [0.08, 0.9, 0.12, 0.3, 0.05, 0.07], (0.1, 0.2, 0.12)
    nfe, met = [199.0, 11.0, 49.0, 7.0, 99.0, 31.0, 23.0], [0.11, 0.4, 0.1, 0.8, 0.05, 0.2, 0.13]
    g = np.random.default_rng(hidden_seed(81))
    order = g.permutation(len(nfe))
    scale = float(g.integers(1, 4))
    return [nfe[i] * scale for i in order], [met[i] for i in order], (0.12, 0.1, 0.3)


@graded(off_limits=("dmcmc_edu.grading.a6_research:reference_nfe_to_reach",))
def check_nfe_to_reach(student_fn, hidden: bool = False) -> str:
    """``nfe_to_reach(nfe, metric, target)``: the cheapest point that reaches the target, unsorted input, a point
    exactly at the target included."""
    nfe, met, targets = _reach_cases(hidden)
    for target in targets:
        got = call_student(student_fn, "nfe_to_reach", list(nfe), list(met), target)
        reached = [i for i, m in enumerate(met) if m <= target]
        strict = [nfe[i] for i, m in enumerate(met) if m < target]
        compare("nfe_to_reach(nfe, metric, target)", got, reference_nfe_to_reach(nfe, met, target),
                where=f"points (NFE, metric) {plain(list(zip(nfe, met)))} and target {plain(target)}", rtol=1e-12,
                atol=0,
                mistakes={"metric < target instead of metric <= target (a point exactly at the target reaches it)":
                          min(strict) if strict else math.inf,
                          "the first point in the list that reaches the target, not the cheapest":
                          nfe[reached[0]],
                          "the NFE of the best metric, not the cheapest point that reaches the target":
                          nfe[int(np.argmin(met))],
                          "the most expensive point that reaches the target": max(nfe[i] for i in reached)},
                hint="among the points with metric <= target, the smallest NFE")
    got = call_student(student_fn, "nfe_to_reach", list(nfe), list(met), 0.01)
    g = as_array(got, "nfe_to_reach") if got is not None else np.array([np.nan, np.nan])
    if not (g.size == 1 and math.isinf(float(g.reshape(()))) and float(g.reshape(())) > 0):
        fail(f"nfe_to_reach with target 0.01 (no point reaches it) returned {plain(got)}; expected inf (math.inf): "
             "a method that never reaches the target needs more NFE than any measured")
    return ok("nfe_to_reach: the cheapest point at or below the target")
