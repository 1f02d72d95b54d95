"""The Restart sampler (Xu et al. 2023) from a per-sample ``sigma_start``.

Xu, Deng, Cheng, Tian, Liu, Jaakkola (2023), *Restart Sampling for Improving Generative Processes*
(NeurIPS 2023, arXiv 2306.14878), Sec. 4 and Algorithm 1; the authors' ``generate_restart.py`` for the details
below.  Symbols: ``D(x, sigma)`` the denoiser, the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``.

* **Main path**: EDM's Heun solver (Karras et al. 2022, Alg. 1; :func:`~dmcmc_edu.core.integrators.kar1`) on
  the levels ``sigmas`` or, by default, ``steps`` Karras levels ``t_0 = sigma_start > ... > t_{steps-1} =
  sigma_min``, then an Euler step to 0.
* **Restart intervals** ``[N_restart, K, t_min, t_max]``: ``t_min`` is moved to the main level nearest to it,
  ``t_j`` (as the authors' code does).  When the main path reaches ``t_j`` it runs K times
  (forward)   ``x <- x + s_noise sqrt(t_max^2 - t_j^2) z``,  z ~ N(0, I)   (noise from t_j up to t_max; the
  default ``s_noise = 1.003`` is the authors' CIFAR-10 command's ``--S_noise``), then
  (backward)  Heun on the ODE over ``N_restart`` Karras levels from ``t_max`` down to ``t_j`` (N_restart - 1 steps,
  each corrected, 2 evaluations),
  and the main path continues from ``t_j``.  Per sample: the level nearest to ``t_min`` differs with
  ``sigma_start``; a sample whose nearest level is its start (``sigma_start`` at or below about ``t_min``) is
  not restarted, and a sample starting between ``t_min`` and ``t_max`` is noised up to ``t_max`` all the same.
* ``restart_gamma > 0`` adds Karras et al.'s churn (``t_hat = (1 + gamma) t``, noise to t_hat) on the backward
  steps at levels in ``[s_tmin, s_tmax]`` (gamma in x's dtype), as the authors' CIFAR-10 command does (gamma 0.05
  in [0.01, 1]); the default 0 is the paper's Algorithm 1 (a deterministic backward ODE).

Default interval: ``[[3, 2, 0.06, 0.30]]``, the paper's CIFAR-10 (VP, 18 main steps, NFE 43) setting.  On this
toolkit's targets it lies at the scale of the finest structure, as on CIFAR-10's [-1, 1] pixels: the ring's
components have std 0.25, the 64-d mixture is 0.03 thick, MNIST lives in [-1, 1].  It costs
``K * 2 * (N_restart - 1) = 8`` evaluations per restarted sample; for budgets of 5-20 NFE use e.g.
``[[2, 1, 0.06, 0.30]]`` (2 evaluations).

NFE = 2 steps - 1 + the restarts (counted per sample, so a batch with some samples not restarted reports the
mean); ends at 0 (no extra Tweedie step).
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import per_sample
from dmcmc_edu.core.integrators import IntegratorInfo, _after_step, _heun_step, _karras, _prepare
from dmcmc_edu.core.random import normal

__all__ = ["restart", "RESTART_DEFAULT", "RESTART_S_NOISE"]

#: the paper's CIFAR-10 setting: [N_restart (levels of each backward run), K (repetitions), t_min, t_max]
RESTART_DEFAULT = ((3, 2, 0.06, 0.30),)
#: the authors' noise inflation (``--S_noise 1.003`` in their CIFAR-10 and ImageNet commands)
RESTART_S_NOISE = 1.003


def _check_restarts(restarts, sigma_min: float) -> list[tuple[int, int, float, float]]:
    out = []
    for item in restarts:
        if len(item) != 4:
            raise ValueError(f"restart: each interval is [N_restart, K, t_min, t_max], got {item!r}")
        n_r, k, t_lo, t_hi = item
        ok_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (n_r, k))
        if not ok_int or n_r < 2 or k < 0:
            raise ValueError(f"restart: N_restart must be an integer >= 2 and K an integer >= 0, got {item!r}")
        if not (sigma_min <= float(t_lo) < float(t_hi) < float("inf")):
            raise ValueError(f"restart: need sigma_min ({sigma_min}) <= t_min < t_max < inf, got {item!r}")
        out.append((n_r, k, float(t_lo), float(t_hi)))
    return out


def _levels(t_hi: float, t_lo, n: int, rho: float):
    """``n`` Karras levels from ``t_hi`` down to the per-sample ``t_lo`` ([B]), shape [B, n]."""
    ramp = torch.linspace(0, 1, n, dtype=t_lo.dtype, device=t_lo.device)
    hi = torch.as_tensor(t_hi, dtype=t_lo.dtype) ** (1.0 / rho)
    return (hi + ramp[None, :] * (t_lo[:, None] ** (1.0 / rho) - hi)) ** rho


def _subset(generator, rows):
    return [generator[int(b)] for b in rows] if isinstance(generator, (list, tuple)) else generator


def _restart_loops(D, x, t_lo, interval, rho, generator, s_noise, churn):
    """K forward-noise / backward-Heun cycles between t_lo ([B], a main level) and t_max; returns x at t_lo."""
    n_r, k, _, t_hi = interval
    gamma, s_tmin, s_tmax = churn
    lev = _levels(t_hi, t_lo, n_r, rho).to(x.dtype)
    for _ in range(k):
        x = x + per_sample((t_hi**2 - t_lo**2).sqrt() * s_noise, x) * normal(x.shape, generator, x.dtype, x.device)
        for j in range(n_r - 1):
            t_cur = lev[:, j]
            if gamma > 0:
                g = ((t_cur >= s_tmin) & (t_cur <= s_tmax)).to(x.dtype) * gamma
                t_hat = t_cur + g * t_cur
                x = x + per_sample((t_hat**2 - t_cur**2).sqrt() * s_noise, x) * normal(x.shape, generator, x.dtype,
                                                                                       x.device)
                t_cur = t_hat
            x, _ = _heun_step(D, x, t_cur, lev[:, j + 1], correct=True)
    return x


def restart(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None, callback=None,
            rho=7.0, restarts=RESTART_DEFAULT, s_noise=RESTART_S_NOISE, restart_gamma=0.0, s_tmin=0.01, s_tmax=1.0):
    """Restart: EDM's Heun main path plus K forward-noise / backward-ODE cycles per interval; see the module."""
    sig, D = _prepare("restart", model, x, sigma_start, sigma_min, steps, sigmas, _karras(rho))
    n, end = sig.shape[1] - 1, float(sig[0, -1])
    positive = n if end == 0 else n + 1
    intervals = _check_restarts(restarts, sigma_min if sigmas is None else float(sig[:, positive - 1].min()))
    # per sample and interval: the nonzero main level nearest to t_min (the zero level is never nearer: t_min >= s_min)
    where = [(sig[:, :positive] - iv[2]).abs().argmin(dim=1) for iv in intervals]
    churn = (float(restart_gamma), s_tmin, s_tmax)
    restarted = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for i in range(n):
        x, den = _heun_step(D, x, sig[:, i], sig[:, i + 1], correct=i < n - 1 or end > 0)
        for iv, idx in zip(intervals, where):
            rows = (idx == i + 1).nonzero().flatten()
            if rows.numel() and iv[1] > 0:
                x = x.clone()
                x[rows] = _restart_loops(D, x[rows], sig[rows, i + 1], iv, rho, _subset(generator, rows), s_noise,
                                         churn)
                restarted[rows] += 1
        _after_step("restart", i, x, sig[:, i + 1], den, callback)
    extra = {"rho": rho, "s_noise": s_noise, "restarts": [list(iv) for iv in intervals],
             "restart_gamma": float(restart_gamma), "restarted_fraction": float((restarted > 0).double().mean())}
    return x, IntegratorInfo("restart", D.nfe, n, end, extra)
