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
(``[C]``), and are chosen by name through :data:`X_UPDATES`.  :func:`as_move` turns a name or such a function into
a *move* returning :class:`LangevinMove`, which adds the acceptance probability (what a kernel reports), and
:class:`StepSize` is the step-size policy ``eta + eta_rel sigma^2``, validated once.

Stability: for a Gaussian component of variance tau, ULA with an absolute
step eta diverges once ``eta > 4 (tau + sigma^2)`` (:func:`langevin_stability_bound`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from dmcmc_edu.core.contract import per_sample
from dmcmc_edu.core.random import normal, uniform

__all__ = ["ula_step", "mala_step", "X_UPDATES", "get_x_update", "step_size", "langevin_stability_bound",
           "LangevinMove", "as_move", "StepSize"]


class LangevinMove(NamedTuple):
    """One x-update: the new states, MALA's accept decisions (None for ULA) and acceptance probabilities [C]."""

    x: torch.Tensor
    accepted: torch.Tensor | None
    acceptance: torch.Tensor  # min(1, MH ratio) in float64; 1 for ULA


def _score(model, x, sigma):
    return (model(x, sigma) - x) / per_sample(sigma, x) ** 2


def ula_step(model, x, sigma, eta, generator=None):
    """Unadjusted Langevin: ``x' = x + (eta/2) s(x) + sqrt(eta) z`` (1 NFE).  Returns ``(x', None)``."""
    e = per_sample(eta, x)
    z = normal(x.shape, generator, x.dtype, x.device)
    return x + 0.5 * e * _score(model, x, sigma) + e.sqrt() * z, None


def mala_step(model, x, sigma, eta, generator=None):
    """Metropolis-adjusted Langevin (2 NFE): the ULA proposal, accepted with the MH probability.

    Returns ``(x_new, accepted)``; ``accepted`` is a boolean ``[C]`` (:func:`mala_move` adds the probability).
    """
    move = mala_move(model, x, sigma, eta, generator)
    return move.x, move.accepted


def mala_move(model, x, sigma, eta, generator=None) -> LangevinMove:
    """:func:`mala_step` as a :class:`LangevinMove`: also ``min(1, exp(log alpha))`` per chain (0 where NaN)."""
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
    log_alpha = log_alpha.to(torch.float64)
    accepted = torch.log(u) < log_alpha
    prob = torch.where(torch.isnan(log_alpha), 0.0, log_alpha.clamp(max=0.0).exp())
    return LangevinMove(torch.where(per_sample(accepted, x), x_prop, x), accepted, prob)


X_UPDATES = {"ula": ula_step, "mala": mala_step}  # the x-updates by name


def get_x_update(name: str):
    """Look up an x-update of :data:`X_UPDATES` by name."""
    if name not in X_UPDATES:
        raise ValueError(f"unknown x-update {name!r}; choose one of {', '.join(X_UPDATES)}")
    return X_UPDATES[name]


def as_move(x_update):
    """A name of :data:`X_UPDATES` or an x-update function ``-> (x_new, accepted)`` as a function returning a
    :class:`LangevinMove` (acceptance: MALA's probability; a custom function's ``accepted`` as 0/1; else 1)."""
    if isinstance(x_update, str):
        get_x_update(x_update)
        return mala_move if x_update == "mala" else _as_move(X_UPDATES[x_update])
    if not callable(x_update):
        raise TypeError(f"x_update must be a name ({', '.join(X_UPDATES)}) or a function, got {x_update!r}")
    return _as_move(x_update)


def _as_move(fn):
    def move(model, x, sigma, eta, generator=None) -> LangevinMove:
        x_new, accepted = fn(model, x, sigma, eta, generator)
        prob = (torch.ones(x.shape[0], dtype=torch.float64, device=x.device) if accepted is None
                else accepted.to(torch.float64))
        return LangevinMove(x_new, accepted, prob)
    return move


def _positive(eta) -> bool:
    if isinstance(eta, torch.Tensor):
        return bool(torch.isfinite(eta).all() and (eta > 0).all())
    return isinstance(eta, (int, float)) and not isinstance(eta, bool) and math.isfinite(eta) and eta > 0


@dataclass(frozen=True, eq=False)
class StepSize:
    """The step-size policy: per-chain step ``eta + eta_rel * sigma^2`` (the paper: ``eta_rel = 0``).

    ``eta`` is a number or one per chain ``[C]``; both are checked once, here, so a call never syncs with the
    device.  ``policy(sigma, x)`` returns the ``[C]`` steps in x's dtype, the numbers :func:`step_size` gives.
    """

    eta: float | torch.Tensor
    eta_rel: float = 0.0

    def __post_init__(self):
        if not isinstance(self.eta, (int, float, torch.Tensor)):
            try:
                object.__setattr__(self, "eta", torch.as_tensor(self.eta))
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"eta must be a number or one per chain, got {self.eta!r}") from None
        if not _positive(self.eta):
            raise ValueError(f"eta must be > 0 and finite, got {self.eta}")
        if not (isinstance(self.eta_rel, (int, float)) and math.isfinite(self.eta_rel) and self.eta_rel >= 0):
            raise ValueError(f"eta_rel must be >= 0 and finite, got {self.eta_rel}")

    def __call__(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        eta = self.eta if not self.eta_rel else self.eta + self.eta_rel * sigma**2
        eta = torch.as_tensor(eta, dtype=x.dtype, device=x.device)
        return eta.expand(x.shape[0]) if eta.ndim == 0 else eta


def step_size(eta: float, eta_rel: float, sigma: torch.Tensor):
    """Per-chain step ``eta + eta_rel * sigma^2`` (the paper's absolute eta when ``eta_rel = 0``)."""
    return eta if not eta_rel else eta + eta_rel * sigma**2


def langevin_stability_bound(min_variance: float, sigma: float) -> float:
    """Largest stable absolute step for a Gaussian of variance ``min_variance + sigma^2``: ``4 (tau + sigma^2)``."""
    return 4.0 * (min_variance + sigma**2)
