"""The one model contract of dmcmc_edu.

A *denoiser* is any callable ``D(x, sigma)`` that estimates the clean data ``E[x0 | x_sigma = x]``, for ``x`` of
shape ``[B, ...]`` (noisy samples) and ``sigma`` of shape ``[B]`` (one level > 0 per sample).  The score of the
noised density follows from Tweedie's formula, ``score(x, sigma) = (D(x, sigma) - x) / sigma**2``.  Every source
of a model (analytic mixture, trained net, pretrained checkpoint, VP model) is turned into this contract by a small
adapter.  :class:`CountingDenoiser` wraps any of them and counts the evaluations (and oracle rows) it receives.
"""

from __future__ import annotations

from typing import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["Denoiser", "check_x", "check_sigma", "as_sigma_batch", "per_sample", "nonfinite_rows",
           "score_from_denoiser",
           "denoiser_from_score", "CountingDenoiser", "ORACLE_METHODS"]
ORACLE_METHODS = ("sigma_log_posterior", "log_prob")  # an analytic model's methods that no network has


def check_x(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Validate a batch of samples: a floating tensor with a batch dimension and finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape [B, ...] with at least 2 dimensions, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    bad = nonfinite_rows(x)
    if bad.numel():
        raise ValueError(f"{name} has non-finite values (NaN or inf) in sample(s) {bad[:10].tolist()}"
                         + (" ..." if bad.numel() > 10 else ""))
    return x


def nonfinite_rows(x: torch.Tensor) -> torch.Tensor:
    """Indices of the samples (rows along dim 0) that hold a NaN or an infinity."""
    return (~torch.isfinite(x.reshape(x.shape[0], -1))).any(dim=1).nonzero().flatten()


def check_sigma(sigma: torch.Tensor, batch: int, name: str = "sigma", allow_zero: bool = False) -> torch.Tensor:
    """Validate per-sample noise levels: shape ``[batch]``, finite, ``> 0`` (or ``>= 0``)."""
    if not isinstance(sigma, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [{batch}], got {type(sigma).__name__}")
    if sigma.shape != (batch,):
        raise ValueError(f"{name} must have shape [B] = [{batch}] (one level per sample), got {tuple(sigma.shape)}")
    if not torch.isfinite(sigma).all():
        raise ValueError(f"{name} has non-finite values: {sigma[~torch.isfinite(sigma)][:5].tolist()}")
    if (sigma < 0).any() or (not allow_zero and (sigma == 0).any()):
        raise ValueError(f"{name} must be {'>=' if allow_zero else '>'} 0 for every sample, "
                         f"got min {sigma.min().item():.4g}")
    return sigma


def as_sigma_batch(sigma, x: torch.Tensor, name: str = "sigma") -> torch.Tensor:
    """Turn a Python float, a 0-d tensor or a ``[B]`` tensor into a validated ``[B]`` tensor on x's device/dtype."""
    if isinstance(sigma, (int, float)):
        sigma = torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
    elif isinstance(sigma, torch.Tensor) and sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    elif not isinstance(sigma, torch.Tensor):
        sigma = torch.as_tensor(sigma)
    sigma = sigma.to(device=x.device, dtype=x.dtype)
    return check_sigma(sigma, x.shape[0], name)


def per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample ``[B]`` tensor (sigma, a step size, a mask) to broadcast against ``x`` ``[B, ...]``."""
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


def score_from_denoiser(denoiser: Denoiser) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return ``score(x, sigma) = (D(x, sigma) - x) / sigma**2`` (Tweedie's formula)."""
    return lambda x, sigma: (denoiser(x, sigma) - x) / per_sample(sigma, x) ** 2


def denoiser_from_score(score_fn) -> Denoiser:
    """Adapter from a score function ``s(x, sigma)`` to the contract: ``D(x, sigma) = x + sigma**2 s(x, sigma)``."""
    return lambda x, sigma: x + per_sample(sigma, x) ** 2 * score_fn(x, sigma)


class CountingDenoiser:
    """Wrap a denoiser and count its evaluations, per sample.

    NFE is **per sample**: a call on a batch of B rows adds one evaluation to each row.  ``nfe`` = rows /
    ``n_samples`` (the batch size the counter was told about); ``calls`` and ``rows`` are the raw tallies.
    Other attributes are forwarded to the model, the :data:`ORACLE_METHODS` through a tally of calls and rows
    (``x.shape[0]``) per method, ``oracle_calls`` and ``oracle_rows``; counters nest.
    """

    def __init__(self, model: Denoiser, n_samples: int | None = None):
        self.model = model
        self.reset(n_samples)

    def reset(self, n_samples: int | None = None) -> None:
        self.calls = 0
        self.rows = 0
        self.oracle_calls, self.oracle_rows = dict.fromkeys(ORACLE_METHODS, 0), dict.fromkeys(ORACLE_METHODS, 0)
        self.n_samples = n_samples

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if sigma.ndim != 1 or sigma.shape[0] != x.shape[0]:
            raise ValueError(f"denoiser called with sigma of shape {tuple(sigma.shape)} for x of shape "
                             f"{tuple(x.shape)}; the contract is sigma of shape [B]")
        self.calls += 1
        self.rows += int(x.shape[0])
        return self.model(x, sigma)

    @property
    def nfe(self) -> float:
        """Evaluations per sample (rows / n_samples), or the number of calls if n_samples is unknown."""
        return self.rows / self.n_samples if self.n_samples else float(self.calls)

    def __getattr__(self, name):
        # only called when normal lookup fails: forward to the wrapped model (its oracle methods through a tally)
        if name == "model":
            raise AttributeError(name)
        method = getattr(self.model, name)
        if name not in ORACLE_METHODS or not callable(method):
            return method

        def counted(x, *args, **kwargs):
            self.oracle_calls[name] += 1
            self.oracle_rows[name] += int(x.shape[0])
            return method(x, *args, **kwargs)
        return counted
