"""Uncertainty in one place: intervals over repeated runs, paired comparisons and the verdicts built on them.

Every comparative sentence the toolkit prints ("DLG needs 0.7x the NFE of KAR1 from noise") is a *measurement*:
two arms run over the same seeds, a ratio with its bootstrap confidence interval, the number of seeds, and the
plain answer "no measurable difference" when the interval holds 1.  The resampling is
:func:`scipy.stats.bootstrap` (BCa, falling back to percentile intervals where BCa is undefined, e.g. when
every resample gives the same value); nothing here re-implements it.

* :func:`interval` -- a statistic of one set of repeated measurements with its confidence interval.
* :func:`ratio_interval` -- how many times A's value B's is: per-seed ratios when the arms are paired (the same
  seeds), the ratio of the two medians when they are not.
* :func:`reach_summary` -- "NFE to reach the reference" over seeds: the median over the seeds that reach, its
  interval and the fraction that reach at all; a setting counts as reaching only when at least
  :data:`MIN_REACH_FRACTION` of its seeds do.
* :func:`verdict` -- two measured arms to one sentence (and the numbers behind it), the only place the toolkit's
  "A beats B" is decided.
* :func:`difference_verdict` -- the same for a quality measured on whole sample sets (an FID), where each seed
  gives one value and a bootstrap over that set's samples gives its spread: the mean difference A - B over the
  seeds with its interval.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

__all__ = ["CONFIDENCE", "MIN_REACH_FRACTION", "Interval", "Reach", "Verdict", "interval", "ratio_interval",
           "reach_summary", "verdict", "floor_interval", "difference_verdict"]

CONFIDENCE = 0.95
"""The confidence level of every interval the toolkit prints."""

MIN_REACH_FRACTION = 7 / 8
"""A setting counts as reaching a quality only when at least this fraction of its seeds reach it (7 of 8)."""

_RESAMPLES = 9999


@dataclass(frozen=True)
class Interval:
    """A statistic of repeated measurements with its confidence interval (``low`` <= ``estimate`` <= ``high``)."""

    estimate: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE
    method: str = "BCa"
    statistic: str = "median"

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def text(self, fmt: str = ".2f", unit: str = "") -> str:
        """``"0.70x (95% CI 0.62-0.81)"``-style text."""
        pct = f"{100 * self.confidence:g}%"
        return (f"{self.estimate:{fmt}}{unit} ({pct} CI {self.low:{fmt}}-{self.high:{fmt}}{unit})")

    def to_dict(self) -> dict:
        return asdict(self)


def _clean_values(values, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError(f"{what}: no measurements")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what}: {int(np.sum(~np.isfinite(v)))} non-finite measurement(s); an interval needs "
                         "finite values (a run that did not reach is counted by reach_summary, not averaged)")
    return v


_STATISTICS = {"median": np.median, "mean": np.mean}  # each takes ``axis`` (scipy's vectorised bootstrap)


def _bootstrap(data: tuple, statistic, *, paired: bool, confidence: float, seed: int) -> tuple[float, float, str]:
    """scipy's bootstrap interval (BCa, else percentile); a degenerate sample gives the point interval.

    ``statistic`` takes the samples and an ``axis`` keyword (scipy's vectorised form).
    """
    flat = np.concatenate([np.ravel(d) for d in data])
    if np.all(flat == flat[0]) or min(len(d) for d in data) < 2:
        est = float(statistic(*data, axis=-1))
        return est, est, "degenerate"
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa on small or tied samples warns and returns nan: we fall back
            res = stats.bootstrap(data, statistic, paired=paired, vectorized=True, confidence_level=confidence,
                                  n_resamples=_RESAMPLES, method=method, rng=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi, method
    raise RuntimeError("bootstrap gave no finite interval")  # unreachable for finite, non-degenerate data


def interval(values, statistic: str = "median", confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """``statistic`` ("median" or "mean") of repeated measurements with its bootstrap confidence interval.

    One value, or values that are all equal, give the point interval (method ``"degenerate"``).
    """
    v = _clean_values(values, "interval")
    fn = _STATISTICS[statistic]
    est = float(fn(v))
    lo, hi, method = _bootstrap((v,), fn, paired=False, confidence=confidence, seed=seed)
    return Interval(est, min(lo, est), max(hi, est), int(v.size), confidence, method, statistic)


def ratio_interval(a, b, *, paired: bool = True, confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """How many times ``b`` the value ``a`` is, with its interval.

    Paired (the same seeds in both arms, ``a[i]`` beside ``b[i]``): the geometric mean of the per-seed ratios,
    bootstrapped over seeds.  Unpaired: median(a) / median(b), each arm resampled on its own.
    """
    a, b = _clean_values(a, "ratio_interval (a)"), _clean_values(b, "ratio_interval (b)")
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("ratio_interval: the measurements must be positive (NFE, times, costs)")
    if paired:
        if a.size != b.size:
            raise ValueError(f"ratio_interval: paired arms need the same seeds ({a.size} vs {b.size} values)")
        logs = np.log(a / b)
        est = float(np.exp(logs.mean()))
        lo, hi, method = _bootstrap((logs,), np.mean, paired=False, confidence=confidence, seed=seed)
        lo, hi = math.exp(lo), math.exp(hi)
        stat = "geometric mean of per-seed ratios"
    else:
        fn = lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis)  # noqa: E731
        est = float(fn(a, b))
        lo, hi, method = _bootstrap((a, b), fn, paired=False, confidence=confidence, seed=seed)
        stat = "ratio of medians"
    return Interval(est, min(lo, est), max(hi, est), int(min(a.size, b.size)), confidence, method, stat)


def floor_interval(values, quantile: float = 0.99, confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """A noise-floor threshold: the ``quantile`` of exact-sampler scores, with its bootstrap interval."""
    v = _clean_values(values, "floor_interval")
    if v.size < 20:
        raise ValueError(f"floor_interval: a floor needs at least 20 exact sets, got {v.size}")
    if not 0.5 <= quantile < 1:
        raise ValueError(f"floor_interval: quantile must lie in [0.5, 1), got {quantile}")
    fn = lambda x, axis=-1: np.quantile(x, quantile, axis=axis)  # noqa: E731
    est = float(fn(v))
    lo, hi, method = _bootstrap((v,), fn, paired=False, confidence=confidence, seed=seed)
    return Interval(est, min(lo, est), max(hi, est), int(v.size), confidence, method, f"{quantile:g} quantile")


@dataclass(frozen=True)
class Reach:
    """Whether, and at what cost, a setting reaches a quality over seeds.

    ``values[i]`` is the cost (e.g. NFE per independent sample) at seed ``seeds[i]``, or ``nan`` where that seed
    did not reach.  ``counts`` is True when at least ``min_fraction`` of the seeds reach; ``cost`` is the median
    over the reaching seeds with its interval (None when none reach).
    """

    values: tuple
    seeds: tuple
    n_reached: int
    counts: bool
    cost: Interval | None
    min_fraction: float = MIN_REACH_FRACTION
    label: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def fraction(self) -> float:
        return self.n_reached / self.n if self.n else 0.0

    def text(self, fmt: str = ".0f") -> str:
        if self.cost is None:
            return f"reaches in 0/{self.n} seeds"
        got = f"{self.n_reached}/{self.n} seeds"
        if not self.counts:
            return f"does not count: reaches in {got} (needs {math.ceil(self.min_fraction * self.n)})"
        return f"{self.cost.text(fmt)}, reaches in {got}"

    def to_dict(self) -> dict:
        return {"values": [None if not math.isfinite(v) else v for v in self.values], "seeds": list(self.seeds),
                "n_reached": self.n_reached, "n": self.n, "counts": self.counts, "min_fraction": self.min_fraction,
                "cost": self.cost.to_dict() if self.cost else None, "label": self.label}


def reach_summary(values, seeds=None, *, min_fraction: float = MIN_REACH_FRACTION, label: str = "",
                  confidence: float = CONFIDENCE, seed: int = 0) -> Reach:
    """Summarise one setting's cost to reach a quality over seeds (``nan`` / ``None`` / ``inf``: did not reach)."""
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    v[~np.isfinite(v)] = np.nan
    if v.size == 0:
        raise ValueError("reach_summary: no seeds")
    seeds = tuple(range(v.size)) if seeds is None else tuple(int(s) for s in seeds)
    if len(seeds) != v.size:
        raise ValueError(f"reach_summary: {v.size} values but {len(seeds)} seeds")
    ok = np.isfinite(v)
    k = int(ok.sum())
    cost = interval(v[ok], "median", confidence, seed) if k else None
    counts = k >= math.ceil(min_fraction * v.size - 1e-9)
    return Reach(tuple(float(x) for x in v), seeds, k, bool(counts and k > 0), cost, min_fraction, label)


@dataclass(frozen=True)
class Verdict:
    """One comparison measured: the sentence and what it rests on (``outcome`` is machine-readable)."""

    text: str
    outcome: str  # "a_cheaper" | "b_cheaper" | "no_difference" | "only_a" | "only_b" | "neither"
    ratio: Interval | None = None
    n_seeds: int = 0
    a: dict = field(default_factory=dict)
    b: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text

    def sentence(self) -> str:
        """The text as a sentence: capitalised, ending with a full stop."""
        return self.text[:1].upper() + self.text[1:] + ("" if self.text.endswith(".") else ".")

    def to_dict(self) -> dict:
        return {"text": self.text, "outcome": self.outcome, "ratio": self.ratio.to_dict() if self.ratio else None,
                "n_seeds": self.n_seeds, "a": self.a, "b": self.b}


def _as_reach(arm, seeds, what: str) -> Reach:
    return arm if isinstance(arm, Reach) else reach_summary(arm, seeds, label=what)


def verdict(a, b, name_a: str = "A", name_b: str = "B", *, what: str = "NFE", paired: bool = True, seeds=None,
            confidence: float = CONFIDENCE, seed: int = 0, kind: str = "cost", fmt: str = ".0f") -> Verdict:
    """Compare the costs of two arms measured over seeds and say what the data carry, in one sentence.

    ``a`` and ``b``: per-seed costs (lower is better; ``nan`` where a seed did not reach) or :class:`Reach`
    objects.  An arm that does not count as reaching (fewer than 7 of 8 seeds) is not compared by cost: the
    sentence says which arm reaches.  Otherwise the ratio A / B with its interval over the seeds where both reach
    (paired) or over each arm's reaching seeds (unpaired): "A needs 0.70x (95% CI 0.62-0.81) of B's NFE (8
    seeds)", or "no measurable difference between A and B (NFE ratio 0.97, 95% CI 0.85-1.12 includes 1; 8
    seeds)".  ``kind="value"`` words a quality in which lower is better (W2, FID) instead of a cost: "A's W2
    is 1.15x B's (95% CI ...)".  ``fmt`` formats the median cost quoted when only one arm reaches (``".2f"`` for
    a W2).
    """
    if kind not in ("cost", "value"):
        raise ValueError(f"verdict: kind must be 'cost' or 'value', got {kind!r}")
    ra, rb = _as_reach(a, seeds, name_a), _as_reach(b, seeds, name_b)
    info = {"a": ra.to_dict(), "b": rb.to_dict()}
    n = max(ra.n, rb.n)
    need = math.ceil(MIN_REACH_FRACTION * n - 1e-9)
    if not (ra.counts or rb.counts):
        return Verdict(f"no comparison: neither {name_a} ({ra.n_reached}/{ra.n} seeds at best) nor {name_b} "
                       f"({rb.n_reached}/{rb.n}) reaches in {need} of {n} seeds", "neither", None, n, **info)
    if ra.counts != rb.counts:
        (yes, ryes), (no, rno), out = ((name_a, ra), (name_b, rb), "only_a") if ra.counts else \
            ((name_b, rb), (name_a, ra), "only_b")
        return Verdict(f"only {yes} reaches ({ryes.cost.text(fmt)} {what}, {ryes.n_reached}/{ryes.n} seeds); "
                       f"{no} reaches in {rno.n_reached}/{rno.n} seeds at best (needs {need})", out, None, n, **info)
    va, vb = np.array(ra.values), np.array(rb.values)
    if paired:
        if va.size != vb.size:
            raise ValueError(f"verdict: paired arms need the same seeds ({va.size} vs {vb.size})")
        both = np.isfinite(va) & np.isfinite(vb)
        r = ratio_interval(va[both], vb[both], paired=True, confidence=confidence, seed=seed)
    else:
        r = ratio_interval(va[np.isfinite(va)], vb[np.isfinite(vb)], paired=False, confidence=confidence, seed=seed)
    pct = f"{100 * confidence:g}%"
    seeds_txt = f"{r.n} seeds" + ("" if paired else " each at least")
    if r.low <= 1.0 <= r.high:
        return Verdict(f"no measurable difference between {name_a} and {name_b} ({what} ratio {r.estimate:.2f}, "
                       f"{pct} CI {r.low:.2f}-{r.high:.2f} includes 1; {seeds_txt})", "no_difference", r, r.n,
                       **info)
    out = "a_cheaper" if r.high < 1.0 else "b_cheaper"
    ci = f"({pct} CI {r.low:.2f}-{r.high:.2f})"
    if kind == "value":
        text = f"{name_a}'s {what} is {r.estimate:.2f}x {name_b}'s {ci}: {name_a if r.high < 1 else name_b} is " \
               f"better ({seeds_txt})"
    else:
        text = f"{name_a} needs {r.estimate:.2f}x {ci} of {name_b}'s {what} ({seeds_txt})"
    return Verdict(text, out, r, r.n, **info)


def difference_verdict(a_values, b_values, a_replicates, b_replicates, name_a: str = "A", name_b: str = "B", *,
                       what: str = "FID", confidence: float = CONFIDENCE, fmt: str = ".1f") -> Verdict:
    """Compare a quality (lower is better) of two arms, each measured on one sample set per seed.

    ``a_values`` / ``b_values``: the value of each seed's set (``[S]``, the same seeds for both arms, or any
    number each).  ``a_replicates`` / ``b_replicates``: per seed, the bootstrap distribution of that value over
    the set's samples (``[S, R]``, e.g. ``fid_interval(...)["replicates"]``; scipy's resamples, not ours).  The
    sets of the two arms are independent, so replicate ``r`` of A's seed ``s`` and replicate ``r`` of B's seed
    ``s`` form one draw of the difference; the statistic is the mean over seeds of A - B.  Each replicate is first
    moved by its own seed's bootstrap shift (median replicate minus the value: a resampled set repeats samples
    and scores worse, more so for correlated samples), so the interval is the spread around the measured
    difference.  An interval holding 0 gives "no measurable difference".
    """
    va, vb = _clean_values(a_values, f"{name_a}: {what}"), _clean_values(b_values, f"{name_b}: {what}")
    ra, rb = (np.atleast_2d(np.asarray(r, dtype=float)) for r in (a_replicates, b_replicates))
    for name, v, r in ((name_a, va, ra), (name_b, vb, rb)):
        if r.shape[0] != v.size:
            raise ValueError(f"difference_verdict: {name} has {v.size} values but {r.shape[0]} replicate rows")
        if r.shape[1] < 100 or not np.all(np.isfinite(r)):
            raise ValueError(f"difference_verdict: {name} needs >= 100 finite bootstrap replicates per seed")
    m = min(ra.shape[1], rb.shape[1])
    da = (ra[:, :m] - np.median(ra, axis=1, keepdims=True) + va[:, None]).mean(axis=0)
    db = (rb[:, :m] - np.median(rb, axis=1, keepdims=True) + vb[:, None]).mean(axis=0)
    draws = da - db
    est = float(va.mean() - vb.mean())
    alpha = (1 - confidence) / 2
    low, high = (float(q) for q in np.quantile(draws, [alpha, 1 - alpha]))
    diff = Interval(est, min(low, est), max(high, est), int(max(va.size, vb.size)), confidence, "percentile",
                    "mean difference")
    pct = f"{100 * confidence:g}%"
    seeds = f"{va.size} seed{'s' if va.size != 1 else ''}" + ("" if va.size == vb.size else f" vs {vb.size}")
    info = {"a": {"values": va.tolist(), "mean": float(va.mean())},
            "b": {"values": vb.tolist(), "mean": float(vb.mean())}}
    if diff.low <= 0.0 <= diff.high:
        return Verdict(f"no measurable difference in {what} between {name_a} and {name_b} ({name_a} - {name_b} = "
                       f"{est:+{fmt}}, {pct} CI {diff.low:+{fmt}} to {diff.high:+{fmt}} includes 0; {seeds})",
                       "no_difference", diff, diff.n, **info)
    better, worse = (name_a, name_b) if est < 0 else (name_b, name_a)
    return Verdict(f"{better}'s {what} is lower than {worse}'s by {abs(est):{fmt}} ({pct} CI "
                   f"{min(abs(diff.low), abs(diff.high)):{fmt}}-{max(abs(diff.low), abs(diff.high)):{fmt}}; {seeds}): "
                   f"{better} is better", "a_cheaper" if est < 0 else "b_cheaper", diff, diff.n, **info)
