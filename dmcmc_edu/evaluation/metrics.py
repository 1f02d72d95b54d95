"""Sample-quality metrics with exact ground truth (for the analytic mixtures).

Each metric says what it catches and what it misses.  Per-sample-set metrics:

* :func:`w2` -- Wasserstein-2 between two sample sets by exact optimal
  transport (POT's network simplex ``ot.emd2``; scipy's assignment solver
  when POT is not installed -- both exact).  Catches any difference in
  distribution; misses nothing in principle but is noisy and, in high
  dimension, dominated by that noise: compare with :func:`w2_noise_floor`
  (W2 between two exact sample sets of the same size).
* :func:`mode_weight_tv` -- total variation between the empirical component
  weights (each sample assigned to its most responsible component at sigma=0)
  and the true weights.  Catches wrong mode proportions (the failure of
  chains that never switch mode); misses everything inside a mode.
* :func:`on_manifold_fraction` -- fraction of samples whose squared
  Mahalanobis radius to the assigned component is below the chi-square_d 99 %
  quantile (about 0.99 for exact samples).  Catches samples left between
  modes or off the thin directions (residual noise); *rewards* collapse toward
  the means and misses mode weights.
* :func:`spread` -- median squared Mahalanobis radius to the assigned
  component over the chi-square_d median; 1 for exact samples, < 1 when
  samples collapse toward the means (which on-manifold fractions and NLL
  *reward*), > 1 when they are too wide.  Misses mode weights and shape
  errors that keep the median radius.
* :func:`nll` / :func:`nll_stats` -- mean (and median) negative
  log-likelihood under p_0, against that of exact samples.  Catches
  off-manifold samples (the mean is sensitive to a few far-off samples, the
  median is not); rewards collapse (see spread); misses mode weights almost
  entirely.
* :func:`mmd2` -- unbiased squared maximum mean discrepancy with a Gaussian
  kernel (median-heuristic bandwidth).  Catches differences at the scale of
  the bandwidth (mode weights, gross shape) with far less noise than W2;
  misses fine structure much smaller than the bandwidth (e.g. a slightly
  wrong width of a thin component).

Chain metrics (outputs of persistent chains, via :mod:`dmcmc_edu.evaluation.diagnostics`)
live in :func:`chain_metrics`: lag-k autocorrelation of the component label
and of log sigma, effective sample size per output, mode-switch rate, and
:func:`decorrelation` of consecutive outputs of a chain.

:func:`evaluate` computes every per-set metric; :func:`noise_floors` the
distribution of each over exact sample sets of the same size, and
:func:`within_floors` says which metrics of a sampler lie inside them.

No metric scores a broken sample set: every function that takes samples
refuses NaN or inf rows with a ``ValueError`` that counts them
(:func:`dmcmc_edu.evaluation.checks.require_finite`), and :func:`w2` refuses
an optimal-transport solution that its solver did not certify as optimal.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.linalg import sqrtm
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.stats import chi2

from dmcmc_edu.evaluation.checks import require_finite
from dmcmc_edu.evaluation.diagnostics import (
    _ess_from_rho,
    _label_ess,
    as_chains,
    autocorrelation,
    effective_sample_size,
    label_autocorrelation,
    mode_switch_rate,
)
from dmcmc_edu.evaluation.uncertainty import floor_interval

try:  # POT: a dependency of the package, but W2 has an exact fallback (scipy) if it is missing
    import ot
except ImportError:  # pragma: no cover - only without POT
    ot = None

__all__ = ["have_pot", "w2", "w2_noise_floor", "gaussian_w2", "mode_weights", "mode_weight_tv", "label_weight_tv",
           "spread", "on_manifold_fraction", "nll", "nll_stats", "median_bandwidth", "mmd2", "decorrelation",
           "chain_metrics", "evaluate", "reference_values", "noise_floors", "within_floors", "FLOOR_METRICS", "summary"]


def _np(x):
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def _as_mix(mixture, x, what: str):
    """Samples ``[n, d]`` in the mixture's dtype, refused (naming ``what``) if a row holds NaN or inf."""
    return torch.as_tensor(require_finite(x, what), dtype=mixture.dtype).reshape(len(x), -1)


