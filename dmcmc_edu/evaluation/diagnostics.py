"""Chain diagnostics for DLG runs: autocorrelation, effective sample size, mode switches.

Outputs of one chain are correlated (consecutive outputs are ``n_skip`` Gibbs
steps apart).  These functions take per-chain series of shape ``[T, C]``
(T outputs or steps of C chains) -- e.g. the chosen sigma of every output, or
the mixture component that each denoised output falls in -- and say how many
*independent* samples a run is worth.

* :func:`autocorrelation` -- lag-k autocorrelation pooled over chains (the
  series is centred by its overall mean, so a chain stuck in one mode shows a
  correlation near 1 even if it never moves).
* :func:`effective_sample_size` -- ``C T / (1 + 2 sum_k rho_k)`` with Geyer's
  initial-positive-sequence truncation; ``C T`` for independent outputs,
  about ``C`` when every chain repeats itself.
* :func:`mode_switch_rate` -- fraction of consecutive outputs of a chain that
  land in a different component.
* :func:`chain_report` -- all of the above for a :class:`~dmcmc_edu.core.sampler.DMCMCResult`.

A series holding NaN or inf is refused with a ``ValueError`` (left alone, a
NaN autocorrelation would make the ESS come out as "every output
independent").
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from dmcmc_edu.evaluation.checks import require_finite

__all__ = ["as_chains", "autocorrelation", "effective_sample_size", "label_autocorrelation", "mode_switch_rate",
           "chain_report", "plot_autocorrelation"]


def as_chains(values, n_chains: int) -> np.ndarray:
    """Reshape outputs ordered round by round (``r * C + c``) into ``[T, C]``."""
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if v.shape[0] % n_chains:
        raise ValueError(f"{v.shape[0]} outputs do not split into {n_chains} chains")
    return v.reshape(-1, n_chains, *v.shape[1:])


def autocorrelation(series, max_lag: int | None = None) -> np.ndarray:
    """Autocorrelation ``rho_k`` for k = 0..max_lag of a ``[T, C]`` series, pooled over chains.

    For categorical series (component labels) pass one-hot columns summed, or use
    the label itself when "same vs different" is what matters; for labels this
    function is applied to the indicator of each component and averaged,
    weighted by its variance (see :func:`chain_report`).
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"series must have shape [T, C], got {x.shape}")
    require_finite(x.ravel(), "autocorrelation", "values")
    T = x.shape[0]
    max_lag = T - 1 if max_lag is None else min(max_lag, T - 1)
    x = x - x.mean()
    var = (x * x).mean()
    if var == 0:
        return np.ones(max_lag + 1)
    # the standard (biased) estimator: lag-k products summed and divided by T, not T - k; it keeps the
    # estimated autocorrelation positive-definite and gives ESS = C for chains that repeat one value
    return np.array([(x[: T - k] * x[k:]).sum() / x.size / var for k in range(max_lag + 1)])


def _ess_from_rho(rho: np.ndarray, n_total: int) -> float:
    # Geyer: sum pairs rho_{2m} + rho_{2m+1} while positive
    s = 0.0
    for m in range(0, len(rho) - 1, 2):
        pair = rho[m] + rho[m + 1]
        if pair <= 0:
            break
        s += pair
    tau = max(2 * s - 1, 1.0 / n_total)  # integrated autocorrelation time (rho_0 = 1 counted once)
    return float(min(n_total, n_total / tau))


def effective_sample_size(series) -> float:
    """ESS of a ``[T, C]`` real series (pooled autocorrelation, Geyer truncation); at most T * C."""
    x = np.asarray(series, dtype=np.float64)
    return _ess_from_rho(autocorrelation(x), x.size)


def label_autocorrelation(labels, K: int, max_lag: int | None = None) -> np.ndarray | None:
    """Autocorrelation of ``[T, C]`` component labels: the mean over the K component indicators, variance-weighted.

    ``None`` when no indicator varies (every output in one component).
    """
    labels = np.asarray(labels)
    require_finite(labels.ravel(), "label_autocorrelation", "labels")
    rhos, weights = [], []
    for k in range(K):
        ind = (labels == k).astype(np.float64)
        v = ind.var()
        if v > 0:
            rhos.append(autocorrelation(ind, max_lag))
            weights.append(v)
    if not rhos:
        return None
    return np.average(np.stack(rhos), axis=0, weights=weights)


def _label_ess(labels: np.ndarray, K: int, rho: np.ndarray | None = None) -> float:
    """ESS for categorical labels from :func:`label_autocorrelation` (pass ``rho`` if it is already computed)."""
    T, C = labels.shape
    if rho is None:
        rho = label_autocorrelation(labels, K)
    if rho is None:
        return float(C)  # every output in one component: nothing varies, count chains
    return _ess_from_rho(rho, T * C)


def mode_switch_rate(labels) -> float:
    """Fraction of consecutive outputs of a chain (``[T, C]`` labels) that change component."""
    lab = np.asarray(labels)
    require_finite(lab.ravel(), "mode_switch_rate", "labels")
    if lab.shape[0] < 2:
        return float("nan")
    return float((lab[1:] != lab[:-1]).mean())


def chain_report(result, mixture=None) -> dict:
    """Diagnostics of a DMCMC run: ESS of the chosen sigma and (with a mixture) of the output component.

    Returns ``{"n_outputs", "n_chains", "ess_sigma", "ess_component", "mode_switch_rate",
    "lag1_sigma", "lag1_component"}`` (component entries only with ``mixture``).
    """
    require_finite(result.samples, "chain_report")
    C = int(result.chain.max()) + 1
    sig = np.log(as_chains(result.chosen_sigma, C))
    rep = {"n_outputs": int(result.samples.shape[0]), "n_chains": C,
           "ess_sigma": effective_sample_size(sig),
           "lag1_sigma": float(autocorrelation(sig, 1)[-1]) if sig.shape[0] > 1 else float("nan")}
    if mixture is not None:
        lab = as_chains(mixture.assign(result.samples.to(mixture.dtype)), C)
        rep["ess_component"] = _label_ess(lab, mixture.K)
        rep["mode_switch_rate"] = mode_switch_rate(lab)
        onehot_rho = [autocorrelation((lab == k).astype(float), 1)[-1] for k in range(mixture.K)
                      if (lab == k).any() and not (lab == k).all()]
        rep["lag1_component"] = float(np.mean(onehot_rho)) if onehot_rho and lab.shape[0] > 1 else float("nan")
    return rep


def plot_autocorrelation(series, ax=None, max_lag: int = 20, label=None):
    """Bar plot of the pooled autocorrelation of a ``[T, C]`` series."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    rho = autocorrelation(series, max_lag)
    ax.bar(np.arange(len(rho)), rho, alpha=0.6, label=label)
    ax.set_xlabel("lag (outputs)")
    ax.set_ylabel("autocorrelation")
    return ax
