"""Does a noise range fit the data's scale?  One check for the command line and the Python API.

A denoising sampler starts from ``sigma_max z`` and ends at ``sigma_min``; both have to be set against the
data's own scale, or the run returns garbage without an error:

* ``sigma_max`` below the data's **spread** (its total standard deviation along the widest direction: the
  square root of the largest eigenvalue of the mixture's total covariance, between-component spread included)
  never covers the data: the samples do not find the far modes (the ring's 8 modes with ``sigma_max`` 0.02: a
  spread of 182 against 1.09 exact) -- refused;  below three times the spread it is only a warning;
* ``sigma_min`` at or above the spread blurs the data into one blob: every sample ends near the mean (a range
  of [79.9, 80] on the ring) -- refused;  above the **finest scale** (the smallest component standard deviation)
  the finest structure is smoothed, and a range narrower than a factor 10 leaves too few decades to denoise
  -- warnings.

:func:`sigma_scale_problems` returns the problems, :func:`check_sigma_scale` raises the first refusal as a
``ValueError`` (one line, with the suggested range: the target's ``default_sigma_min/max``) and issues the
warnings as :class:`SigmaScaleWarning`.  The CLI (``sample``, ``sample-distributed``, ``train-classifier``) and
:func:`dmcmc_edu.targets.dlg_config` call it.
"""

from __future__ import annotations

import math
import warnings

import torch

__all__ = ["SigmaScaleWarning", "data_scale", "sigma_scale_problems", "check_sigma_scale"]


class SigmaScaleWarning(UserWarning):
    """A noise range that runs, but is far from what the data's scale suggests."""


def data_scale(mixture) -> dict:
    """``{"spread", "finest", "mean_norm"}`` of a Gaussian mixture, from its weights, means and covariances.

    ``spread``: the square root of the largest eigenvalue of the total covariance ``sum_k w_k (Sigma_k + mu_k
    mu_k^T) - mu mu^T``; ``finest``: the square root of the smallest positive component eigenvalue.
    """
    w = mixture.weights.double()
    mu = mixture.means.double()
    cov = mixture.covariances.double()
    mean = (w[:, None] * mu).sum(0)
    total = (w[:, None, None] * (cov + mu[:, :, None] * mu[:, None, :])).sum(0) - mean[:, None] * mean[None, :]
    spread = math.sqrt(max(float(torch.linalg.eigvalsh(total).max()), 0.0))
    finest = math.sqrt(mixture.eigenvalue_range()[0])
    return {"spread": spread, "finest": finest, "mean_norm": float(mean.norm())}


def _suggested(mixture) -> str:
    return f"[{mixture.default_sigma_min():.3g}, {mixture.default_sigma_max():.3g}] (the target's default)"


def sigma_scale_problems(sigma_min: float, sigma_max: float, mixture, names=("sigma_min", "sigma_max")
                         ) -> tuple[list[str], list[str]]:
    """``(refusals, warnings)``: one sentence each about ``[sigma_min, sigma_max]`` against the mixture's scale.

    ``names`` are the names of the two settings as the caller's user knows them (``--sigma-min`` on the CLI).
    """
    s = data_scale(mixture)
    lo, hi = names
    refusals, warns = [], []
    suggest = f"; a range that fits this target: {_suggested(mixture)}"
    if sigma_max < s["spread"]:
        refusals.append(f"{hi} {sigma_max:g} is below the data's spread (total standard deviation {s['spread']:.3g}):"
                        f" the noise never covers the data and the samples miss its far modes{suggest}")
    elif sigma_max < 3 * s["spread"]:
        warns.append(f"{hi} {sigma_max:g} is less than 3 times the data's spread ({s['spread']:.3g}): the start "
                     f"sigma_max z may not cover every mode{suggest}")
    if sigma_min >= s["spread"]:
        refusals.append(f"{lo} {sigma_min:g} is at or above the data's spread ({s['spread']:.3g}): the data is "
                        f"blurred into one blob and every sample ends near the mean{suggest}")
    else:
        if sigma_min > s["finest"]:
            warns.append(f"{lo} {sigma_min:g} is above the data's finest scale (smallest component standard "
                         f"deviation {s['finest']:.3g}): that structure is smoothed away{suggest}")
        if sigma_max < 10 * sigma_min:
            warns.append(f"the range [{sigma_min:g}, {sigma_max:g}] spans less than a factor 10: too narrow to "
                         f"denoise{suggest}")
    return refusals, warns


def check_sigma_scale(sigma_min: float, sigma_max: float, mixture, names=("sigma_min", "sigma_max"),
                      warn=None) -> list[str]:
    """Refuse (``ValueError``) a noise range far outside the mixture's scale; warn about one that is doubtful.

    ``warn(message)`` reports each warning (default: ``warnings.warn(message, SigmaScaleWarning)``); returns the
    warnings.  See the module's docstring for the rules.
    """
    refusals, warns = sigma_scale_problems(sigma_min, sigma_max, mixture, names)
    if refusals:
        raise ValueError(refusals[0])
    for message in warns:
        if warn is None:
            warnings.warn(message, SigmaScaleWarning, stacklevel=2)
        else:
            warn(message)
    return warns
