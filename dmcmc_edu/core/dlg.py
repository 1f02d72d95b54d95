"""Denoising Langevin Gibbs (DLG): a Gibbs kernel on the product space (x, sigma), in init/step form.

Target: ``p(x, sigma_i) ∝ p_{sigma_i}(x) prior_i`` on a grid of noise levels (uniform prior by default, as in
the paper).  One Gibbs step is

1. the **x-update** at the current sigma (:mod:`dmcmc_edu.core.langevin`:
   ``"ula"``, the paper's, or ``"mala"``), then
2. the **sigma-update** at the new x (:mod:`dmcmc_edu.core.sigma_updates`:
   ``"exact"``, ``"classifier-argmax"``, the paper's, or ``"classifier-sample"``).

With ``"mala"`` and ``"exact"`` each half-step leaves p(x, sigma) invariant, so the chain samples the joint
exactly; the paper's ULA + argmax is a fast, biased approximation.  As in blackjax, :func:`dlg_init` builds a
:class:`DLGState` and :func:`dlg_step` returns ``(new_state, DLGInfo)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dmcmc_edu.core.contract import check_x, nonfinite_rows
from dmcmc_edu.core.langevin import get_x_update
from dmcmc_edu.core.schedules import check_grid

__all__ = ["DLGState", "DLGInfo", "dlg_init", "dlg_step", "nearest_grid_index"]


@dataclass
class DLGState:
    """Chain state: positions ``x`` [C, ...] and noise-level indices ``index`` [C] into ``grid``."""

    x: torch.Tensor
    index: torch.Tensor
    grid: torch.Tensor
    step: int = 0

    @property
    def sigma(self) -> torch.Tensor:
        """Per-chain noise levels ``grid[index]`` (in x's dtype)."""
        return self.grid[self.index].to(self.x.dtype)


@dataclass
class DLGInfo:
    """What one Gibbs step did (diagnostics, not state)."""

    index: torch.Tensor  # the new sigma index per chain
    accepted: torch.Tensor | None = None  # MALA acceptance per chain (None for ULA)


def nearest_grid_index(grid: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Index of the grid level nearest (in log sigma) to each sigma."""
    return (torch.log(grid)[None, :].double() - torch.log(sigma)[:, None].double()).abs().argmin(dim=1)


def dlg_init(x: torch.Tensor, index_or_sigma: torch.Tensor, grid: torch.Tensor) -> DLGState:
    """Create a chain state; pass grid indices (integer tensor) or noise levels (snapped to the grid)."""
    check_x(x)
    grid = check_grid(torch.as_tensor(grid)).to(x.device)
    v = torch.as_tensor(index_or_sigma, device=x.device)
    v = v.expand(x.shape[0]) if v.ndim == 0 else v
    if v.shape != (x.shape[0],):
        raise ValueError(f"need one sigma (or index) per chain: shape [{x.shape[0]}], got {tuple(v.shape)}")
    if torch.is_floating_point(v):
        index = nearest_grid_index(grid, v)
    else:
        index = v.long()
        if (index < 0).any() or (index >= grid.numel()).any():
            raise ValueError(f"sigma indices must lie in [0, {grid.numel() - 1}]")
    return DLGState(x=x, index=index, grid=grid)


def _per_chain_eta(eta, x: torch.Tensor) -> torch.Tensor:
    eta_t = torch.as_tensor(eta, dtype=x.dtype, device=x.device)
    if not torch.isfinite(eta_t).all() or (eta_t <= 0).any():
        raise ValueError(f"eta must be > 0 and finite, got {eta}")
    return eta_t.expand(x.shape[0]) if eta_t.ndim == 0 else eta_t


def _check_bounded(x_new, state: DLGState, eta) -> None:  # diverged: NaN/inf, or an RMS coordinate > 100 sigma_max
    rms = x_new.reshape(x_new.shape[0], -1).double().pow(2).mean(1).sqrt()
    bad = torch.unique(torch.cat([nonfinite_rows(x_new), (rms > 100 * state.grid[0]).nonzero().flatten()]))
    if bad.numel():
        s = state.sigma[bad[:3]]
        raise FloatingPointError(f"DLG: chain(s) {bad[:10].tolist()} at Gibbs step {state.step} diverged (sigma "
                                 f"{s.tolist()}, eta {eta[bad[:3]].tolist()}); Langevin with an absolute step is "
                                 f"stable only for eta < 4 (tau + sigma^2) = 4 tau + {(4 * s**2).tolist()} for a "
                                 "component of variance tau: lower eta")


def dlg_step(model, state: DLGState, sigma_update, *, eta, generator=None, x_update="ula"):
    """One Denoising-Langevin-Gibbs step: the x-update at the current sigma, then the sigma-update.

    ``sigma_update`` is a callable ``(x, grid, generator) -> index`` (:mod:`dmcmc_edu.core.sigma_updates`);
    ``eta`` the absolute Langevin step (> 0), a float or one per chain; ``generator`` one generator or one per
    chain; ``x_update`` ``"ula"`` (the paper), ``"mala"`` or a function of :mod:`dmcmc_edu.core.langevin`.
    Returns ``(new_state, info)``; a non-finite state raises ``FloatingPointError`` naming chains and step.
    """
    update_x = get_x_update(x_update) if isinstance(x_update, str) else x_update
    eta_t = _per_chain_eta(eta, state.x)
    x_new, accepted = update_x(model, state.x, state.sigma, eta_t, generator)
    _check_bounded(x_new, state, eta_t)
    index = sigma_update(x_new, state.grid, generator).to(state.index.device)
    new = DLGState(x=x_new, index=index, grid=state.grid, step=state.step + 1)
    return new, DLGInfo(index=index, accepted=accepted)
