"""A noise-level "classifier" that knows the answer: q(i | x) is the mixture's exact posterior over the grid.

With it, the paper's argmax sigma-update and the classifier-sample update can be studied without a trained
network's errors (a perfect classifier), and tests can run the classifier code paths on an exact oracle.
"""

from __future__ import annotations

import torch

from dmcmc_edu.targets.mixture import GaussianMixture

__all__ = ["ExactLevelClassifier"]


class ExactLevelClassifier:
    """``log_probs(x)`` = log p(sigma_i | x) of ``mixture`` on ``grid`` (uniform prior); counts its rows."""

    def __init__(self, mixture: GaussianMixture, grid: torch.Tensor):
        self.mixture, self.grid, self.n_levels, self.input_shape = mixture, grid, len(grid), (mixture.d,)
        self.rows = 0

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-posterior over the grid's levels, ``[B, n_levels]``."""
        self.rows += x.shape[0]
        return self.mixture.sigma_log_posterior(x, self.grid)

    def reset_counts(self) -> None:
        """Set the row counter to zero."""
        self.rows = 0
