"""Noise schedules, each built **per sample** (shape ``[B, N]``), and the check of a given one.

Each starts at a per-sample ``sigma_start`` (``[B]``) and decreases to ``sigma_min``; those of algorithms whose
last step goes to sigma = 0 (Karras et al. 2022) carry a trailing zero column.  The builders, all with the
signature ``(sigma_start, sigma_min, steps, ..., append_zero)``: :func:`karras_sigmas` (uniform in sigma^(1/rho)),
:func:`geometric_sigmas` (uniform in log sigma), :func:`linear_sigmas` (uniform in sigma) and
:func:`grid_sigmas` (stops on the paper's noise-level grid).  Any of them, or a schedule of your own, goes to an
integrator as ``sigmas=`` (:func:`check_sigmas` says what it must be).  Also here: :func:`noise_level_grid`, the
1000-level grid of the paper's noise-level classifier.
"""

from __future__ import annotations

import math

import torch

__all__ = ["karras_sigmas", "geometric_sigmas", "linear_sigmas", "grid_sigmas", "SCHEDULES", "make_sigmas",
           "check_sigmas", "noise_level_grid", "check_grid", "check_start"]


def check_start(sigma_start, sigma_min: float, steps: int, min_steps: int = 1) -> torch.Tensor:
    """Validate a schedule's start and step count; returns ``[B]`` start levels (round-off below sigma_min raised)."""
    sigma_start = torch.as_tensor(sigma_start)
    sigma_start = sigma_start.reshape(1) if sigma_start.ndim == 0 else sigma_start
    if sigma_start.ndim != 1:
        raise ValueError(f"sigma_start must have shape [B], got {tuple(sigma_start.shape)}")
    sigma_start = sigma_start if torch.is_floating_point(sigma_start) else sigma_start.double()
    if not torch.isfinite(sigma_start).all():
        raise ValueError("sigma_start has non-finite values")
    if isinstance(sigma_min, bool) or not isinstance(sigma_min, (int, float)) or not 0 < sigma_min < math.inf:
        raise ValueError(f"sigma_min must be a finite float > 0, got {sigma_min!r}")
    below = sigma_start < sigma_min * (1 - 1e-9)
    if below.any():
        bad = below.nonzero().flatten()
        raise ValueError(f"sigma_start < sigma_min ({sigma_min}) for sample(s) {bad[:10].tolist()}: "
                         f"values {[round(v, 6) for v in sigma_start[bad[:5]].tolist()]}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < min_steps:
        raise ValueError(f"steps must be an integer >= {min_steps}, got {steps!r}")
    return sigma_start.clamp(min=sigma_min)


def karras_sigmas(sigma_start, sigma_min: float, steps: int, rho: float = 7.0,
                  append_zero: bool = True) -> torch.Tensor:
    """Karras et al. (2022), eq. 5: ``steps`` levels from ``sigma_start`` to ``sigma_min`` spaced in sigma^(1/rho).

    Shape ``[B, steps + 1]`` (trailing zero) or ``[B, steps]``; with ``steps == 1`` the only level is sigma_start.
    """
    s0 = check_start(sigma_start, sigma_min, steps)
    ramp = torch.linspace(0, 1, steps, dtype=s0.dtype, device=s0.device)  # steps == 1 gives [0]
    hi = s0[:, None] ** (1.0 / rho)
    lo = torch.as_tensor(sigma_min, dtype=s0.dtype, device=s0.device) ** (1.0 / rho)
    sig = (hi + ramp[None, :] * (lo - hi)) ** rho
    if append_zero:
        sig = torch.cat([sig, torch.zeros_like(sig[:, :1])], dim=1)
    return sig


def geometric_sigmas(sigma_start, sigma_min: float, steps: int, append_zero: bool = False) -> torch.Tensor:
    """Geometric levels, i.e. uniform in log sigma (Song et al.'s VE levels, k-diffusion's "exponential" schedule).

    ``steps + 1`` points from ``sigma_start`` to ``sigma_min``: shape ``[B, steps + 1]``, plus a zero column if asked.
    """
    s0 = check_start(sigma_start, sigma_min, steps)
    t = torch.linspace(0, 1, steps + 1, dtype=s0.dtype, device=s0.device)
    log_hi = torch.log(s0)[:, None]
    log_lo = math.log(sigma_min)
    sig = torch.exp(log_hi + t[None, :] * (log_lo - log_hi))
    sig[:, -1] = sigma_min
    if append_zero:
        sig = torch.cat([sig, torch.zeros_like(sig[:, :1])], dim=1)
    return sig


def linear_sigmas(sigma_start, sigma_min: float, steps: int, append_zero: bool = False) -> torch.Tensor:
    """Levels uniform in sigma: ``steps + 1`` points from ``sigma_start`` to ``sigma_min`` (a deliberately poor
    baseline: the steps crowd where sigma is large).  Shape ``[B, steps + 1]``, plus a zero column if asked."""
    sig = karras_sigmas(sigma_start, sigma_min, steps + 1, rho=1.0, append_zero=False)
    return torch.cat([sig, torch.zeros_like(sig[:, :1])], dim=1) if append_zero else sig


def grid_sigmas(sigma_start, sigma_min: float, steps: int, append_zero: bool = False, sigma_max: float = 50.0,
                n_levels: int = 1000) -> torch.Tensor:
    """``steps + 1`` levels from ``sigma_start`` to ``sigma_min`` whose inner levels lie on the paper's grid.

    The grid is :func:`noise_level_grid` ``(sigma_min, sigma_max, n_levels)`` (the one DLG's states live on, as in
    ``DMCMCConfig.grid()``); the inner levels are the grid levels at evenly spaced (rounded) indices between the
    one nearest ``sigma_start`` and the last, so the schedule is near-geometric.  Shape ``[B, steps + 1]``.
    """
    s0 = check_start(sigma_start, sigma_min, steps)
    grid = noise_level_grid(sigma_min, sigma_max, n_levels, dtype=s0.dtype).to(s0.device)
    first = (torch.log(grid)[None, :] - torch.log(s0)[:, None]).abs().argmin(dim=1)
    ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64, device=s0.device)
    idx = (first[:, None] + ramp[None, :] * (n_levels - 1 - first[:, None])).round().long()
    if (idx[:, 1:] <= idx[:, :-1]).any():
        raise ValueError(f"grid_sigmas: fewer than {steps} grid levels between sigma_start and sigma_min for some "
                         f"sample(s); use fewer steps or a finer grid (n_levels={n_levels})")
    sig = grid[idx]
    sig[:, 0], sig[:, -1] = s0, sigma_min
    return torch.cat([sig, torch.zeros_like(sig[:, :1])], dim=1) if append_zero else sig


