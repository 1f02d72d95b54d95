"""Denoising score matching losses, in one place for every trained denoiser of the toolkit.

A denoiser ``D(x, sigma)`` is trained by noising clean data, ``x = x0 + sigma n``
with ``n ~ N(0, I)`` (:func:`add_noise`), and regressing ``D(x, sigma)`` onto
``x0``; by Tweedie's formula the minimiser is ``E[x0 | x]``, i.e. the score of
the noised density.  With EDM's weighting (Karras et al. 2022) the loss is::

    lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2,   lambda = 1 / c_out(sigma)^2

For a preconditioned denoiser ``D = c_skip x + c_out F`` this is the same as
the unweighted regression ``|F - (x0 - c_skip x) / c_out|^2`` of the bare
network.  The two functions below compute these two equal forms:

* :func:`edm_loss` -- the ``F``-space form for the toy
  :class:`~dmcmc_edu.models.learned.MLPDenoiser` (float32, mean over batch and
  coordinates);
* :func:`score_matching_loss` -- the ``D``-space form for the MNIST
  :class:`~dmcmc_edu.models.unet.ScoreUNet` (weight times per-sample pixel
  mean, then the batch mean).

They agree up to round-off; each keeps the arithmetic its training runs were
recorded with, so saved runs reproduce exactly.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import per_sample

__all__ = ["add_noise", "edm_loss", "score_matching_loss"]


def add_noise(x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The noisy training input ``x = x0 + sigma n`` for per-sample ``sigma`` [B] and standard normal ``noise``."""
    return x0 + per_sample(sigma, x0) * noise


def edm_loss(net, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """EDM loss of an :class:`~dmcmc_edu.models.learned.MLPDenoiser`, regressing the bare network ``F``.

    ``lambda(s) |D(x0 + s n, s) - x0|^2`` with ``lambda = 1 / c_out^2``, written
    as ``|F(c_in x, c_noise) - (x0 - c_skip x) / c_out|^2`` and averaged over
    batch and coordinates, in float32.  ``x0`` [B, d], ``sigma`` [B], ``noise`` [B, d].
    """
    x0 = x0.to(torch.float32)
    s = sigma.to(torch.float32)
    x = add_noise(x0, s, noise.to(torch.float32))
    c_skip, c_out, _, _ = net.precond(s)
    target = (x0 - c_skip * x) / c_out
    return ((net.raw(x, s) - target) ** 2).mean()


def score_matching_loss(model, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """EDM-weighted denoising score matching of a :class:`~dmcmc_edu.models.unet.ScoreUNet`, through ``D`` itself.

    ``mean_b lambda(sigma_b) mean_pixels (D(x0 + sigma z) - x0)^2`` with
    ``lambda = model.loss_weight(sigma)``.  ``x0`` and ``noise`` [B, C, H, W], ``sigma`` [B].
    """
    x = add_noise(x0, sigma, noise)
    err = (model(x, sigma) - x0) ** 2
    return (model.loss_weight(sigma) * err.flatten(1).mean(1)).mean()
