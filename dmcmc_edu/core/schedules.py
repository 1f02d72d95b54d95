"""Noise schedules, each built **per sample** (shape ``[B, N]``).

Each starts at a per-sample ``sigma_start`` (``[B]``) and decreases to ``sigma_min``; those of algorithms whose
last step goes to sigma = 0 (Karras et al. 2022) carry a trailing zero column.  Also here:
:func:`noise_level_grid`, the 1000-level grid of the paper's noise-level classifier.
"""

from __future__ import annotations

import math

import torch

__all__ = ["karras_sigmas", "geometric_sigmas", "noise_level_grid", "check_grid", "check_start"]


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
    """Geometric (VE, Song et al. 2021) levels: ``steps + 1`` points from ``sigma_start`` to ``sigma_min``.

    Returns shape ``[B, steps + 1]`` (``steps`` intervals), plus a zero column if asked.
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