#: the status code of POT's network simplex for "optimal solution found" (the others: infeasible, unbounded,
#: iteration limit reached)
_POT_OPTIMAL = 1


# ----------------------------------------------------------------------------- W2


def have_pot() -> bool:
    """Whether POT (the ``ot`` package, exact optimal transport) is installed; without it :func:`w2` uses scipy."""
    return ot is not None


def w2(a, b, method: str = "auto") -> float:
    """Exact W2 between two point clouds (uniform weights on each point).

    ``method``: ``"pot"`` (``ot.emd2``, network simplex; any sizes),
    ``"scipy"`` (``linear_sum_assignment``; equal sizes only) or ``"auto"``
    (POT if installed, else scipy).  Both solve the same linear program
    exactly; they agree to rounding.  Raises ``ValueError`` for a set with
    NaN or inf rows, for squared distances that overflow, and when POT's
    solver reports anything but an optimal solution (e.g. its iteration limit).
    """
    a = require_finite(_np(a).reshape(len(a), -1), "w2", "samples of the first set")
    b = require_finite(_np(b).reshape(len(b), -1), "w2", "samples of the second set")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"w2 needs two sets of the same dimension, got {a.shape} and {b.shape}")
    if method not in ("auto", "pot", "scipy"):
        raise ValueError(f"method must be auto|pot|scipy, got {method!r}")
    if method == "auto":
        method = "pot" if have_pot() else "scipy"
    cost = cdist(a, b, "sqeuclidean")
    if not np.isfinite(cost).all():
        big = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
        raise ValueError(f"w2: squared distances overflow float64 (coordinates up to {big:.3g}); "
                         "a broken sample set has no score")
    if method == "pot":
        if ot is None:
            raise ImportError("w2(method='pot') needs POT: pip install POT")
        val = _pot_cost(cost, numItermax=max(100000, 50 * len(a) * len(b)))
        return float(np.sqrt(max(val, 0.0)))
    if a.shape != b.shape:
        raise ValueError(f"the scipy assignment path needs two sets of the same shape, got {a.shape} and {b.shape}")
    r, c = linear_sum_assignment(cost)  # raises itself on an infeasible problem
    return float(np.sqrt(cost[r, c].mean()))


def _pot_cost(cost: np.ndarray, numItermax: int) -> float:
    """Optimal transport cost between uniform weights by POT's network simplex, only if POT certifies it optimal.

    POT does not raise when its solver stops early (iteration limit) or finds
    the problem infeasible: it warns and returns whatever cost it had, often
    0.  Here its status code (``log["result_code"]``) is read instead and
    anything but "optimal" raises ``ValueError`` carrying POT's own message
    (its warning is silenced, the error says the same).
    """
    wa = np.full(cost.shape[0], 1.0 / cost.shape[0])
    wb = np.full(cost.shape[1], 1.0 / cost.shape[1])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"ot(\.|$)")
        val, log = ot.emd2(wa, wb, cost, numItermax=numItermax, log=True)
    if log.get("result_code") != _POT_OPTIMAL:
        raise ValueError(f"w2: POT's network simplex did not find the optimal transport (status "
                         f"{log.get('result_code')}: {log.get('warning')}); no W2 without it")
    return float(val)


def w2_noise_floor(mixture, n: int, generator=None, repeats: int = 3) -> float:
    """Mean W2 between two independent exact sample sets of size n (what a perfect sampler scores)."""
    vals = [w2(mixture.sample(n, generator), mixture.sample(n, generator)) for _ in range(repeats)]
    return float(np.mean(vals))


