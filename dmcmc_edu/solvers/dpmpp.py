"""DPM-Solver++(2M) and its SDE form (Lu et al. 2022), each from a per-sample ``sigma_start``.

Both run on the Karras et al. (2022) rho-schedule of :func:`~dmcmc_edu.core.schedules.karras_sigmas`: ``steps``
levels from ``sigma_start`` down to ``sigma_min``, then 0.  The step from the last level to 0 is the data
prediction itself, ``x <- D(x, sigma_min)`` (the Tweedie step), so both end at sigma = 0 and cost exactly
``steps`` evaluations per sample (no extra Tweedie step follows).  This is the layout of k-diffusion's
``sample_dpmpp_2m`` / ``sample_dpmpp_2m_sde`` on ``get_sigmas_karras(steps, sigma_min, sigma_start)``, which
``tests/test_modern_solvers.py`` matches to 1e-10 in float64.

Symbols: ``D(x, sigma)`` the denoiser (the data prediction x_theta of the paper, with alpha = 1 in the VE
form), ``lambda = -log sigma`` (half the log-SNR), ``h_i = lambda_{i+1} - lambda_i > 0``.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import per_sample
from dmcmc_edu.core.integrators import IntegratorInfo, _after_step, _prepare
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.schedules import karras_sigmas

__all__ = ["dpmpp_2m", "dpmpp_2m_sde"]

_SDE_SOLVER_TYPES = ("midpoint", "heun")


def _second_order_data(den, old, h, h_last, x):
    """DPM-Solver++(2M)'s corrected data prediction ``(1 + 1/(2r)) D_i - 1/(2r) D_{i-1}``, ``r = h_{i-1}/h_i``."""
    if old is None:
        return den
    c = per_sample(1.0 / (2.0 * (h_last / h)), x)
    return (1.0 + c) * den - c * old


def dpmpp_2m(model, x, sigma_start, sigma_min, steps, *, generator=None, callback=None, rho=7.0):
    """DPM-Solver++(2M): the second-order multistep exponential integrator on the data prediction.

    Lu et al. (2022), *DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models*
    (arXiv 2211.01095), Algorithm 2, in the VE form (alpha = 1)::

        D_i = D(x_i, sigma_i),   h_i = lambda_{i+1} - lambda_i,   r_i = h_{i-1} / h_i
        x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h_i} - 1) [(1 + 1/(2 r_i)) D_i - 1/(2 r_i) D_{i-1}]

    The first step uses D_i alone (DPM-Solver++(1) = DDIM); the last step, to sigma = 0, is ``x = D_i``.
    NFE = ``steps``; ends at 0.  ``generator`` is unused (deterministic).
    """
    sigma_start, D = _prepare(model, x, sigma_start, sigma_min, steps)
    sig = karras_sigmas(sigma_start, sigma_min, steps, rho=rho).to(x.dtype)
    old, h_last = None, None
    for i in range(steps):
        s, s_next = sig[:, i], sig[:, i + 1]
        den = D(x, s)
        if i == steps - 1:  # sigma_next = 0: the data prediction is the sample
            x = den
        else:
            h = torch.log(s) - torch.log(s_next)
            x = per_sample(s_next / s, x) * x - per_sample(torch.expm1(-h), x) * _second_order_data(den, old, h,
                                                                                                   h_last, x)
            h_last = h
        old = den
        _after_step("dpmpp_2m", i, x, s_next, den, callback)
    return x, IntegratorInfo("dpmpp_2m", D.nfe, steps, 0.0, {"rho": rho})


def dpmpp_2m_sde(model, x, sigma_start, sigma_min, steps, *, generator=None, callback=None, rho=7.0, eta=1.0,
                 s_noise=1.0, solver_type="midpoint"):
    """DPM-Solver++(2M) SDE: the multistep second-order solver of the reverse SDE, data prediction.

    The SDE form of DPM-Solver++ (Lu et al. 2022, arXiv 2211.01095; the ``sde-dpmsolver++`` variant its authors
    added to diffusers, and k-diffusion's ``sample_dpmpp_2m_sde``), VE form, with ``eta`` scaling the injected
    noise (eta = 1: the reverse SDE; eta = 0: DPM-Solver++(2M) with the first-order multistep correction)::

        h_i = lambda_{i+1} - lambda_i,   g_i = (1 + eta) h_i,   r_i = h_{i-1} / h_i
        x_{i+1} = (sigma_{i+1} / sigma_i) e^{-eta h_i} x_i + (1 - e^{-g_i}) D_i
                  + c_i (1 / r_i) (D_i - D_{i-1})
                  + s_noise sigma_{i+1} sqrt(1 - e^{-2 eta h_i}) z_i,         z_i ~ N(0, I)

    with ``c_i = (1 - e^{-g_i}) / 2`` (``solver_type="midpoint"``) or ``c_i = (1 - e^{-g_i}) / (-g_i) + 1``
    (``"heun"``).  The first step has no correction term; the last step, to sigma = 0, is ``x = D_i`` (no
    noise).  One normal draw per step but the last, from ``generator`` (or one generator per sample).
    NFE = ``steps``; ends at 0.
    """
    if solver_type not in _SDE_SOLVER_TYPES:
        raise ValueError(f"dpmpp_2m_sde: solver_type must be one of {', '.join(_SDE_SOLVER_TYPES)}, "
                         f"got {solver_type!r}")
    if not (eta >= 0 and s_noise >= 0):
        raise ValueError(f"dpmpp_2m_sde: eta and s_noise must be >= 0, got eta={eta!r}, s_noise={s_noise!r}")
    sigma_start, D = _prepare(model, x, sigma_start, sigma_min, steps)
    sig = karras_sigmas(sigma_start, sigma_min, steps, rho=rho).to(x.dtype)
    old, h_last = None, None
    for i in range(steps):
        s, s_next = sig[:, i], sig[:, i + 1]
        den = D(x, s)
        if i == steps - 1:
            x = den
        else:
            h = torch.log(s) - torch.log(s_next)
            g = h + eta * h
            one_minus = -torch.expm1(-g)  # 1 - e^{-(1 + eta) h}
            x = per_sample(s_next / s * torch.exp(-eta * h), x) * x + per_sample(one_minus, x) * den
            if old is not None:
                c = 0.5 * one_minus if solver_type == "midpoint" else one_minus / (-g) + 1.0
                x = x + per_sample(c * h / h_last, x) * (den - old)
            if eta:
                amp = s_next * (-torch.expm1(-2.0 * eta * h)).sqrt() * s_noise
                x = x + per_sample(amp, x) * normal(x.shape, generator, x.dtype, x.device)
            h_last = h
        old = den
        _after_step("dpmpp_2m_sde", i, x, s_next, den, callback)
    return x, IntegratorInfo("dpmpp_2m_sde", D.nfe, steps, 0.0,
                             {"rho": rho, "eta": eta, "s_noise": s_noise, "solver_type": solver_type})
