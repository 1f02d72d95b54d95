"""Denoising Langevin Gibbs (DLG): a Gibbs kernel on the product space (x, sigma), in init/step form.

Target: ``p(x, sigma_i) ∝ p_{sigma_i}(x) prior_i`` over a grid of noise levels
(uniform prior by default, as in the paper).  One Gibbs step is

1. **x-update** at the current sigma, either

   * ``"ula"`` -- unadjusted Langevin with the paper's *absolute* step size eta:
     ``x <- x + (eta/2) score(x, sigma) + sqrt(eta) z`` (1 NFE), or
   * ``"mala"`` -- the same proposal with a Metropolis-Hastings correction on
     ``log p_sigma(x)``; needs a model with ``log_prob(x, sigma)`` (the analytic
     mixture) and costs 2 NFE (score at the state and at the proposal).
     ULA is biased (its stationary law is wider than p_sigma); MALA is exact.

2. **sigma-update**, a named, pluggable choice (:data:`SIGMA_UPDATES`):

   * ``"exact"``            -- draw from the exact posterior p(sigma_i | x) of an analytic mixture,
   * ``"classifier-argmax"`` -- the paper: the argmax of a noise-level classifier q(i | x),
   * ``"classifier-sample"`` -- draw from the classifier's softmax (times the prior ratio).

With ``"exact"`` and ``"mala"`` each half-step leaves p(x, sigma) invariant,
so the chain samples the joint exactly; the paper's ULA + argmax is a fast,
biased approximation.

Stability note: for a Gaussian component of variance tau, ULA with an absolute
step eta diverges once ``eta > 4 (tau + sigma^2)``; at small sigma this bounds
eta by the data's finest scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .contract import check_x
from .integrators import randn
from .schedules import check_grid

__all__ = [
    "DLGState",
    "DLGInfo",
    "dlg_init",
    "dlg_step",
    "ExactSigmaUpdate",
    "ClassifierArgmaxUpdate",
    "ClassifierSampleUpdate",
    "SIGMA_UPDATES",
    "make_sigma_update",
    "nearest_grid_index",
    "run_chain",
    "step_size",
    "langevin_stability_bound",
]


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
    extra: dict = field(default_factory=dict)


def nearest_grid_index(grid: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Index of the grid level nearest (in log sigma) to each sigma."""
    d = (torch.log(grid)[None, :].to(torch.float64) - torch.log(sigma)[:, None].to(torch.float64)).abs()
    return d.argmin(dim=1)


def dlg_init(x: torch.Tensor, index_or_sigma: torch.Tensor, grid: torch.Tensor) -> DLGState:
    """Create a chain state; pass grid indices (integer tensor) or noise levels (snapped to the grid)."""
    check_x(x)
    grid = check_grid(torch.as_tensor(grid)).to(x.device)
    v = torch.as_tensor(index_or_sigma, device=x.device)
    if v.ndim == 0:
        v = v.expand(x.shape[0])
    if v.shape != (x.shape[0],):
        raise ValueError(f"need one sigma (or index) per chain: shape [{x.shape[0]}], got {tuple(v.shape)}")
    if torch.is_floating_point(v):
        index = nearest_grid_index(grid, v)
    else:
        index = v.long()
        if (index < 0).any() or (index >= grid.numel()).any():
            raise ValueError(f"sigma indices must lie in [0, {grid.numel() - 1}]")
    return DLGState(x=x, index=index, grid=grid)


# ----------------------------------------------------------------------------- sigma-updates


def _log_prior(log_prior, grid):
    if log_prior is None:
        return None
    lp = torch.as_tensor(log_prior, dtype=torch.float64, device=grid.device)
    if lp.shape != grid.shape:
        raise ValueError(f"log_prior must have the grid's shape {tuple(grid.shape)}, got {tuple(lp.shape)}")
    return lp - torch.logsumexp(lp, 0)


