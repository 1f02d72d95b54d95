"""The predictor-corrector (PC) sampler of Song et al. (2021), score_sde's default: not one of the paper's six.

Each step of the reverse-diffusion predictor (:func:`~dmcmc_edu.core.integrators.reverse_diffusion`)
is preceded by ``corrector_steps`` Langevin corrector steps at the current noise level.
Registered as ``"pc"``: NFE = steps * (1 + corrector_steps).
"""

from __future__ import annotations

from dmcmc_edu.core.contract import as_sigma_batch, per_sample
from dmcmc_edu.core.integrators import reverse_diffusion
from dmcmc_edu.core.random import normal

__all__ = ["langevin_corrector", "predictor_corrector"]


def langevin_corrector(model, x, sigma, n_steps=1, *, snr=0.16, generator=None):
    """Langevin corrector of Song et al. (2021), VE form, at fixed per-sample ``sigma``.

    Step size: score_sde uses ``eps = 2 (snr ||z|| / ||score||)^2`` with the
    norms averaged over a batch that shares one sigma.  With one sigma per
    sample we use the scale-free quantity ``sigma^2 ||score||^2`` (about d at
    every noise level), averaged over the batch:
    ``eps_b = 2 snr^2 sigma_b^2 mean||z||^2 / mean(sigma^2 ||score||^2)``.
    This equals score_sde's rule when all sigmas are equal (up to mean of
    squares vs. square of means) and, unlike a per-sample ratio, stays stable
    in low dimension.  ``x <- x + eps score + sqrt(2 eps) z``.
    Returns the corrected x; evaluations are counted by the caller's wrapper.
    """
    sigma = as_sigma_batch(sigma, x)
    for _ in range(n_steps):
        score = (model(x, sigma) - x) / per_sample(sigma, x) ** 2
        z = normal(x.shape, generator, x.dtype, x.device)
        g2 = (score.reshape(x.shape[0], -1) ** 2).sum(dim=1) * sigma**2
        z2 = (z.reshape(x.shape[0], -1) ** 2).sum(dim=1)
        step = 2.0 * snr**2 * sigma**2 * z2.mean() / g2.mean().clamp(min=1e-30)
        x = x + per_sample(step, x) * score + per_sample((2 * step).sqrt(), x) * z
    return x


def predictor_corrector(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None,
                        callback=None, corrector_steps=1, snr=0.16):
    """Song et al. (2021) PC sampler: reverse-diffusion predictor + Langevin corrector (score_sde's default)."""

    def corrector(D, x, sigma):
        return langevin_corrector(D, x, sigma, corrector_steps, snr=snr, generator=generator)

    x, info = reverse_diffusion(model, x, sigma_start, sigma_min, steps, sigmas=sigmas, generator=generator,
                                callback=callback, corrector=corrector if corrector_steps else None)
    info.name = "pc"
    if corrector_steps:
        info.extra.update(corrector_steps=corrector_steps, snr=snr)
    return x, info