SCHEDULES = {"karras": karras_sigmas, "geometric": geometric_sigmas, "linear": linear_sigmas, "grid": grid_sigmas}
"""The schedule builders by name (``karras`` counts levels, the others intervals: :func:`make_sigmas` evens that)."""


def make_sigmas(name: str, sigma_start, sigma_min: float, steps: int, to_zero: bool, **options) -> torch.Tensor:
    """Levels ``[B, steps + 1]`` of schedule ``name``: ``steps`` intervals ending at 0 (``to_zero``) or at sigma_min."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    if name == "karras":
        if to_zero:  # the short form's levels, as they are
            return karras_sigmas(sigma_start, sigma_min, steps, **options)
        sig = karras_sigmas(sigma_start, sigma_min, steps + 1, append_zero=False, **options)
        sig[:, -1] = sigma_min  # one end for every row (the rho-th power of sigma_min^(1/rho) may miss it by an ulp)
        return sig
    check_start(sigma_start, sigma_min, steps, min_steps=2 if to_zero else 1)
    return SCHEDULES[name](sigma_start, sigma_min, steps - 1 if to_zero else steps, append_zero=to_zero, **options)


def check_sigmas(sigmas, batch: int, name: str = "sigmas", end_zero: bool = True) -> torch.Tensor:
    """Validate an integrator's levels ``[B, N + 1]`` (a ``[N + 1]`` row is shared by the batch) and return them.

    Each row must be finite and strictly decreasing, positive except a final 0; the last column is one value
    for every row (all 0, or one sigma_min > 0 to 1e-9), and a 0 there only where ``end_zero`` allows it.
    """
    sig = torch.as_tensor(sigmas)
    sig = sig.expand(batch, -1) if sig.ndim == 1 else sig
    if sig.ndim != 2 or sig.shape[0] != batch or sig.shape[1] < 2:
        raise ValueError(f"{name}: sigmas must have shape [B={batch}, N + 1] with N >= 1, got {tuple(sig.shape)}")
    if not torch.is_floating_point(sig) or not torch.isfinite(sig).all():
        raise ValueError(f"{name}: sigmas must be finite floating-point levels")
    last = sig[:, -1]
    if (sig[:, :-1] <= 0).any() or (last < 0).any() or ((last - last[0]).abs() > 1e-9 * last[0]).any():
        raise ValueError(f"{name}: sigmas must be > 0 except a final column that is all 0 or one sigma_min > 0")
    if (sig[:, 1:] >= sig[:, :-1]).any():
        row = int((sig[:, 1:] >= sig[:, :-1]).any(dim=1).nonzero()[0])
        raise ValueError(f"{name}: sigmas must be strictly decreasing along each row; row {row} is not")
    if sig[0, -1] == 0 and not end_zero:
        raise ValueError(f"{name}: sigmas must end above 0 (this method stops at sigma_min; a Tweedie step follows)")
    return sig


def noise_level_grid(sigma_min: float = 0.01, sigma_max: float = 50.0, n: int = 1000, t_min: float = 1e-3,
                     dtype=torch.float64) -> torch.Tensor:
    """The paper's noise-level grid: ``sigma_i = sigma_min (sigma_max/sigma_min)^t_i``, ``t = linspace(1, t_min, n)``.

    Index 0 is sigma_max; the grid is strictly decreasing.  Note that the
    smallest level is ``sigma_min * (sigma_max/sigma_min)^t_min``, slightly
    above ``sigma_min`` (as in the authors' code).
    """
    if not (0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if n < 2:
        raise ValueError(f"a grid needs n >= 2 levels, got {n}")
    t = torch.linspace(1.0, t_min, n, dtype=dtype)
    return sigma_min * (sigma_max / sigma_min) ** t


def check_grid(grid: torch.Tensor, name: str = "grid") -> torch.Tensor:
    """Validate a noise-level grid: 1-D, finite, positive, strictly decreasing."""
    grid = torch.as_tensor(grid)
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(f"{name} must be a 1-D tensor of at least 2 levels, got shape {tuple(grid.shape)}")
    if not torch.isfinite(grid).all() or (grid <= 0).any():
        raise ValueError(f"{name} must hold finite levels > 0")
    diffs = grid[1:] - grid[:-1]
    if (diffs >= 0).any():
        i = int((diffs >= 0).nonzero()[0])
        raise ValueError(f"{name} must be strictly decreasing (index 0 = largest sigma); "
                         f"level {i + 1} ({grid[i + 1].item():.4g}) >= level {i} ({grid[i].item():.4g})")
    return grid