class ExactSigmaUpdate:
    """Draw sigma from the exact posterior p(sigma_i | x) ∝ p_{sigma_i}(x) prior_i of an analytic model.

    ``model`` must provide ``sigma_log_posterior(x, grid, log_prior)`` (e.g. :class:`GaussianMixture`).
    Costs no network evaluation (it is an oracle, available only for analytic targets).
    """

    name = "exact"

    def __init__(self, model, log_prior=None):
        if not hasattr(model, "sigma_log_posterior"):
            raise TypeError("the 'exact' sigma-update needs a model with sigma_log_posterior (an analytic mixture)")
        self.model = model
        self.log_prior = log_prior

    def __call__(self, x, grid, generator=None):
        logp = self.model.sigma_log_posterior(x, grid, log_prior=_log_prior(self.log_prior, grid))
        return _draw(logp, generator)


class _ClassifierUpdate:
    def __init__(self, classifier, log_prior=None):
        self.classifier = classifier
        self.log_prior = log_prior

    def _log_q(self, x, grid):
        n = getattr(self.classifier, "n_levels", None)
        if n is not None and n != grid.numel():
            raise ValueError(f"the classifier predicts {n} levels but the chain's grid has {grid.numel()}")
        c_grid = getattr(self.classifier, "grid", None)
        if c_grid is not None and not torch.allclose(c_grid.to(grid), grid, rtol=1e-6):
            raise ValueError("the classifier was trained on a different noise-level grid than the chain's")
        logq = self.classifier.log_probs(x).to(torch.float64)
        lp = _log_prior(self.log_prior, grid)
        if lp is not None:  # classifier trained under a uniform prior: reweight by the prior ratio
            logq = torch.log_softmax(logq + lp, dim=1)
        return logq


class ClassifierArgmaxUpdate(_ClassifierUpdate):
    """The paper's sigma-update: the argmax of the noise-level classifier q(i | x) (deterministic)."""

    name = "classifier-argmax"

    def __call__(self, x, grid, generator=None):
        return self._log_q(x, grid).argmax(dim=1)


class ClassifierSampleUpdate(_ClassifierUpdate):
    """Draw sigma from the classifier's softmax q(i | x) (a Gibbs step if q were exact)."""

    name = "classifier-sample"

    def __call__(self, x, grid, generator=None):
        return _draw(self._log_q(x, grid), generator)


def _draw(logp: torch.Tensor, generator) -> torch.Tensor:
    """One categorical draw per row of log-probabilities (inverse CDF with the given generator)."""
    p = torch.softmax(logp.to(torch.float64), dim=1)
    cdf = p.cumsum(dim=1)
    u = torch.rand(logp.shape[0], 1, generator=generator, dtype=torch.float64,
                   device=generator.device if generator is not None else logp.device).to(logp.device)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(1)
    return idx.clamp(max=logp.shape[1] - 1)


SIGMA_UPDATES = {
    "exact": ExactSigmaUpdate,
    "classifier-argmax": ClassifierArgmaxUpdate,
    "classifier-sample": ClassifierSampleUpdate,
}


def make_sigma_update(name: str, *, model=None, classifier=None, log_prior=None):
    """Build a sigma-update by name: ``exact`` needs ``model``; the classifier ones need ``classifier``."""
    if name not in SIGMA_UPDATES:
        raise ValueError(f"unknown sigma-update {name!r}; choose one of {', '.join(SIGMA_UPDATES)}")
    if name == "exact":
        return ExactSigmaUpdate(model, log_prior)
    if classifier is None:
        raise ValueError(f"the {name!r} sigma-update needs a noise-level classifier")
    return SIGMA_UPDATES[name](classifier, log_prior)


# ----------------------------------------------------------------------------- the Gibbs step


def _bc(v, x):
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