def gaussian_w2(m1, c1, m2, c2) -> float:
    """Closed-form W2 between N(m1, c1) and N(m2, c2) (the Bures formula; a test reference).

    ``W2^2 = |m1 - m2|^2 + tr(c1 + c2 - 2 (c2^1/2 c1 c2^1/2)^1/2)``.
    """
    m1, m2, c1, c2 = (_np(v) for v in (m1, m2, c1, c2))
    r2 = sqrtm(c2)
    cross = sqrtm(r2 @ c1 @ r2).real
    val = float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2.0 * cross))
    return math.sqrt(max(val, 0.0))


# ----------------------------------------------------------------------------- modes and radii


def mode_weights(mixture, x) -> torch.Tensor:
    """Empirical component weights, assigning each sample by responsibility at sigma = 0."""
    lab = mixture.assign(_as_mix(mixture, x, "mode_weights"))
    return torch.bincount(lab, minlength=mixture.K).to(torch.float64) / len(lab)


def mode_weight_tv(mixture, x) -> float:
    """Total variation between the empirical and the true component weights."""
    require_finite(x, "mode_weight_tv")
    return float(0.5 * (mode_weights(mixture, x) - mixture.weights.to(torch.float64).cpu()).abs().sum())


def label_weight_tv(labels, weights) -> float:
    """Total variation between the frequencies of integer ``labels`` and ``weights`` ([K], normalised here)."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    w = w / w.sum()
    lab = require_finite(torch.as_tensor(labels).flatten(), "label_weight_tv", "labels").long()
    freq = torch.bincount(lab, minlength=w.numel()).to(torch.float64) / max(lab.numel(), 1)
    return float(0.5 * (freq - w).abs().sum())


def _maha_assigned(mixture, x, what: str) -> torch.Tensor:
    x = _as_mix(mixture, x, what)
    return mixture.mahalanobis_sq(x, mixture.assign(x))


def spread(mixture, x) -> float:
    """Median squared Mahalanobis radius to the assigned component over the chi-square_d median (1 = exact)."""
    return float(_maha_assigned(mixture, x, "spread").median() / chi2.median(mixture.d))


def on_manifold_fraction(mixture, x, q: float = 0.99) -> float:
    """Fraction of samples with squared Mahalanobis radius to the assigned component below chi2_d's q-quantile.

    About ``q`` for exact samples (a little above: the assigned component is
    the most responsible one).
    """
    return float((_maha_assigned(mixture, x, "on_manifold_fraction") <= chi2.ppf(q, mixture.d)).double().mean())


def nll(mixture, x) -> float:
    """Mean negative log-likelihood under p_0."""
    return float(-mixture.log_prob(_as_mix(mixture, x, "nll"), 0.0).mean())


def nll_stats(mixture, x) -> dict:
    """``{"mean", "median", "sem"}`` of the negative log-likelihood under p_0 (sem: standard error of the mean)."""
    v = -mixture.log_prob(_as_mix(mixture, x, "nll_stats"), 0.0).double()
    return {"mean": float(v.mean()), "median": float(v.median()),
            "sem": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")}


# ----------------------------------------------------------------------------- MMD


def median_bandwidth(a, b, max_points: int = 1000) -> float:
    """Median pairwise Euclidean distance of the pooled sample (first ``max_points`` of each set)."""
    a = require_finite(_np(a), "median_bandwidth", "samples of the first set")
    b = require_finite(_np(b), "median_bandwidth", "samples of the second set")
    z = torch.cat([torch.as_tensor(a[:max_points]), torch.as_tensor(b[:max_points])])
    d = torch.cdist(z, z)
    iu = torch.triu_indices(len(z), len(z), 1)
    return float(d[iu[0], iu[1]].median())


def mmd2(a, b, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD with the Gaussian kernel ``exp(-|x - y|^2 / (2 h^2))``.

    ``h`` defaults to the median heuristic (:func:`median_bandwidth`).  The
    unbiased estimate leaves out the diagonal terms, so it is about 0 (and may
    be negative) for two sets from the same law.
    """
    a = torch.as_tensor(require_finite(_np(a), "mmd2", "samples of the first set")).reshape(len(a), -1)
    b = torch.as_tensor(require_finite(_np(b), "mmd2", "samples of the second set")).reshape(len(b), -1)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("mmd2 needs at least two points in each set")
    h = median_bandwidth(a, b) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be > 0, got {h}")
    g = -0.5 / h**2

    def mean_k(u, v, same):
        k = torch.exp(g * torch.cdist(u, v).pow(2))
        if same:
            n = len(u)
            return float((k.sum() - k.diagonal().sum()) / (n * (n - 1)))
        return float(k.mean())

    return mean_k(a, a, True) + mean_k(b, b, True) - 2.0 * mean_k(a, b, False)


