"""Ready-made mixture targets and the one entry point that turns a target spec into a mixture.

* :func:`ring` -- 2-D, modes on a circle with unequal weights;
* :func:`grid` -- 2-D, a square grid of equal modes;
* :func:`lowrank` -- high-dimensional low-rank-plus-diagonal components, the
  "images on a low-dimensional manifold" stand-in.

:func:`preset` builds one by name (:data:`PRESETS`); :func:`load_target`
accepts a preset name, a JSON file of :meth:`GaussianMixture.save
<dmcmc_edu.targets.mixture.GaussianMixture.save>` or a mixture.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from dmcmc_edu.targets.mixture import GaussianMixture

__all__ = ["ring", "grid", "lowrank", "PRESETS", "preset", "load_target"]


def ring(n_modes: int = 8, radius: float = 4.0, std: float = 0.25, weights=None, *,
         dtype: torch.dtype = torch.float64, device=None) -> GaussianMixture:
    """2-D ring: ``n_modes`` isotropic Gaussians (std ``std``) evenly spaced on a circle of ``radius``.

    Mode ``k`` sits at angle ``2 pi k / n_modes``.  Default weights are
    unequal, proportional to ``1, 2, ..., n_modes`` (a test of mode-weight recovery).
    """
    if not isinstance(n_modes, int) or n_modes < 1:
        raise ValueError(f"n_modes must be an integer >= 1, got {n_modes!r}")
    ang = 2.0 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
    if weights is None:
        weights = torch.arange(1, n_modes + 1, dtype=torch.float64)
    cov = (std**2) * torch.eye(2, dtype=torch.float64).expand(n_modes, 2, 2)
    return GaussianMixture(weights, means, cov, dtype=dtype, device=device, name="ring")


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.2, *,
         dtype: torch.dtype = torch.float64, device=None) -> GaussianMixture:
    """2-D ``side x side`` grid of isotropic Gaussians (std ``std``), ``spacing`` apart, centred at 0, equal weights."""
    if not isinstance(side, int) or side < 1:
        raise ValueError(f"side must be an integer >= 1, got {side!r}")
    c = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2.0) * spacing
    gx, gy = torch.meshgrid(c, c, indexing="ij")
    means = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    K = side * side
    cov = (std**2) * torch.eye(2, dtype=torch.float64).expand(K, 2, 2)
    return GaussianMixture(torch.full((K,), 1.0 / K, dtype=torch.float64), means, cov, dtype=dtype, device=device,
                           name="grid")


def lowrank(d: int = 64, n_components: int = 10, rank: int = 4, seed: int = 0, *, mean_scale: float = 0.5,
            factor_scale: float = 0.25, diag_var: float = 1e-3, weights=None,
            dtype: torch.dtype = torch.float64, device=None) -> GaussianMixture:
    """High-dimensional low-rank-plus-diagonal mixture: "images on a manifold".

    Each component is a thin ``rank``-dimensional pancake in ``R^d``:
    ``mu_k ~ mean_scale * N(0, I_d)``, ``F_k ~ factor_scale * N(0, I)`` of shape
    ``[d, rank]`` and ``diag(D_k) = diag_var`` (isotropic), all drawn from
    ``torch.Generator().manual_seed(seed)`` (deterministic).  With the defaults
    every coordinate has a spread of about ``0.5`` from the means and about
    ``0.5`` within a component (pixel-like values of order 1), the pancakes
    extend ``~ factor_scale sqrt(d)`` along each of their ``rank`` directions,
    comparable to the distances ``~ mean_scale sqrt(2 d)`` between means, and
    are only ``sqrt(diag_var) ≈ 0.03`` thick off the manifold.  Weights default
    to ``1, 2, ..., n_components`` (normalised).
    """
    for nm, v in (("d", d), ("n_components", n_components), ("rank", rank)):
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if nm == "rank" else 1):
            raise ValueError(f"{nm} must be a positive integer, got {v!r}")
    if not diag_var > 0:
        raise ValueError(f"diag_var must be > 0, got {diag_var!r}")
    g = torch.Generator().manual_seed(seed)
    means = mean_scale * torch.randn(n_components, d, generator=g, dtype=torch.float64)
    factors = factor_scale * torch.randn(n_components, d, rank, generator=g, dtype=torch.float64)
    diagonal = torch.full((n_components, d), float(diag_var), dtype=torch.float64)
    if weights is None:
        weights = torch.arange(1, n_components + 1, dtype=torch.float64)
    return GaussianMixture(weights, means, factors=factors, diagonal=diagonal, dtype=dtype, device=device,
                           name="lowrank")


#: the preset constructors by name
PRESETS = {"ring": ring, "grid": grid, "lowrank": lowrank}


def preset(name: str, **kw) -> GaussianMixture:
    """Build a preset by name: ``"ring"``, ``"grid"`` or ``"lowrank"``; ``kw`` go to its constructor."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](**kw)


def load_target(spec, **kw) -> GaussianMixture:
    """Turn a target spec into a mixture.

    ``spec`` is a :class:`GaussianMixture` (returned as is), a preset name
    (``"ring"``, ``"grid"``, ``"lowrank"``; ``kw`` go to the preset) or the path
    of a ``.json`` file in the :meth:`GaussianMixture.from_dict` layout (``kw``
    may hold ``dtype`` / ``device``).
    """
    if isinstance(spec, GaussianMixture):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise ValueError(f"target must be a preset name, a .json path or a GaussianMixture, got {type(spec).__name__}")
    if isinstance(spec, str) and spec in PRESETS:
        return preset(spec, **kw)
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.exists():
        if path.is_dir():
            raise IsADirectoryError(f"target {str(path)!r} is a folder, not a mixture .json file")
        if not path.is_file():
            raise FileNotFoundError(f"target file not found: {str(path)!r}")
        return GaussianMixture.load(path, **kw)
    raise ValueError(f"unknown target {str(spec)!r}; expected one of {sorted(PRESETS)} or a path to a .json file")
