"""EDM preconditioning of a denoiser network, written once for every model of the toolkit.

Karras et al. (2022, "Elucidating the design space of diffusion-based
generative models", table 1 and section 5) do not let a network ``F`` output
the clean estimate directly.  They wrap it so that its input and its target
have unit variance at every noise level ``sigma``::

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))

    c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out   = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = log(sigma) / 4

with ``sigma_data`` the standard deviation of the (centred) data.  The loss
``lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2`` uses the weight
``lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2``,
which turns it into a plain regression of ``F`` onto
``(x0 - c_skip x) / c_out``.

At small sigma ``c_skip -> 1`` and ``c_out -> 0``: the denoiser returns its
input whatever the network says; at large sigma ``c_skip -> 0`` and the
network predicts the clean data from a rescaled input.

:class:`~dmcmc_edu.models.learned.MLPDenoiser` (toy vectors) and
:class:`~dmcmc_edu.models.unet.ScoreUNet` (MNIST images) both take their
factors from :func:`edm_scalings`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["EDMScalings", "edm_scalings", "edm_loss_weight"]


class EDMScalings(NamedTuple):
    """The four factors of the EDM preconditioning, each shaped like the ``sigma`` they came from."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def edm_scalings(sigma: torch.Tensor, sigma_data: float) -> EDMScalings:
    """``c_skip, c_out, c_in, c_noise`` at noise levels ``sigma`` (any shape, > 0) for data of spread ``sigma_data``.

    The result has the shape and dtype of ``sigma``; reshape ``sigma`` first
    (e.g. to ``[B, 1]``) to get factors that broadcast against a batch.
    """
    total = sigma**2 + sigma_data**2  # variance of the noisy input x = x0 + sigma n
    return EDMScalings(
        c_skip=sigma_data**2 / total,
        c_out=sigma * sigma_data / total.sqrt(),
        c_in=1 / total.sqrt(),
        c_noise=sigma.log() / 4,
    )


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """Loss weight ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``, which equals ``1 / c_out^2``."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