# ----------------------------------------------------------------------------- chains


def _component_trace(mixture) -> torch.Tensor:
    """tr(Sigma_k) for each component, [K] (float64, CPU)."""
    return torch.diagonal(mixture.covariances.double(), dim1=-2, dim2=-1).sum(-1).cpu()


def decorrelation(mixture, outputs) -> float:
    """Decorrelation of consecutive outputs of a chain: 0 = copies, 1 = independent draws.

    ``outputs`` has shape ``[T, C, d]`` (output t of chain c).  Over all pairs
    of consecutive outputs of one chain that fall in the same component k, the
    mean of ``|x_t - x_{t+1}|^2 / (2 tr Sigma_k)`` (the denominator is the
    expected squared distance between two independent draws of component k).
    Pairs that switch component are left out (see the mode-switch rate); NaN if
    there is no pair.  Catches chains whose outputs are near copies even when
    each output alone is perfect; misses slow drifts that change the position
    by a full component width only over many outputs.
    """
    o = torch.as_tensor(outputs, dtype=torch.float64)
    if o.ndim < 3:
        raise ValueError(f"outputs must have shape [T, C, d], got {tuple(o.shape)}")
    T, C = o.shape[:2]
    require_finite(o.reshape(T * C, -1), "decorrelation", "outputs")
    if T < 2:
        return float("nan")
    o = o.reshape(T, C, -1)
    lab = mixture.assign(o.reshape(T * C, -1).to(mixture.dtype)).reshape(T, C).cpu()
    same = lab[1:] == lab[:-1]
    if not same.any():
        return float("nan")
    d2 = ((o[1:] - o[:-1]) ** 2).sum(-1)
    ref = 2.0 * _component_trace(mixture)[lab[:-1]]
    return float((d2 / ref)[same].mean())


def _no_chain_metrics(res: dict, max_lag: int) -> dict:
    """The chain metrics of one output per chain: every output is independent (chains start independently)."""
    res.update(ess_component_ratio=1.0, ess_position_ratio=1.0, ess_ratio=1.0, ess_sigma_ratio=1.0,
               mode_switch_rate=float("nan"), decorrelation=float("nan"))
    for k in range(1, max_lag + 1):
        res[f"acf{k}_component"] = float("nan")
        res[f"acf{k}_sigma"] = float("nan")
    return res


def _position_ess_ratio(out, n_chains: int, n: int) -> float:
    """ESS ratio of the positions: the coordinates' autocorrelations pooled, weighted by their variances."""
    T = out.shape[0]
    flat = out.reshape(T, n_chains, -1).numpy() if isinstance(out, torch.Tensor) else out.reshape(T, n_chains, -1)
    var = flat.var(axis=(0, 1))
    keep = var > 0
    if not keep.any():
        return 1.0 / T
    rho_x = np.average(np.stack([autocorrelation(flat[:, :, j]) for j in np.nonzero(keep)[0]]), axis=0,
                       weights=var[keep])
    return _ess_from_rho(rho_x, n) / n


