"""Denoising Langevin Gibbs (DLG): a Gibbs kernel on the product space (x, sigma), built once, in init/step form.

Target: ``p(x, sigma_i) ∝ p_{sigma_i}(x) prior_i`` on a grid of noise levels (uniform prior by default, as in
the paper).  One Gibbs step is

1. the **x-update** at the current sigma (:mod:`dmcmc_edu.core.langevin`:
   ``"ula"``, the paper's, or ``"mala"``), then
2. the **sigma-update** at the new x (:mod:`dmcmc_edu.core.sigma_updates`:
   ``"exact"``, ``"classifier-argmax"``, the paper's, or ``"classifier-sample"``).

With ``"mala"`` and ``"exact"`` each half-step leaves p(x, sigma) invariant, so the chain samples the joint
exactly; the paper's ULA + argmax is a fast, biased approximation.

As in blackjax, :func:`dlg_kernel` resolves everything once -- model, x-update (by name), sigma-update, step-size
policy (:class:`~dmcmc_edu.core.langevin.StepSize`) and grid -- into a :class:`DLGKernel` with
``init(x, sigma_or_index) -> DLGState`` and ``step(state, generator) -> (DLGState, DLGInfo)``.  ``DLGInfo`` holds,
per chain, MALA's acceptance probability (1 for ULA) and a divergence flag computed on the device, with no host
sync; a :class:`DivergenceMonitor` turns the flags of many steps into one check.  :func:`dlg_init` and
:func:`dlg_step` are the one-call forms (a kernel per call, which raises on divergence).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from dmcmc_edu.core.contract import check_x
from dmcmc_edu.core.langevin import StepSize, as_move
from dmcmc_edu.core.schedules import check_grid

__all__ = ["DLGState", "DLGInfo", "DLGKernel", "DivergenceMonitor", "dlg_kernel", "dlg_init", "dlg_step",
           "nearest_grid_index", "DIVERGENCE_SCALE"]

DIVERGENCE_SCALE = 100.0  # a chain whose RMS coordinate exceeds this many sigma_max (or is NaN/inf) has diverged


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
    """What one Gibbs step did (diagnostics, not state); every field has one entry per chain."""

    index: torch.Tensor  # the new sigma index per chain
    accepted: torch.Tensor | None = None  # MALA's accept decisions (None for ULA)
    acceptance: torch.Tensor | None = None  # acceptance probability min(1, MH ratio), float64 (1 for ULA)
    diverged: torch.Tensor | None = None  # the x-update gave NaN/inf or an RMS beyond DIVERGENCE_SCALE sigma_max
    eta: torch.Tensor | None = None  # the Langevin step each chain took


def nearest_grid_index(grid: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Index of the grid level nearest (in log sigma) to each sigma."""
    return (torch.log(grid)[None, :].double() - torch.log(sigma)[:, None].double()).abs().argmin(dim=1)


def _state(x: torch.Tensor, index_or_sigma, grid: torch.Tensor, name: str = "index_or_sigma") -> DLGState:
    check_x(x)
    v = torch.as_tensor(index_or_sigma, device=x.device)
    v = v.expand(x.shape[0]) if v.ndim == 0 else v
    if v.shape != (x.shape[0],):
        raise ValueError(f"{name}: need one sigma (or index) per chain: shape [{x.shape[0]}], got {tuple(v.shape)}")
    if torch.is_floating_point(v):
        bad = (~torch.isfinite(v) | (v <= 0)).nonzero().flatten()
        if bad.numel():  # snapping NaN, inf or sigma <= 0 to a grid level would hide the mistake
            raise ValueError(f"{name}: noise levels must be finite and > 0; chain(s) {bad[:10].tolist()} have "
                             f"{v[bad[:3]].tolist()}")
        index = nearest_grid_index(grid, v)
    else:
        index = v.long()
        if (index < 0).any() or (index >= grid.numel()).any():
            raise ValueError(f"{name}: sigma indices must lie in [0, {grid.numel() - 1}]")
    return DLGState(x=x, index=index, grid=grid)


def dlg_init(x: torch.Tensor, index_or_sigma: torch.Tensor, grid: torch.Tensor) -> DLGState:
    """Create a chain state; pass grid indices (integer tensor) or noise levels (finite, > 0; snapped to the grid).

    A NaN, infinite or non-positive noise level raises ``ValueError`` naming ``index_or_sigma``.
    """
    return _state(x, index_or_sigma, check_grid(torch.as_tensor(grid)).to(x.device))


def _divergence_error(chains: torch.Tensor, step: int, sigma: torch.Tensor, eta: torch.Tensor) -> FloatingPointError:
    s = sigma[:3]
    return FloatingPointError(f"DLG: chain(s) {chains[:10].tolist()} at Gibbs step {step} diverged (sigma "
                              f"{s.tolist()}, eta {eta[:3].tolist()}); Langevin with an absolute step is stable only "
                              f"for eta < 4 (tau + sigma^2) = 4 tau + {(4 * s**2).tolist()} for a component of "
                              "variance tau: lower eta")