def dlg_step(model, state: DLGState, sigma_update, *, eta, generator=None, x_update: str = "ula"):
    """One Denoising-Langevin-Gibbs step: x-update at the current sigma, then the sigma-update.

    Parameters
    ----------
    model : denoiser D(x, sigma) (wrap it in a CountingDenoiser to count NFE).
    state : :class:`DLGState`.
    sigma_update : a callable ``(x, grid, generator) -> index`` (see :func:`make_sigma_update`).
    eta : absolute Langevin step size (> 0), a float or a per-chain [C] tensor.
    x_update : ``"ula"`` (the paper) or ``"mala"`` (Metropolis-adjusted; needs ``model.log_prob``).

    Returns ``(new_state, info)``.  Raises ``FloatingPointError`` naming the
    chain(s) and step when a state becomes non-finite.
    """
    x, grid = state.x, state.grid
    eta_t = torch.as_tensor(eta, dtype=x.dtype, device=x.device)
    if not torch.isfinite(eta_t).all() or (eta_t <= 0).any():
        raise ValueError(f"eta must be > 0 and finite, got {eta}")
    if eta_t.ndim == 0:
        eta_t = eta_t.expand(x.shape[0])
    sigma = state.sigma
    s2 = _bc(sigma, x) ** 2
    e = _bc(eta_t, x)
    score = (model(x, sigma) - x) / s2
    z = randn(x.shape, generator, x.dtype, x.device)
    prop = x + 0.5 * e * score + e.sqrt() * z
    accepted = None
    if x_update == "mala":
        if not hasattr(model, "log_prob"):
            raise TypeError("x_update='mala' needs a model with log_prob(x, sigma), e.g. a GaussianMixture")
        score_p = (model(prop, sigma) - prop) / s2
        flat = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731
        # log q(prop | x) and log q(x | prop) for the Gaussian Langevin proposal N(. ; y + eta/2 s(y), eta I)
        log_fwd = -(flat(prop - x - 0.5 * e * score) ** 2).sum(1) / (2 * eta_t)
        log_bwd = -(flat(x - prop - 0.5 * e * score_p) ** 2).sum(1) / (2 * eta_t)
        log_alpha = model.log_prob(prop, sigma) - model.log_prob(x, sigma) + log_bwd - log_fwd
        u = torch.rand(x.shape[0], generator=generator, dtype=torch.float64,
                       device=generator.device if generator is not None else x.device).to(x.device)
        accepted = torch.log(u) < log_alpha.to(torch.float64)
        x_new = torch.where(_bc(accepted, x), prop, x)
    elif x_update == "ula":
        x_new = prop
    else:
        raise ValueError(f"x_update must be 'ula' or 'mala', got {x_update!r}")
    if not torch.isfinite(x_new.reshape(x.shape[0], -1)).all():
        bad = (~torch.isfinite(x_new.reshape(x.shape[0], -1))).any(1).nonzero().flatten()
        raise FloatingPointError(
            f"DLG: non-finite state in chain(s) {bad[:10].tolist()} at Gibbs step {state.step} "
            f"(sigma {sigma[bad[:3]].tolist()}, eta {eta_t[bad[:3]].tolist()}); Langevin with an absolute step "
            "is unstable once eta > 4 (component variance + sigma^2): lower eta"
        )
    index = sigma_update(x_new, grid, generator)
    new = DLGState(x=x_new, index=index.to(state.index.device), grid=grid, step=state.step + 1)
    return new, DLGInfo(index=new.index, accepted=accepted)


def step_size(eta: float, eta_rel: float, sigma: torch.Tensor):
    """Per-chain Langevin step ``eta + eta_rel * sigma^2`` (the paper's absolute eta when ``eta_rel = 0``)."""
    return eta if not eta_rel else eta + eta_rel * sigma**2


def run_chain(model, state: DLGState, sigma_update, n_steps: int, *, eta, eta_rel=0.0, generator=None,
              x_update="ula"):
    """Run ``n_steps`` Gibbs steps and record them: returns ``(state, xs [T+1, C, ...], sigmas [T+1, C])``.

    The step of each chain is ``eta + eta_rel * sigma^2`` (see :func:`step_size`).
    """
    xs, sig = [state.x.detach().clone()], [state.sigma.detach().clone()]
    for _ in range(n_steps):
        state, _ = dlg_step(model, state, sigma_update, eta=step_size(eta, eta_rel, state.sigma), generator=generator,
                            x_update=x_update)
        xs.append(state.x.detach().clone())
        sig.append(state.sigma.detach().clone())
    return state, torch.stack(xs), torch.stack(sig)


def langevin_stability_bound(min_variance: float, sigma: float) -> float:
    """Largest stable absolute Langevin step for a Gaussian of variance ``min_variance + sigma^2``: 4 (tau + s^2)."""
    return 4.0 * (min_variance + sigma**2)
