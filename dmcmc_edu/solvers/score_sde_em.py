"""Euler-Maruyama on the VE reverse SDE as score_sde discretises it (registered as ``"em_score_sde"``).

score_sde (Song et al. 2021) runs its ``EulerMaruyamaPredictor`` on ``timesteps = linspace(T, eps, N)`` with a
fixed ``dt = -1/N`` and, with ``denoise=True``, returns the *mean* of the last step.  For the VE SDE,
``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` and ``g(t)^2 = 2 sigma(t)^2 log(sigma_max / sigma_min)``, so one
step at ``sigma_i`` with ``h = log(sigma_start / sigma_min) / N`` reads

    mean = x + 2 h (D(x, sigma_i) - x),        x = mean + sigma_i sqrt(2 h) z.

Here each sample runs from its own ``sigma_start``: the N evaluation levels are geometric from ``sigma_start`` to
``sigma_min`` inclusive (score_sde's ``eps`` is taken as 0, so the last level is ``sigma_min`` exactly).  The
result is the last mean, which already is denoised: the integrator reports ``sigma_end = 0`` and no Tweedie step
follows.

Levels of your own come as ``sigmas`` ``[B, N + 1]``: the N evaluation levels, then 0 (the layout of
:func:`~dmcmc_edu.core.schedules.karras_sigmas`; ``geometric_sigmas(start, sigma_min, N - 1, append_zero=True)``
is the default).  score_sde's fixed step covers the whole span in N equal parts while its N levels make N - 1
gaps; on any levels this reads ``h_i = (N - 1)/N log(sigma_i / sigma_{i+1})`` and, for the last level,
``h_{N-1} = log(sigma_0 / sigma_{N-1}) / N`` (for geometric levels every ``h_i`` is score_sde's).  N >= 2.

The paper's six keep :func:`~dmcmc_edu.core.integrators.euler_maruyama` (noise on every step, then Tweedie); the
ladder uses that one.  NFE = N.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import per_sample
from dmcmc_edu.core.integrators import IntegratorInfo, _prepare
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.schedules import geometric_sigmas

__all__ = ["euler_maruyama_score_sde"]


def _levels(start, sigma_min, steps):
    return geometric_sigmas(start, sigma_min, steps - 1, append_zero=True)


def euler_maruyama_score_sde(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None,
                             callback=None):
    """score_sde's Euler-Maruyama from a per-sample ``sigma_start``; returns the last step's mean (see the module)."""
    sig, D = _prepare("em_score_sde", model, x, sigma_start, sigma_min, steps, sigmas, _levels, min_steps=2)
    if float(sig[0, -1]) != 0:
        raise ValueError("em_score_sde: sigmas must end at 0 (the N evaluation levels, then 0)")
    n = sig.shape[1] - 1
    log_sig = torch.log(sig[:, :n])
    gaps = torch.cat([log_sig[:, :-1] - log_sig[:, 1:], (log_sig[:, :1] - log_sig[:, -1:]) / (n - 1)], dim=1)
    h = gaps * ((n - 1) / n)
    mean = x
    for i in range(n):
        sigma = sig[:, i]
        denoised = D(x, sigma)
        mean = x + per_sample(2 * h[:, i], x) * (denoised - x)
        x = mean + per_sample(sigma * (2 * h[:, i]).sqrt(), x) * normal(x.shape, generator, x.dtype, x.device)
        if callback is not None:
            callback({"i": i, "x": mean, "sigma": sigma, "denoised": denoised})
    return mean, IntegratorInfo("em_score_sde", D.nfe, n, 0.0, {"discretisation": "score_sde"})