def chain_metrics(mixture, samples, chosen_sigma, n_chains: int, max_lag: int = 3) -> dict:
    """Mixing of persistent chains whose outputs are ordered round by round (output ``r * C + c``).

    Returns lag-1..``max_lag`` autocorrelation of the component label (the
    variance-weighted mean over the component indicators) and of log sigma, the
    effective sample sizes per output (``ess_*_ratio``, 1 = independent
    outputs) of the label, of log sigma and of the position (coordinates
    pooled, weighted by their variances), ``ess_ratio`` = the smaller of label
    and position, the mode-switch rate and :func:`decorrelation`.  For 2 or 3
    outputs per chain the autocorrelations rest on one or two lags only.  With one output
    per chain every entry says "independent" (chains start independently).
    """
    x = torch.as_tensor(require_finite(samples, "chain_metrics"), dtype=torch.float64)
    require_finite(chosen_sigma, "chain_metrics", "chosen sigmas")
    n = len(x)
    out = as_chains(x.reshape(n, -1), n_chains)  # [T, C, d]
    T = out.shape[0]
    lab = as_chains(mixture.assign(x.reshape(n, -1).to(mixture.dtype)).cpu(), n_chains)
    logs = np.log(as_chains(torch.as_tensor(chosen_sigma, dtype=torch.float64), n_chains))
    res = {"n_outputs": n, "n_chains": int(n_chains), "outputs_per_chain": int(T)}
    if T < 2:
        return _no_chain_metrics(res, max_lag)
    rho_full = label_autocorrelation(lab, mixture.K)
    rho_lab = rho_full[: max_lag + 1] if rho_full is not None else np.ones(max_lag + 1)
    rho_sig = autocorrelation(logs, max_lag)
    for k in range(1, max_lag + 1):
        res[f"acf{k}_component"] = float(rho_lab[k]) if k < len(rho_lab) else float("nan")
        res[f"acf{k}_sigma"] = float(rho_sig[k]) if k < len(rho_sig) else float("nan")
    res["ess_component_ratio"] = _label_ess(lab, mixture.K, rho_full) / n
    res["ess_position_ratio"] = _position_ess_ratio(out, n_chains, n)  # within-mode motion too
    res["ess_ratio"] = min(res["ess_component_ratio"], res["ess_position_ratio"])
    res["ess_sigma_ratio"] = effective_sample_size(logs) / n
    res["mode_switch_rate"] = mode_switch_rate(lab)
    res["decorrelation"] = decorrelation(mixture, out)
    return res


# ----------------------------------------------------------------------------- everything, and its noise floors


#: per-set metrics of :func:`evaluate` and how far from "exact" each is read (see :func:`within_floors`)
FLOOR_METRICS = {
    "w2": "value",  # W2 to the reference set
    "mmd2": "value",  # unbiased MMD^2 to the reference set
    "mode_tv": "value",
    "spread": "abs_dev",  # |spread - reference|
    "on_manifold": "abs_dev",
    "nll_mean": "abs_dev",
    "nll_median": "abs_dev",
}


def reference_values(mixture, n: int = 200000, generator=None) -> dict:
    """Population values of spread, on-manifold fraction and NLL (mean, median), from ``n`` exact samples."""
    g = generator if generator is not None else torch.Generator().manual_seed(2024)
    x = mixture.sample(n, g)
    s = nll_stats(mixture, x)
    return {"spread": spread(mixture, x), "on_manifold": on_manifold_fraction(mixture, x), "nll_mean": s["mean"],
            "nll_median": s["median"], "nll_sem": s["sem"], "n": n}


