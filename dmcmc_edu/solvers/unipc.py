"""UniPC (Zhao et al. 2023): the unified predictor UniP-p and corrector UniC-p, data prediction, per-sample start.

Zhao, Bai, Rao, Zhou, Lu (2023), *UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
Models* (NeurIPS 2023, arXiv 2302.04867), Sec. 3 (UniC, UniP, the B(h) variants) in its data-prediction form,
VE (alpha = 1).  Symbols: ``D(x, sigma)`` the data prediction, ``lambda = -log sigma``, levels
``sigma_0 > ... > sigma_{N-1} = sigma_min`` (Karras et al.'s rho-schedule from each sample's ``sigma_start``),
``h_i = lambda_i - lambda_{i-1}``, ``m_j`` the evaluation at level j.

UniP-p, from the corrected ``x_{i-1}`` at level i-1 to level i, with ``r_k = (lambda_{i-1-k} - lambda_{i-1}) / h_i``
and ``D_k = (m_{i-1-k} - m_{i-1}) / r_k`` (k = 1 .. p-1)::

    x~_i = (sigma_i / sigma_{i-1}) x_{i-1} - (e^{-h_i} - 1) m_{i-1} - B(h_i) sum_k a_k D_k

UniC-p, after evaluating ``m_i = D(x~_i, sigma_i)`` (the evaluation the next predictor reuses, so the
corrector costs no evaluation), with ``r_p = 1`` and ``D_p = m_i - m_{i-1}``::

    x_i = (sigma_i / sigma_{i-1}) x_{i-1} - (e^{-h_i} - 1) m_{i-1} - B(h_i) sum_{k=1..p} a^c_k D_k

The coefficients solve ``R a = phi / B(h)`` with ``R[j, k] = r_k^(j-1)`` and ``phi_j = h phi_{j+1}(h) j!``
(the paper's g-functions of ``-h``); as in the authors' code (and diffusers), UniP-2 uses ``a_1 = 1/2`` and UniC-1
``a^c_1 = 1/2`` (the limits of the exact values as h -> 0; the order is unchanged).  ``variant`` picks
``B(h) = -h`` ("bh1") or ``B(h) = e^{-h} - 1`` ("bh2"), the paper's B_1 and B_2 written for data prediction.

Levels: ``sigmas`` ``[B, N + 1]`` or, by default, ``steps`` Karras levels then 0.  A last step to 0 is
``x = m_{N-1}`` (the Tweedie step; the correction at the last level is then not used, as in the reference
implementations); on levels that end above 0 the last step is a predictor step and the Tweedie step follows.

Orders (``lower_order_final``), with M the number of steps between nonzero levels (N - 1 when the levels end at
0, else N): step i uses

* ``"authors"`` (default): ``p_i = min(order, i + 1, M - i)``, as the authors' code (github.com/wl-zhao/UniPC,
  ``UniPC.sample`` with ``lower_order_final=True`` and, for the step to 0, ``denoise_to_zero=True``) runs its M
  steps: the step that lands on sigma_min has order 1;
* ``"diffusers"``: ``p_i = min(order, i + 1, N - i)``, as diffusers' ``UniPCMultistepScheduler`` with
  ``final_sigmas_type="zero"``, which counts the step to 0 among its N (one order more on the last M steps);
* ``"none"`` (or False): ``p_i = min(order, i + 1)`` (the warm-up only).

The two differ only on levels that end at 0.  The corrector after step i has the order of that step's predictor.
NFE = N; ends at 0 by default.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import per_sample
from dmcmc_edu.core.integrators import IntegratorInfo, _after_step, _karras, _prepare

__all__ = ["unipc"]

_VARIANTS = ("bh1", "bh2")
_FINAL_ORDERS = {"authors": "authors", True: "authors", "diffusers": "diffusers", "none": "none", False: "none"}


def _coefficients(h, rks, variant: str, size: int):
    """``(e^{-h} - 1, B(h), a)``: a solves ``R a = phi / B`` over the first ``size`` rows/columns ([B, size]).

    ``rks`` is ``[B, K]`` (the r_k, the last one 1 for the corrector); ``h`` is ``[B]``.
    """
    hh = -h
    h_phi_1 = torch.expm1(hh)
    B = hh if variant == "bh1" else torch.expm1(hh)
    if size == 0:
        return h_phi_1, B, None
    rows, b = [], []
    h_phi_k, factorial = h_phi_1 / hh - 1.0, 1.0
    for j in range(1, size + 1):
        rows.append(rks[:, :size] ** (j - 1))
        b.append(h_phi_k * factorial / B)
        factorial *= j + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    R = torch.stack(rows, dim=1)  # [B, size, size]
    a = torch.linalg.solve(R, torch.stack(b, dim=1))
    return h_phi_1, B, a


def _differences(ms, lam, base: int, h, p: int):
    """r_k and D_k = (m_{base-k} - m_base) / r_k for k = 1 .. p-1 (``ms[j]`` = evaluation at level j)."""
    rks, Ds = [], []
    for k in range(1, p):
        r = (lam[:, base - k] - lam[:, base]) / h
        rks.append(r)
        Ds.append((ms[base - k] - ms[base]) / per_sample(r, ms[base]))
    return rks, Ds


def _unip(x, ms, lam, sig, i: int, p: int, variant: str):
    """UniP-p from level i to level i+1 (x: the corrected state at level i)."""
    h = lam[:, i + 1] - lam[:, i]
    rks, Ds = _differences(ms, lam, i, h, p)
    if p == 2:  # the authors' simplified order-2 predictor
        h_phi_1, B, _ = _coefficients(h, None, variant, 0)
        a = torch.full_like(h, 0.5)[:, None]
    else:
        rk = torch.stack(rks + [torch.ones_like(h)], dim=1)
        h_phi_1, B, a = _coefficients(h, rk, variant, p - 1)
    out = per_sample(sig[:, i + 1] / sig[:, i], x) * x - per_sample(h_phi_1, x) * ms[i]
    if Ds:
        res = sum(per_sample(a[:, k], x) * Ds[k] for k in range(len(Ds)))
        out = out - per_sample(B, x) * res
    return out


def _unic(x_prev, ms, m_new, lam, sig, i: int, p: int, variant: str):
    """UniC-p at level i: corrects the step from level i-1 (state ``x_prev``) with the new evaluation ``m_new``."""
    h = lam[:, i] - lam[:, i - 1]
    rks, Ds = _differences(ms, lam, i - 1, h, p)
    if p == 1:  # the authors' simplified order-1 corrector
        h_phi_1, B, _ = _coefficients(h, None, variant, 0)
        a = torch.full_like(h, 0.5)[:, None]
    else:
        rk = torch.stack(rks + [torch.ones_like(h)], dim=1)
        h_phi_1, B, a = _coefficients(h, rk, variant, p)
    out = per_sample(sig[:, i] / sig[:, i - 1], x_prev) * x_prev - per_sample(h_phi_1, x_prev) * ms[i - 1]
    res = per_sample(a[:, -1], x_prev) * (m_new - ms[i - 1])
    for k in range(len(Ds)):
        res = res + per_sample(a[:, k], x_prev) * Ds[k]
    return out - per_sample(B, x_prev) * res


def unipc(model, x, sigma_start=None, sigma_min=None, steps=None, *, sigmas=None, generator=None, callback=None,
          rho=7.0, order=3, variant="bh2", corrector=True, lower_order_final="authors"):
    """UniPC-p (UniP-p + UniC-p, data prediction, ``variant`` bh1 | bh2) on Karras levels; see the module.

    Defaults: ``order=3`` (the paper's choice for unconditional sampling), ``variant="bh2"`` (diffusers' default;
    the paper found B_1 better for unconditional sampling at very few steps), the corrector on every step, the
    authors' lower final orders.  ``corrector=False`` gives UniP alone.  NFE = N; ends at 0 by default.
    ``generator`` is unused.
    """
    if variant not in _VARIANTS:
        raise ValueError(f"unipc: variant must be one of {', '.join(_VARIANTS)}, got {variant!r}")
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 4:
        raise ValueError(f"unipc: order must be an integer from 1 to 4, got {order!r}")
    if not isinstance(lower_order_final, (str, bool)) or lower_order_final not in _FINAL_ORDERS:
        raise ValueError(f"unipc: lower_order_final must be 'authors', 'diffusers' or 'none', "
                         f"got {lower_order_final!r}")
    final = _FINAL_ORDERS[lower_order_final]
    sig, D = _prepare("unipc", model, x, sigma_start, sigma_min, steps, sigmas, _karras(rho))
    n, end = sig.shape[1] - 1, float(sig[0, -1])
    last = n - 1 if end == 0 else n  # steps between nonzero levels
    lam = -torch.log(sig[:, :n] if end == 0 else sig)  # lambda of the nonzero levels
    ms, x_prev, p_prev, orders = {}, None, None, []
    for i in range(n):
        m = D(x, sig[:, i])
        if corrector and x_prev is not None:
            x = _unic(x_prev, ms, m, lam, sig, i, p_prev, variant)
        ms[i] = m
        ms.pop(i - order, None)  # keep the last `order` evaluations
        if i == last:
            x = m  # the step from sigma_min to 0: the data prediction (Tweedie)
        else:
            cap = {"authors": last - i, "diffusers": n - i, "none": order}[final]
            p = min(order, i + 1, cap)
            x_prev, p_prev = x, p
            x = _unip(x, ms, lam, sig, i, p, variant)
            orders.append(p)
        _after_step("unipc", i, x, sig[:, i + 1], m, callback)
    return x, IntegratorInfo("unipc", D.nfe, n, end, {"rho": rho, "order": order, "variant": variant,
                                                      "corrector": corrector, "lower_order_final": final,
                                                      "orders": orders})