class DLGKernel:
    """DLG built once (see :func:`dlg_kernel`): ``init(x, sigma_or_index)`` and ``step(state, generator)``.

    ``on_divergence="flag"`` only sets ``info.diverged`` (no host sync); ``"raise"`` checks after each x-update and
    raises ``FloatingPointError`` naming chains, step, sigma and eta (one sync per step).
    """

    def __init__(self, model, sigma_update, grid, *, step_size: StepSize, x_update="ula", on_divergence="flag",
                 _grid_checked=False):
        if on_divergence not in ("flag", "raise"):
            raise ValueError(f"on_divergence must be 'flag' or 'raise', got {on_divergence!r}")
        if not isinstance(step_size, StepSize):
            raise TypeError(f"step_size must be a StepSize, got {type(step_size).__name__}")
        if x_update == "mala" and not hasattr(model, "log_prob"):
            raise TypeError("x_update='mala' needs a model with log_prob(x, sigma), e.g. a GaussianMixture")
        self.model, self.sigma_update, self.step_size = model, sigma_update, step_size
        self.grid = grid if _grid_checked else check_grid(torch.as_tensor(grid))
        self.x_update, self.move, self.on_divergence = x_update, as_move(x_update), on_divergence
        self._bound_sq = (DIVERGENCE_SCALE * float(self.grid[0])) ** 2

    def with_step_size(self, step_size: StepSize) -> "DLGKernel":
        """The same kernel with another step-size policy (a burn-in phase); nothing is resolved again."""
        if not isinstance(step_size, StepSize):
            raise TypeError(f"step_size must be a StepSize, got {type(step_size).__name__}")
        other = copy.copy(self)
        other.step_size = step_size
        return other

    def init(self, x: torch.Tensor, sigma_or_index) -> DLGState:
        """A chain state on the kernel's grid: integer indices, or noise levels (finite, > 0) snapped to the nearest
        level; anything else raises ``ValueError`` naming ``sigma_or_index``."""
        return _state(x, sigma_or_index, self.grid.to(x.device), "sigma_or_index")

    def diverged(self, x: torch.Tensor) -> torch.Tensor:
        """Per chain: NaN/inf, or mean square above ``(DIVERGENCE_SCALE sigma_max)^2`` (a device tensor, no sync)."""
        flat = x.reshape(x.shape[0], -1)
        ms = flat.to(torch.promote_types(flat.dtype, torch.float32)).pow(2).mean(1)
        return ~(ms <= self._bound_sq)

    def step(self, state: DLGState, generator=None) -> tuple[DLGState, DLGInfo]:
        """One Gibbs step: the x-update at each chain's sigma, then the sigma-update at the new x."""
        sigma = state.sigma
        eta = self.step_size(sigma, state.x)
        move = self.move(self.model, state.x, sigma, eta, generator)
        diverged = self.diverged(move.x)
        if self.on_divergence == "raise" and diverged.any():
            raise _divergence_error(diverged.nonzero().flatten(), state.step, sigma[diverged], eta[diverged])
        index = self.sigma_update(move.x, state.grid, generator).to(state.index.device)
        new = DLGState(x=move.x, index=index, grid=state.grid, step=state.step + 1)
        return new, DLGInfo(index=index, accepted=move.accepted, acceptance=move.acceptance, diverged=diverged,
                            eta=eta)


def dlg_kernel(model, sigma_update, grid, *, eta, eta_rel: float = 0.0, x_update="ula",
               on_divergence: str = "flag") -> DLGKernel:
    """Build the DLG kernel once.

    ``model``: a denoiser ``D(x, sigma)`` (MALA also needs ``log_prob``); ``sigma_update``: a callable
    ``(x, grid, generator) -> index`` (:mod:`dmcmc_edu.core.sigma_updates`); ``grid``: the decreasing noise levels;
    ``eta``, ``eta_rel``: the step ``eta + eta_rel sigma^2`` (eta a number or one per chain, checked here once);
    ``x_update``: ``"ula"`` (the paper), ``"mala"`` or a function of :mod:`dmcmc_edu.core.langevin`'s protocol.
    """
    return DLGKernel(model, sigma_update, grid, step_size=StepSize(eta, eta_rel), x_update=x_update,
                     on_divergence=on_divergence)


class DivergenceMonitor:
    """Collects ``info.diverged`` over many steps on the device; :meth:`check` syncs once.

    ``update(state, info)`` takes the state *before* the step; :meth:`check` raises ``FloatingPointError`` naming
    the chains that diverged first, the step, and their sigma and eta then.
    """

    def __init__(self):
        self.first = self.sigma = self.eta = None

    def update(self, state: DLGState, info: DLGInfo) -> None:
        if info.diverged is None:
            return
        if self.first is None:
            self.first = torch.full_like(info.diverged, -1, dtype=torch.long)
            self.sigma, self.eta = torch.zeros_like(info.eta), torch.zeros_like(info.eta)
        new = info.diverged & (self.first < 0)
        self.first = torch.where(new, state.step, self.first)
        self.sigma = torch.where(new, state.sigma, self.sigma)
        self.eta = torch.where(new, info.eta, self.eta)

    def check(self) -> None:
        if self.first is None or not bool((self.first >= 0).any()):
            return
        step = int(self.first[self.first >= 0].min())
        bad = (self.first == step).nonzero().flatten()
        raise _divergence_error(bad, step, self.sigma[bad], self.eta[bad])


def dlg_step(model, state: DLGState, sigma_update, *, eta, generator=None, x_update="ula"):
    """One Denoising-Langevin-Gibbs step, building its kernel (:func:`dlg_kernel`) on the spot.

    ``sigma_update`` is a callable ``(x, grid, generator) -> index`` (:mod:`dmcmc_edu.core.sigma_updates`);
    ``eta`` the absolute Langevin step (> 0), a float or one per chain; ``generator`` one generator or one per
    chain; ``x_update`` ``"ula"`` (the paper), ``"mala"`` or a function of :mod:`dmcmc_edu.core.langevin`.
    Returns ``(new_state, info)``; a diverged chain raises ``FloatingPointError`` naming chains and step.  For
    many steps build the kernel once: this resolves the x-update and checks eta on every call.
    """
    kernel = DLGKernel(model, sigma_update, state.grid, step_size=StepSize(eta), x_update=x_update,
                       on_divergence="raise", _grid_checked=True)
    return kernel.step(state, generator)
