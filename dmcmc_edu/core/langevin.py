"""The x-update of DLG: one Langevin step at a fixed noise level sigma.

With ``s(x) = score(x, sigma) = (D(x, sigma) - x) / sigma^2`` and an absolute
step size ``eta`` (the paper's), the Langevin proposal is

    x' = x + (eta / 2) s(x) + sqrt(eta) z,        z ~ N(0, I).

* :func:`ula_step` -- unadjusted Langevin: always accept ``x'`` (1 NFE; the paper's choice).  Biased: its
  stationary law is wider than p_sigma, more so as eta grows.
* :func:`mala_step` -- Metropolis-adjusted Langevin: accept ``x'`` with probability
  ``min(1, p(x') q(x | x') / (p(x) q(x' | x)))``, ``q(y | x) = N(y; x + (eta/2) s(x), eta I)``; exact for
  p_sigma.  Needs ``model.log_prob`` (the analytic mixture); 2 NFE + 2 log-density rows (the ledger's oracle).

Both map ``(model, x, sigma, eta, generator)`` to ``(x_new, accepted)``, with one sigma and eta per chain
(``[C]``), and are chosen by name through :data:`X_UPDATES`.

Stability: for a Gaussian component of variance tau, ULA with an absolute
step eta diverges once ``eta > 4 (tau + sigma^2)`` (:func:`langevin_stability_bound`).
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import per_sample
from dmcmc_edu.core.random import normal, uniform

__all__ = ["ula_step", "mala_step", "X_UPDATES", "get_x_update", "step_size", "langevin_stability_bound"]


def _score(model, x, sigma):
    return (model(x, sigma) - x) / per_sample(sigma, x) ** 2


def ula_step(model, x, sigma, eta, generator=None):
    """Unadjusted Langevin: ``x' = x + (eta/2) s(x) + sqrt(eta) z`` (1 NFE).  Returns ``(x', None)``."""
    e = per_sample(eta, x)
    z = normal(x.shape, generator, x.dtype, x.device)
    return x + 0.5 * e * _score(model, x, sigma) + e.sqrt() * z, None


def mala_step(model, x, sigma, eta, generator=None):
    """Metropolis-adjusted Langevin (2 NFE): the ULA proposal, accepted with the MH probability.

    Returns ``(x_new, accepted)``; ``accepted`` is a boolean ``[C]``.
    """
    if not hasattr(model, "log_prob"):
        raise TypeError("x_update='mala' needs a model with log_prob(x, sigma), e.g. a GaussianMixture")
    e = per_sample(eta, x)
    s_x = _score(model, x, sigma)
    z = normal(x.shape, generator, x.dtype, x.device)
    x_prop = x + 0.5 * e * s_x + e.sqrt() * z
    s_prop = _score(model, x_prop, sigma)
    # log q(x_prop | x) and log q(x | x_prop) of the Gaussian proposal N(y + eta/2 s(y), eta I)
    log_q_fwd = -((x_prop - x - 0.5 * e * s_x).reshape(x.shape[0], -1) ** 2).sum(1) / (2 * eta)
    log_q_bwd = -((x - x_prop - 0.5 * e * s_prop).reshape(x.shape[0], -1) ** 2).sum(1) / (2 * eta)
    log_alpha = model.log_prob(x_prop, sigma) - model.log_prob(x, sigma) + log_q_bwd - log_q_fwd
    u = uniform(x.shape[0], generator, x.device)
    accepted = torch.log(u) < log_alpha.to(torch.float64)
    return torch.where(per_sample(accepted, x), x_prop, x), accepted


X_UPDATES = {"ula": ula_step, "mala": mala_step}  # the x-updates by name


def get_x_update(name: str):
    """Look up an x-update of :data:`X_UPDATES` by name."""
    if name not in X_UPDATES:
        raise ValueError(f"unknown x-update {name!r}; choose one of {', '.join(X_UPDATES)}")
    return X_UPDATES[name]


def step_size(eta: float, eta_rel: float, sigma: torch.Tensor):
    """Per-chain step ``eta + eta_rel * sigma^2`` (the paper's absolute eta when ``eta_rel = 0``)."""
    return eta if not eta_rel else eta + eta_rel * sigma**2


def langevin_stability_bound(min_variance: float, sigma: float) -> float:
    """Largest stable absolute step for a Gaussian of variance ``min_variance + sigma^2``: ``4 (tau + sigma^2)``."""
    return 4.0 * (min_variance + sigma**2)
