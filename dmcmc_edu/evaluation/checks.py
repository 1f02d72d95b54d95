"""The guards every score passes through: a broken sample set, or broken statistics, get no number.

A NaN in a sample set does not always propagate to the score computed from
it: an optimal-transport solver fed a NaN cost can stop at once and report a
cost of 0, an argmax over NaN responsibilities still returns a component, a
median skips nothing and a comparison with NaN is simply false.  So a metric
could hand a diverged sampler a perfect score.  The functions here make the
failure loud instead:

* :func:`require_finite` -- refuse samples (or any per-row values) holding
  NaN or an infinity, saying how many rows are bad;
* :func:`require_finite_stats` -- the same for the Gaussian statistics
  ``(mu, sigma)`` that a Fréchet distance (FID) is computed from;
* :func:`checked_frechet` -- refuse a Fréchet distance that came out NaN,
  infinite or negative by more than round-off.

All raise :class:`ValueError` with a one-line message.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dmcmc_edu.core.contract import nonfinite_rows

__all__ = ["require_finite", "require_finite_stats", "checked_frechet", "FRECHET_RTOL"]

FRECHET_RTOL = 1e-6
"""How negative a Fréchet distance may come out, relative to the size of its terms, before it counts as broken."""


def _tensor(x) -> torch.Tensor:
    """A tensor view of ``x`` (a tensor, an array or nested lists), without copying a tensor."""
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def require_finite(x, what: str, kind: str = "samples"):
    """Return ``x`` unchanged when every row (entry along the first axis) is finite; else raise ``ValueError``.

    ``what`` names the caller (e.g. ``"w2"``) and ``kind`` the rows (e.g.
    ``"samples"``, ``"chosen sigmas"``); the message says how many rows of how
    many hold NaN or inf.  Accepts tensors, arrays and nested lists; an empty
    set passes (the caller decides whether it is too small).
    """
    t = _tensor(x)
    if t.numel() == 0:
        return x
    t = t.reshape(1) if t.ndim == 0 else t
    n_bad = len(nonfinite_rows(t))
    if n_bad:
        raise ValueError(f"{what}: {n_bad} of {t.shape[0]} {kind} hold NaN or inf; a broken sample set has no score")
    return x


def require_finite_stats(mu, sigma, what: str) -> None:
    """Refuse Gaussian statistics (mean ``[d]``, covariance ``[d, d]``) holding NaN or inf; ``what`` names them."""
    for name, v in (("mean", mu), ("covariance", sigma)):
        t = _tensor(v)
        n_bad = int((~torch.isfinite(t)).sum())
        if n_bad:
            raise ValueError(f"{what}: the feature {name} has {n_bad} of {t.numel()} entries NaN or inf; "
                             "broken statistics have no FID")


def checked_frechet(value: float, scale: float, what: str) -> float:
    """Return a Fréchet distance ``value`` if it is finite and not negative beyond round-off; else raise.

    ``scale`` is the size of the terms the distance is a difference of
    (``|mu1 - mu2|^2 + tr S1 + tr S2``); a value down to ``-FRECHET_RTOL * scale``
    is round-off of an exact 0 and is returned as it is.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what}: the Fréchet distance came out {value}; the statistics are broken (no FID)")
    if value < -FRECHET_RTOL * max(abs(float(scale)), 1e-300):
        raise ValueError(f"{what}: the Fréchet distance came out negative ({value:.6g}, terms of size "
                         f"{float(scale):.6g}); a covariance is not positive semi-definite (no FID)")
    return value
