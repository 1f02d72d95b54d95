"""Sample-quality metrics with exact ground truth (for the analytic mixtures).

Each metric says what it catches and what it misses:

* :func:`w2` -- Wasserstein-2 between two equal-size sample sets by exact
  optimal transport (an assignment problem).  Catches any difference in
  distribution; misses nothing in principle but is noisy: compare with
  :func:`w2_noise_floor` (W2 between two exact sample sets of the same size).
* :func:`mode_weight_tv` -- total variation between the empirical component
  weights (each sample assigned to its most responsible component at sigma=0)
  and the true weights.  Catches wrong mode proportions; misses everything
  inside a mode.
* :func:`spread` -- median squared Mahalanobis radius to the assigned
  component over the chi-square_d median; 1 for exact samples, < 1 when
  samples collapse toward the means (which on-manifold fractions and NLL
  *reward*), > 1 when they are too wide.  Misses mode weights.
* :func:`nll` -- mean negative log-likelihood under p_0, against that of exact
  samples.  Catches off-manifold samples; rewards collapse (see spread).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["w2", "w2_noise_floor", "mode_weights", "mode_weight_tv", "spread", "nll", "summary"]


def _np(x):
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def w2(a, b) -> float:
    """Exact W2 between two point clouds of the same size n (uniform weights): an optimal assignment."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    a, b = _np(a).reshape(len(a), -1), _np(b).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"w2 needs two sets of the same shape, got {a.shape} and {b.shape}")
    cost = cdist(a, b, "sqeuclidean")
    r, c = linear_sum_assignment(cost)
    return float(np.sqrt(cost[r, c].mean()))


def w2_noise_floor(mixture, n: int, generator=None, repeats: int = 3) -> float:
    """Mean W2 between two independent exact sample sets of size n (what a perfect sampler scores)."""
    vals = [w2(mixture.sample(n, generator), mixture.sample(n, generator)) for _ in range(repeats)]
    return float(np.mean(vals))


def mode_weights(mixture, x) -> torch.Tensor:
    """Empirical component weights, assigning each sample by responsibility at sigma = 0."""
    lab = mixture.assign(torch.as_tensor(x, dtype=mixture.dtype))
    return torch.bincount(lab, minlength=mixture.K).to(torch.float64) / len(lab)


def mode_weight_tv(mixture, x) -> float:
    """Total variation between the empirical and the true component weights."""
    return float(0.5 * (mode_weights(mixture, x) - mixture.weights.to(torch.float64).cpu()).abs().sum())


def spread(mixture, x) -> float:
    """Median squared Mahalanobis radius to the assigned component over the chi-square_d median (1 = exact)."""
    from scipy.stats import chi2

    x = torch.as_tensor(x, dtype=mixture.dtype)
    m2 = mixture.mahalanobis_sq(x, mixture.assign(x))
    return float(m2.median() / chi2.median(mixture.d))


def nll(mixture, x) -> float:
    """Mean negative log-likelihood under p_0."""
    return float(-mixture.log_prob(torch.as_tensor(x, dtype=mixture.dtype), 0.0).mean())


def summary(mixture, x, generator=None, w2_n: int = 1000) -> dict:
    """All metrics of a sample set, with the exact-sample references (noise floors) beside them."""
    x = torch.as_tensor(x, dtype=mixture.dtype)
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
