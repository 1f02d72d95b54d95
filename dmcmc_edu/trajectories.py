"""Recorded paths for pictures: an integrator's trajectory, a DLG chain's steps.

The core algorithms keep only the current state; the notebooks draw whole
paths.  These two helpers run the core functions and keep every state.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.dlg import DivergenceMonitor, DLGState, dlg_kernel
from dmcmc_edu.registry import get_integrator

__all__ = ["integrate_with_path", "run_chain"]


def integrate_with_path(integrator, model, x, sigma_start, sigma_min, steps, **options):
    """Run an integrator by name and record its path: returns ``(x_out, info, path)``, path [steps + 1, B, ...].

    (RK45 reports only its end point; its path has two entries.)
    """
    path = [x.detach().clone()]
    fn = get_integrator(integrator)
    out, info = fn(model, x, sigma_start, sigma_min, steps, callback=lambda d: path.append(d["x"].detach().clone()),
                   **options)
    return out, info, torch.stack(path)


def run_chain(model, state: DLGState, sigma_update, n_steps: int, *, eta, eta_rel=0.0, generator=None,
              x_update="ula"):
    """Run ``n_steps`` Gibbs steps and record them: returns ``(state, xs [T+1, C, ...], sigmas [T+1, C])``.

    The step of each chain is ``eta + eta_rel * sigma^2``; the kernel is built once
    (:func:`~dmcmc_edu.core.dlg.dlg_kernel`) and a chain that diverges raises ``FloatingPointError`` after the run,
    naming the first step at which it did.
    """
    kernel = dlg_kernel(model, sigma_update, state.grid, eta=eta, eta_rel=eta_rel, x_update=x_update)
    monitor = DivergenceMonitor()
    xs, sig = [state.x.detach().clone()], [state.sigma.detach().clone()]
    for _ in range(n_steps):
        before = state
        state, info = kernel.step(state, generator)
        monitor.update(before, info)
        xs.append(state.x.detach().clone())
        sig.append(state.sigma.detach().clone())
    monitor.check()
    return state, torch.stack(xs), torch.stack(sig)
