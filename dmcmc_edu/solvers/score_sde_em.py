"""Euler-Maruyama on the VE reverse SDE as score_sde discretises it (registered as ``"em_score_sde"``).

score_sde (Song et al. 2021) runs its ``EulerMaruyamaPredictor`` on ``timesteps = linspace(T, eps, N)`` with a
fixed ``dt = -1/N`` and, with ``denoise=True``, returns the *mean* of the last step.  For the VE SDE,
``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` and ``g(t)^2 = 2 sigma(t)^2 log(sigma_max / sigma_min)``, so one
step at ``sigma_i`` with ``h = log(sigma_start / sigma_min) / N`` reads

    mean = x + 2 h (D(x, sigma_i) - x),        x = mean + sigma_i sqrt(2 h) z.

Here each sample runs from its own ``sigma_start``: the N evaluation levels are geometric from ``sigma_start`` to
``sigma_min`` inclusive (score_sde's ``eps`` is taken as 0, so the last level is ``sigma_min`` exactly).  The
result is the last mean, which already is denoised: the integrator reports ``sigma_end = 0`` and no Tweedie step
follows.  The paper's six keep :func:`~dmcmc_edu.core.integrators.euler_maruyama` (noise on every step, then
Tweedie); the ladder uses that one.  NFE = steps.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import CountingDenoiser, as_sigma_batch, check_x, per_sample
from dmcmc_edu.core.integrators import IntegratorInfo
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.schedules import check_start

__all__ = ["euler_maruyama_score_sde"]


def euler_maruyama_score_sde(model, x, sigma_start, sigma_min, steps, *, generator=None, callback=None):
    """score_sde's Euler-Maruyama from a per-sample ``sigma_start``; returns the last step's mean (see the module)."""
    check_x(x)
    sigma_start = check_start(as_sigma_batch(sigma_start, x, "sigma_start"), sigma_min, steps)
    D = CountingDenoiser(model, n_samples=x.shape[0])
    log_hi = torch.log(sigma_start)
    log_lo = torch.log(torch.full_like(sigma_start, sigma_min))
    h = (log_hi - log_lo) / steps
    t = torch.linspace(0.0, 1.0, steps, dtype=x.dtype, device=x.device)
    mean = x
    for i in range(steps):
        sigma = torch.exp(log_hi + t[i] * (log_lo - log_hi))
        denoised = D(x, sigma)
        mean = x + per_sample(2 * h, x) * (denoised - x)
        x = mean + per_sample(sigma * (2 * h).sqrt(), x) * normal(x.shape, generator, x.dtype, x.device)
        if callback is not None:
            callback({"i": i, "x": mean, "sigma": sigma, "denoised": denoised})
    return mean, IntegratorInfo("em_score_sde", D.nfe, steps, 0.0, {"discretisation": "score_sde"})
