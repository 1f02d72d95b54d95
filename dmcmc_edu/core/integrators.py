"""The six reverse-S/ODE integrators of the paper, each on per-sample levels.

One signature for all (in the spirit of k-diffusion's samplers, which take ``sigmas``)::

    x_out, info = integrator(model, x, sigmas=sigmas, generator=None, callback=None, **options)
    x_out, info = integrator(model, x, sigma_start, sigma_min, steps, ...)   # builds the default levels

``model`` is a denoiser D(x, sigma); row ``b`` of ``x`` ``[B, ...]`` runs on the levels ``sigmas[b]``
(``[B, N + 1]``, from that sample's start down to ``sigma_min``, or to 0 where the method may end there; any
builder of :mod:`dmcmc_edu.core.schedules` or your own, checked by :func:`~dmcmc_edu.core.schedules.check_sigmas`),
so every sample takes N steps and network calls stay batched.  The short form builds each method's default
levels from ``sigma_start`` (a float is broadcast) and is the same computation bit for bit.
``generator`` is a ``torch.Generator`` or one per sample (then a sample
reproduces whatever batch it is run in, as in EDM's sampler); ``callback``
gets ``{i, x, sigma, denoised}`` after every step.  The returned
:class:`IntegratorInfo` holds the NFE *counted* by a
:class:`~dmcmc_edu.core.contract.CountingDenoiser`.

KAR1/KAR2 end at sigma = 0 by default (their last Euler step to 0 is a Tweedie step);
the others end at ``sigma_min`` and are followed by the Tweedie step of
:mod:`dmcmc_edu.core.tweedie` (the paper's "+1" NFE).  :func:`sample_from_noise`
runs the whole pipeline from ``sigma_max``.  Names resolve in :data:`INTEGRATORS` (the six); the solvers of
:mod:`dmcmc_edu.solvers` join them only where a caller asks (``dmcmc_edu.registry``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.integrate import solve_ivp

from dmcmc_edu.core.contract import CountingDenoiser, as_sigma_batch, check_x, nonfinite_rows, per_sample
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.schedules import check_sigmas, check_start, geometric_sigmas, karras_sigmas
from dmcmc_edu.core.tweedie import finish_with_tweedie

__all__ = ["IntegratorInfo", "kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion", "euler_maruyama",
           "INTEGRATORS", "PAPER_INTEGRATORS", "register_integrator", "get_integrator", "sample_from_noise"]

# The paper's KAR2 churn settings (Karras et al. 2022, Alg. 2; the values the DMCMC code uses).
KAR2_DEFAULTS = dict(s_churn=80.0, s_tmin=0.05, s_tmax=1.0, s_noise=1.007)


@dataclass
class IntegratorInfo:
    """What an integrator did: its name, the counted NFE per sample, where it ended."""

    name: str
    nfe: float
    steps: int
    sigma_end: float
    extra: dict = field(default_factory=dict)



def _prepare(name, model, x, sigma_start, sigma_min, steps, sigmas, build, end_zero=True, min_steps=1):
    """Validate an integrator's inputs; returns its levels ``[B, N + 1]`` in x's dtype and a counting model.

    The levels are ``sigmas`` (checked) or, in the short form, ``build(start [B], sigma_min, steps)``.
    """
    check_x(x)
    if sigmas is None:
        if sigma_start is None or sigma_min is None or steps is None:
            raise ValueError(f"{name}: give sigmas=, or sigma_start, sigma_min and steps")
        start = check_start(as_sigma_batch(sigma_start, x, "sigma_start"), sigma_min, steps, min_steps)
        sig = build(start, sigma_min, steps)
    elif sigma_start is not None or sigma_min is not None or steps is not None:
        raise ValueError(f"{name}: give sigmas= or (sigma_start, sigma_min, steps), not both")
    else:
        sig = check_sigmas(sigmas, x.shape[0], name, end_zero)
        if sig.shape[1] - 1 < min_steps:
            raise ValueError(f"{name}: needs at least {min_steps} steps, got sigmas of {sig.shape[1]} levels")
    return sig.to(device=x.device, dtype=x.dtype), CountingDenoiser(model, n_samples=x.shape[0])


def _karras(rho):
    return lambda start, sigma_min, steps: karras_sigmas(start, sigma_min, steps, rho=rho)


def _after_step(name: str, i: int, x, sigma, denoised, callback) -> None:
    """Stop on a non-finite state (naming the samples), then report the step to ``callback``."""
    bad = nonfinite_rows(x)
    if bad.numel():
        raise FloatingPointError(f"{name}: non-finite state at step {i} in sample(s) {bad[:10].tolist()}; "
                                 "the step size may be too large for this model/schedule")
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})



def _heun_step(D, x, t_cur, t_next, correct: bool):
    """One step of Karras et al.'s Heun scheme from t_cur to t_next (per-sample [B] levels).

    Euler step along d = (x - D(x, t)) / t; with ``correct`` the second-order
    correction averages d at both ends (skipped for the final step to sigma = 0).
    Returns ``(x_next, denoised at t_cur)``.
    """
    denoised = D(x, t_cur)
    d_cur = (x - denoised) / per_sample(t_cur, x)
    x_next = x + per_sample(t_next - t_cur, x) * d_cur
    if correct:
        d_next = (x_next - D(x_next, t_next)) / per_sample(t_next, x)
        x_next = x + per_sample(t_next - t_cur, x) * (0.5 * d_cur + 0.5 * d_next)
    return x_next, denoised


def kar1(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None, callback=None,
         rho=7.0):
    """KAR1: Karras et al. (2022) Alg. 1, Heun on the probability-flow ODE (default: ``steps`` rho-levels, then 0).

    Heun's correction on every step but a last one to 0 (an Euler step).  NFE = 2 N - 1 ending at 0, else 2 N.
    """
    sig, D = _prepare("kar1", model, x, sigma_start, sigma_min, steps, sigmas, _karras(rho))
    n, end = sig.shape[1] - 1, float(sig[0, -1])
    for i in range(n):
        t_cur, t_next = sig[:, i], sig[:, i + 1]
        x, denoised = _heun_step(D, x, t_cur, t_next, correct=i < n - 1 or end > 0)
        _after_step("kar1", i, x, t_next, denoised, callback)
    return x, IntegratorInfo("kar1", D.nfe, n, end)


def kar2(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None, callback=None,
         rho=7.0, s_churn=KAR2_DEFAULTS["s_churn"], s_tmin=KAR2_DEFAULTS["s_tmin"], s_tmax=KAR2_DEFAULTS["s_tmax"],
         s_noise=KAR2_DEFAULTS["s_noise"]):
    """KAR2: Karras et al. (2022) Alg. 2, stochastic Heun with "churn" (defaults: the paper's settings).

    gamma_i = min(S_churn / N, sqrt(2) - 1) for t_i in [S_tmin, S_tmax] (per sample), in x's dtype; one normal
    draw per step (zero amplitude outside the band).  NFE = 2 N - 1 ending at 0, else 2 N.
    """
    sig, D = _prepare("kar2", model, x, sigma_start, sigma_min, steps, sigmas, _karras(rho))
    n, end = sig.shape[1] - 1, float(sig[0, -1])
    gamma_max = min(s_churn / n, math.sqrt(2.0) - 1.0)
    for i in range(n):
        t_cur, t_next = sig[:, i], sig[:, i + 1]
        # increase noise temporarily: t_hat = t_cur (1 + gamma)
        gamma = ((t_cur >= s_tmin) & (t_cur <= s_tmax)).to(x.dtype) * gamma_max  # in x's dtype, not float32
        t_hat = t_cur + gamma * t_cur
        eps = normal(x.shape, generator, x.dtype, x.device) * s_noise
        x_hat = x + per_sample((t_hat**2 - t_cur**2).clamp(min=0).sqrt(), x) * eps
        # Heun step from t_hat to t_next
        x, denoised = _heun_step(D, x_hat, t_hat, t_next, correct=i < n - 1 or end > 0)
        _after_step("kar2", i, x, t_next, denoised, callback)
    return x, IntegratorInfo("kar2", D.nfe, n, end, {"gamma": gamma_max, "s_churn": s_churn})



def _ve_sde_loop(name, update, model, x, sigma_start, sigma_min, steps, sigmas, callback, corrector=None):
    """Song et al.'s loop (default: geometric levels, ending above 0): ``update(x, D(x, s_i), s_i, s_{i+1})``.

    ``corrector(D, x, s_i)``, if given, runs before each step (a PC sampler; see :mod:`dmcmc_edu.solvers`).
    """
    sig, D = _prepare(name, model, x, sigma_start, sigma_min, steps, sigmas, geometric_sigmas, end_zero=False)
    for i in range(sig.shape[1] - 1):
        s_cur, s_next = sig[:, i], sig[:, i + 1]
        if corrector is not None:
            x = corrector(D, x, s_cur)
        denoised = D(x, s_cur)
        x = update(x, denoised, s_cur, s_next)
        _after_step(name, i, x, s_next, denoised, callback)
    return x, IntegratorInfo(name, D.nfe, sig.shape[1] - 1, float(sig[0, -1]))


def pf_euler(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None,
             callback=None):
    """Probability flow: Euler on the VE probability-flow ODE (Song et al. 2021), time linear in log sigma.

    A step of h = log(sigma_i / sigma_{i+1}) reads ``x <- x + h (D(x, sigma_i) - x)``.  NFE = steps.
    """

    def update(x, den, s, s_next):
        return x + per_sample(torch.log(s / s_next), x) * (den - x)

    return _ve_sde_loop("pf_euler", update, model, x, sigma_start, sigma_min, steps, sigmas, callback)


def reverse_diffusion(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None,
                      callback=None, corrector=None):
    """Reverse-diffusion predictor of Song et al. (2021) on geometric VE levels.  NFE = steps (+ a corrector's).

    ``x <- x + (s_i^2 - s_{i+1}^2) score(x, s_i) + sqrt(s_i^2 - s_{i+1}^2) z``.
    """

    def update(x, den, s, s_next):
        var = (s**2 - s_next**2).clamp(min=0)
        z = normal(x.shape, generator, x.dtype, x.device)
        return x + per_sample(var / s**2, x) * (den - x) + per_sample(var.sqrt(), x) * z

    return _ve_sde_loop("reverse_diffusion", update, model, x, sigma_start, sigma_min, steps, sigmas, callback,
                        corrector)


def euler_maruyama(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None,
                   callback=None, corrector=None):
    """Euler-Maruyama on the VE reverse SDE (Song et al. 2021), time linear in log sigma.  NFE = steps.

    With g(t)^2 dt = 2 sigma^2 h for a step of h in log sigma: ``x <- x + 2 h (D(x, s_i) - x) + s_i sqrt(2 h) z``.
    Noise on every step down to ``sigma_min``, then the Tweedie step; score_sde's own discretisation (the last
    step's mean, no Tweedie) is ``"em_score_sde"`` in :mod:`dmcmc_edu.solvers`.
    """

    def update(x, den, s, s_next):
        h = torch.log(s / s_next)
        z = normal(x.shape, generator, x.dtype, x.device)
        return x + per_sample(2 * h, x) * (den - x) + per_sample(s * (2 * h).sqrt(), x) * z

    return _ve_sde_loop("euler_maruyama", update, model, x, sigma_start, sigma_min, steps, sigmas, callback,
                        corrector)


def rk45(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None, callback=None,
         rtol=1e-5, atol=1e-5):
    """RK45: adaptive Runge-Kutta (scipy ``solve_ivp``) on the probability-flow ODE; ``steps`` is unused.

    Per-sample starts through a shared time u in [0, 1]: ``log sigma_b(u) = (1-u) log sigma_start_b + u log
    sigma_min``, so ``dx/du = (D(x, sigma_b(u)) - x) log(sigma_start_b / sigma_min)``; one solve over the batch
    (joint error control, as in score_sde).  Given ``sigmas``, only their first and last columns count (the solver
    picks its own levels; the last must be above 0).  NFE = the solver's nfev, confirmed by the counting wrapper.
    """
    steps = 1 if sigmas is None and steps is None else steps
    sig, D = _prepare("rk45", model, x, sigma_start, sigma_min, steps, sigmas, geometric_sigmas, end_zero=False)
    sigma_start, sigma_min = sig[:, 0], float(sig[0, -1])
    shape, dtype, device = x.shape, x.dtype, x.device
    log_hi = torch.log(sigma_start).to(torch.float64)
    log_lo = math.log(sigma_min)
    rate = (log_hi - log_lo).cpu()  # [B]

    def rhs(u, y):
        xt = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
        sigma = torch.exp((1 - u) * log_hi + u * log_lo).to(device=device, dtype=dtype)
        den = D(xt, sigma)
        dx = (den - xt).to(torch.float64).cpu() * per_sample(rate, xt.cpu())
        return dx.reshape(-1).numpy()

    y0 = x.detach().to(torch.float64).cpu().reshape(-1).numpy()
    sol = solve_ivp(rhs, (0.0, 1.0), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"rk45: solve_ivp failed: {sol.message}")
    out = torch.from_numpy(np.ascontiguousarray(sol.y[:, -1])).reshape(shape).to(device=device, dtype=dtype)
    if callback is not None:
        callback({"i": 0, "x": out, "sigma": torch.full_like(sigma_start, sigma_min), "denoised": None})
    return out, IntegratorInfo("rk45", D.nfe, int(sol.t.size - 1), float(sigma_min),
                               {"nfev": int(sol.nfev), "rtol": rtol, "atol": atol})


INTEGRATORS: dict[str, Callable] = {
    "kar1": kar1,
    "kar2": kar2,
    "pf_euler": pf_euler,
    "rk45": rk45,
    "reverse_diffusion": reverse_diffusion,
    "euler_maruyama": euler_maruyama,
}
"""Integrators by name: the paper's six, and only what a caller adds with :func:`register_integrator` (importing
a module adds nothing; the solvers are reached by passing a function or ``dmcmc_edu.registry.integrator_table()``)."""

PAPER_INTEGRATORS = ("kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion", "euler_maruyama")


def register_integrator(name: str, fn: Callable) -> None:
    """Add an integrator with the common signature to :data:`INTEGRATORS` (a name is registered once)."""
    if name in INTEGRATORS and INTEGRATORS[name] is not fn:
        raise ValueError(f"an integrator named {name!r} is registered already")
    INTEGRATORS[name] = fn


def get_integrator(name) -> Callable:
    """Look up an integrator of :data:`INTEGRATORS` by name (a clear error lists the known names); a function is
    returned as it is."""
    if callable(name):
        return name
    try:
        return INTEGRATORS[name]
    except KeyError:
        raise ValueError(f"unknown integrator {name!r}; known: {', '.join(INTEGRATORS)}") from None


def sample_from_noise(model, shape, *, integrator="kar1", steps=18, sigma_max=80.0, sigma_min=0.002, sigmas=None,
                      generator=None, final_tweedie=None, tweedie_sigma=None, dtype=torch.float64,
                      device="cpu", callback=None, **options):
    """Vanilla sampling: x = sigma_max z, run ``integrator`` to the end, then the Tweedie step if needed.

    ``integrator`` is a name of :data:`INTEGRATORS` or a function.  ``sigmas`` (``[B, N + 1]`` or ``[N + 1]``), if
    given, replaces ``steps``/``sigma_max``/``sigma_min``: x = sigmas[:, 0] z.  ``final_tweedie`` (None: only when
    the integrator ends above 0) applies the Tweedie step at ``tweedie_sigma`` (default: the end level; with
    ``sigmas``, each row's own last level above 0).  Returns
    ``(samples, info)``; ``info.nfe`` counts every evaluation.
    """
    fn = get_integrator(integrator)
    counter = CountingDenoiser(model, n_samples=shape[0])
    if sigmas is None:
        x = normal(shape, generator, dtype, device) * sigma_max
        x, info = fn(counter, x, sigma_max, sigma_min, steps, generator=generator, callback=callback, **options)
    else:
        sigmas = check_sigmas(torch.as_tensor(sigmas).to(device=device, dtype=dtype), shape[0], "sample_from_noise")
        x = normal(shape, generator, dtype, device) * sigmas[:, 0].reshape(-1, *[1] * (len(shape) - 1))
        x, info = fn(counter, x, sigmas=sigmas, generator=generator, callback=callback, **options)
        # each row's own last level above 0: where its levels end (or the one before a last step to 0)
        sigma_min = torch.where(sigmas[:, -1] > 0, sigmas[:, -1], sigmas[:, -2])
    mode = {None: "auto", True: "always", False: "never"}[final_tweedie]
    if tweedie_sigma is not None:
        at = tweedie_sigma
    elif sigmas is None:
        at = max(info.sigma_end, sigma_min)
    else:
        at = sigma_min
    x, applied = finish_with_tweedie(counter, x, info.sigma_end, at, mode)
    info.nfe = counter.nfe
    info.extra["final_tweedie"] = applied
    return x, info