def evaluate(mixture, x, reference, ref_values: dict | None = None, mmd_bandwidth: float | None = None) -> dict:
    """Every per-set metric of ``x`` against an exact ``reference`` set (W2 and MMD use it).

    ``ref_values`` (from :func:`reference_values`) adds the deviations
    ``*_dev`` of spread, on-manifold fraction and NLL from their population values.
    ``mmd_bandwidth`` fixes the MMD kernel (default: the median heuristic of each pair of sets).
    """
    x = _as_mix(mixture, x, "evaluate")
    require_finite(reference, "evaluate", "reference samples")
    ns = nll_stats(mixture, x)
    res = {"n": len(x), "w2": w2(x, reference), "mmd2": mmd2(x, reference, mmd_bandwidth),
           "mode_tv": mode_weight_tv(mixture, x),
           "spread": spread(mixture, x), "on_manifold": on_manifold_fraction(mixture, x), "nll_mean": ns["mean"],
           "nll_median": ns["median"], "nll_sem": ns["sem"]}
    if ref_values is not None:
        for k in ("spread", "on_manifold", "nll_mean", "nll_median"):
            res[f"{k}_dev"] = abs(res[k] - ref_values[k])
    return res


def noise_floors(mixture, n: int, reference, ref_values: dict, repeats: int = 40, w2_repeats: int = 10,
                 generator=None, n_sd: float = 3.0, mmd_bandwidth: float | None = None) -> dict:
    """What exact samplers score: each metric of :func:`evaluate` over exact sets of size ``n``.

    Returns per metric of :data:`FLOOR_METRICS` ``{"mean", "sd", "threshold"}``
    with ``threshold = mean + n_sd * sd`` of the value (``"value"`` metrics)
    or of the absolute deviation from the population value (``"abs_dev"``),
    over ``repeats`` exact sets (``w2_repeats`` for the costlier W2).  With the
    defaults an exact sampler has every one of the seven metrics inside its
    threshold about 95 % of the time.  ``mmd_bandwidth`` as in :func:`evaluate` (use the same one).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(777)
    vals = {k: [] for k in FLOOR_METRICS}
    for i in range(max(repeats, w2_repeats)):
        x = _as_mix(mixture, mixture.sample(n, g), "noise_floors")
        if i < w2_repeats:
            vals["w2"].append(w2(x, reference))
        if i >= repeats:
            continue
        ns = nll_stats(mixture, x)
        e = {"mmd2": mmd2(x, reference, mmd_bandwidth), "mode_tv": mode_weight_tv(mixture, x),
             "spread": spread(mixture, x), "on_manifold": on_manifold_fraction(mixture, x), "nll_mean": ns["mean"],
             "nll_median": ns["median"]}
        for k, how in FLOOR_METRICS.items():
            if k != "w2":
                vals[k].append(e[k] if how == "value" else abs(e[k] - ref_values[k]))
    out = {}
    for k, v in vals.items():
        v = np.asarray(v)
        sd = float(v.std(ddof=1))
        out[k] = {"mean": float(v.mean()), "sd": sd, "threshold": float(v.mean() + n_sd * sd),
                  "read_as": FLOOR_METRICS[k], "repeats": len(v)}
    out["n"], out["n_sd"], out["mmd_bandwidth"] = n, n_sd, mmd_bandwidth
    return out


EXACT_FLOOR_REPEATS = 200
"""Exact sample-set pairs behind every floor of :func:`exact_floors` (at least 20 are required)."""

FLOOR_QUANTILE = 0.995
"""The quantile of exact-sampler scores that :func:`exact_floors` takes as each metric's threshold."""


