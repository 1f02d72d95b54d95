"""DPM-Solver++(2M) and its SDE form (Lu et al. 2022), each from a per-sample ``sigma_start``.

Both run on given levels ``sigmas`` ``[B, N + 1]`` or, by default, on the Karras et al. (2022) rho-schedule of
:func:`~dmcmc_edu.core.schedules.karras_sigmas`: ``steps`` levels from ``sigma_start`` down to ``sigma_min``, then
0.  A step to 0 is the data prediction itself, ``x <- D(x, sigma_min)`` (the Tweedie step), so by default both end
at sigma = 0 and cost exactly ``steps`` evaluations per sample (no extra Tweedie step follows); on levels that end
above 0 every step is a solver step and the Tweedie step follows (N + 1 evaluations in all).  The default is the
layout of k-diffusion's ``sample_dpmpp_2m`` / ``sample_dpmpp_2m_sde`` on ``get_sigmas_karras(steps, sigma_min,
sigma_start)``, which ``tests/test_modern_solvers.py`` matches to 1e-10 in float64.

Symbols: ``D(x, sigma)`` the denoiser (the data prediction x_theta of the paper, with alpha = 1 in the VE
form), ``lambda = -log sigma`` (half the log-SNR), ``h_i = lambda_{i+1} - lambda_i > 0``.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import per_sample
from dmcmc_edu.core.integrators import IntegratorInfo, _after_step, _karras, _prepare
from dmcmc_edu.core.random import normal

__all__ = ["dpmpp_2m", "dpmpp_2m_sde"]

_SDE_SOLVER_TYPES = ("midpoint", "heun")


def _multistep(name, model, x, sigma_start, sigma_min, steps, sigmas, rho, callback, update):
    """The loop both share: ``D_i = D(x, s_i)``; ``x = update(x, D_i, D_{i-1}, s_i, s_{i+1}, h_i, h_{i-1})``,
    or ``x = D_i`` on a step to 0; ``h = log(s_i / s_{i+1})``, ``D_{-1} = h_{-1} = None``.  Returns ``(x, info)``."""
    sig, D = _prepare(name, model, x, sigma_start, sigma_min, steps, sigmas, _karras(rho))
    n, end = sig.shape[1] - 1, float(sig[0, -1])
    old, h_last = None, None
    for i in range(n):
        s, s_next = sig[:, i], sig[:, i + 1]
        den = D(x, s)
        if i == n - 1 and end == 0:  # sigma_next = 0: the data prediction is the sample
            x = den
        else:
            h = torch.log(s) - torch.log(s_next)
            x = update(x, den, old, s, s_next, h, h_last)
            h_last = h
        old = den
        _after_step(name, i, x, s_next, den, callback)
    return x, IntegratorInfo(name, D.nfe, n, end, {"rho": rho})


def dpmpp_2m(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None, callback=None,
             rho=7.0):
    """DPM-Solver++(2M): the second-order multistep exponential integrator on the data prediction.

    Lu et al. (2022), *DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models*
    (arXiv 2211.01095), Algorithm 2, in the VE form (alpha = 1)::

        D_i = D(x_i, sigma_i),   h_i = lambda_{i+1} - lambda_i,   r_i = h_{i-1} / h_i
        x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h_i} - 1) [(1 + 1/(2 r_i)) D_i - 1/(2 r_i) D_{i-1}]

    The first step uses D_i alone (DPM-Solver++(1) = DDIM); a last step to sigma = 0 is ``x = D_i``.
    NFE = N (the steps); ends at 0 by default.  ``generator`` is unused (deterministic).
    """

    def update(x, den, old, s, s_next, h, h_last):
        if old is not None:  # (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}, r = h_{i-1} / h_i
            c = per_sample(1.0 / (2.0 * (h_last / h)), x)
            den = (1.0 + c) * den - c * old
        return per_sample(s_next / s, x) * x - per_sample(torch.expm1(-h), x) * den

    return _multistep("dpmpp_2m", model, x, sigma_start, sigma_min, steps, sigmas, rho, callback, update)


def dpmpp_2m_sde(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None,
                 callback=None, rho=7.0, eta=1.0, s_noise=1.0, solver_type="midpoint"):
    """DPM-Solver++(2M) SDE: the multistep second-order solver of the reverse SDE, data prediction.

    The SDE form of DPM-Solver++ (Lu et al. 2022, arXiv 2211.01095; the ``sde-dpmsolver++`` variant its authors
    added to diffusers, and k-diffusion's ``sample_dpmpp_2m_sde``), VE form, with ``eta`` scaling the injected
    noise (eta = 1: the reverse SDE; eta = 0: DPM-Solver++(2M) with the first-order multistep correction)::

        h_i = lambda_{i+1} - lambda_i,   g_i = (1 + eta) h_i,   r_i = h_{i-1} / h_i
        x_{i+1} = (sigma_{i+1} / sigma_i) e^{-eta h_i} x_i + (1 - e^{-g_i}) D_i
                  + c_i (1 / r_i) (D_i - D_{i-1})
                  + s_noise sigma_{i+1} sqrt(1 - e^{-2 eta h_i}) z_i,         z_i ~ N(0, I)

    with ``c_i = (1 - e^{-g_i}) / 2`` (``solver_type="midpoint"``) or ``c_i = (1 - e^{-g_i}) / (-g_i) + 1``
    (``"heun"``).  The first step has no correction term; a last step to sigma = 0 is ``x = D_i`` (no
    noise).  One normal draw per step but such a last one, from ``generator`` (or one generator per sample).
    NFE = N (the steps); ends at 0 by default.
    """
    if solver_type not in _SDE_SOLVER_TYPES:
        raise ValueError(f"dpmpp_2m_sde: solver_type must be one of {', '.join(_SDE_SOLVER_TYPES)}, "
                         f"got {solver_type!r}")
    if not (eta >= 0 and s_noise >= 0):
        raise ValueError(f"dpmpp_2m_sde: eta and s_noise must be >= 0, got eta={eta!r}, s_noise={s_noise!r}")

    def update(x, den, old, s, s_next, h, h_last):
        g = h + eta * h
        one_minus = -torch.expm1(-g)  # 1 - e^{-(1 + eta) h}
        x = per_sample(s_next / s * torch.exp(-eta * h), x) * x + per_sample(one_minus, x) * den
        if old is not None:
            c = 0.5 * one_minus if solver_type == "midpoint" else one_minus / (-g) + 1.0
            x = x + per_sample(c * h / h_last, x) * (den - old)
        if eta:
            amp = s_next * (-torch.expm1(-2.0 * eta * h)).sqrt() * s_noise
            x = x + per_sample(amp, x) * normal(x.shape, generator, x.dtype, x.device)
        return x

    x, info = _multistep("dpmpp_2m_sde", model, x, sigma_start, sigma_min, steps, sigmas, rho, callback, update)
    info.extra.update(eta=eta, s_noise=s_noise, solver_type=solver_type)
    return x, info
