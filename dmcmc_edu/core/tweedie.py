"""Tweedie's formula: the last denoising step, ``E[x0 | x_sigma = x] = x + sigma^2 score(x, sigma) = D(x, sigma)``.

Integrators that end at ``sigma_min > 0`` leave a little noise; the paper removes it with one more evaluation
at ``eps`` (1e-2 on CIFAR10, 1e-3 on CelebA-HQ), the "+1" of its NFE counts.  KAR1/KAR2 end at sigma = 0:
their last Euler step already is this step.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import as_sigma_batch, check_x

__all__ = ["tweedie", "finish_with_tweedie", "FINAL_TWEEDIE"]

FINAL_TWEEDIE = ("auto", "always", "never")  # only if the integrator ends above 0 | always (the paper) | never


def tweedie(model, x: torch.Tensor, sigma) -> torch.Tensor:
    """The Tweedie denoising step ``D(x, sigma)`` at a float or per-sample ``[B]`` sigma (one NFE)."""
    check_x(x)
    return model(x, as_sigma_batch(sigma, x))


def finish_with_tweedie(model, x: torch.Tensor, sigma_end: float, sigma: float, mode: str = "auto"):
    """Apply :func:`tweedie` at ``sigma`` after an integrator that ended at ``sigma_end``, as ``mode`` says.

    Returns ``(x, applied)``.
    """
    if mode not in FINAL_TWEEDIE:
        raise ValueError(f"final_tweedie must be one of {', '.join(FINAL_TWEEDIE)}, got {mode!r}")
    apply = mode == "always" or (mode == "auto" and sigma_end > 0)
    return (tweedie(model, x, sigma) if apply else x), apply