def exact_floors(mixture, n: int, *, repeats: int = EXACT_FLOOR_REPEATS, seed: int = 777,
                 quantile: float = FLOOR_QUANTILE, mmd_bandwidth: float | None = None,
                 ref_values: dict | None = None) -> dict:
    """The noise floors of a sample size: what an exact sampler scores, as a function of (target, n) only.

    Each of ``repeats`` rounds draws two *fresh* exact sets of size ``n`` (neither is a fixed reference set):
    W2 and MMD^2 between them, mode TV, and the deviations of spread, on-manifold fraction and NLL of the first
    from the population values (``ref_values``, default :func:`reference_values`).  Per metric of
    :data:`FLOOR_METRICS`: ``mean``, ``sd``, ``threshold`` = the ``quantile`` of the exact scores (0.995: an exact
    sampler lies above it once in two hundred sets), its bootstrap interval ``threshold_ci`` (from
    :mod:`dmcmc_edu.evaluation.uncertainty`), and ``pass_rate`` -- the fraction of the exact rounds inside it.
    ``all_pass_rate``: the fraction of exact rounds with all seven metrics inside (the metrics are correlated,
    so it lies between ``quantile`` ** 7 and ``quantile``).

    Deterministic in (mixture, n, repeats, seed, quantile, mmd_bandwidth): two notebooks that ask for the floor
    of the same size get the same numbers.  The MMD kernel defaults to the median heuristic on the first pair.
    """
    if int(repeats) < 20:
        raise ValueError(f"exact_floors: repeats={repeats}; a floor needs at least 20 exact pairs")
    g = torch.Generator().manual_seed(int(seed))
    ref_values = ref_values if ref_values is not None else reference_values(mixture)
    vals = {k: [] for k in FLOOR_METRICS}
    bw = mmd_bandwidth
    for _ in range(int(repeats)):
        x, y = mixture.sample(n, g), mixture.sample(n, g)
        if bw is None:
            bw = median_bandwidth(x, y)
        e = evaluate(mixture, x, y, ref_values, mmd_bandwidth=bw)  # y plays the reference set
        for k, how in FLOOR_METRICS.items():
            vals[k].append(e[k] if how == "value" else e[f"{k}_dev"])
    out, inside = {}, np.ones(int(repeats), dtype=bool)
    for k, v in vals.items():
        v = np.asarray(v)
        ci = floor_interval(v, quantile)
        inside &= v <= ci.estimate
        out[k] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "threshold": ci.estimate,
                  "threshold_ci": [ci.low, ci.high], "read_as": FLOOR_METRICS[k], "repeats": int(v.size),
                  "quantile": float(quantile), "pass_rate": float(np.mean(v <= ci.estimate))}
    out.update(n=int(n), quantile=float(quantile), mmd_bandwidth=bw, repeats=int(repeats), seed=int(seed),
               kind="exact_pairs", all_pass_rate=float(inside.mean()))
    return out


def within_floors(result: dict, floors: dict, targets: dict | None = None) -> dict:
    """Which metrics of an :func:`evaluate` result lie inside their noise floors (or inside ``targets``).

    Returns ``{metric: bool}`` plus ``"all"``.  ``targets`` (same keys) can
    replace a threshold, e.g. by the best quality an integrator reaches.
    """
    ok = {}
    for k, how in FLOOR_METRICS.items():
        v = result[k] if how == "value" else result.get(f"{k}_dev", float("nan"))
        thr = floors[k]["threshold"] if targets is None or k not in targets else targets[k]
        ok[k] = bool(np.isfinite(v) and v <= thr)
    ok["all"] = all(ok.values())
    return ok


def summary(mixture, x, generator=None, w2_n: int = 1000) -> dict:
    """All metrics of a sample set, with the exact-sample references (noise floors) beside them."""
    x = _as_mix(mixture, x, "summary")
    g = generator if generator is not None else torch.Generator().manual_seed(12345)
    n = min(len(x), w2_n)
    ref = mixture.sample(len(x), g)
    return {
        "n": len(x),
        "w2": w2(x[:n], mixture.sample(n, g)),
        "w2_floor": w2(ref[:n], mixture.sample(n, g)),
        "mode_tv": mode_weight_tv(mixture, x),
        "mode_tv_exact": mode_weight_tv(mixture, ref),
        "spread": spread(mixture, x),
        "spread_exact": spread(mixture, ref),
        "nll": nll(mixture, x),
        "nll_exact": nll(mixture, ref),
    }
