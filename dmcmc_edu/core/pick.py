"""The smallest-sigma pick: which state of a block of Gibbs steps a chain hands to the integrator.

Between two outputs a chain takes ``n_skip`` Gibbs steps; the state at the smallest noise level of the block
is the closest to the data, so it is the one denoised.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import per_sample

__all__ = ["pick_smallest_sigma"]


def pick_smallest_sigma(xs, indices):
    """Per chain, the state with the smallest sigma of a block (the first one wins ties).

    ``xs``: list of ``[C, ...]`` states after each Gibbs step of the block;
    ``indices``: list of ``[C]`` grid indices (a larger index is a smaller
    sigma).  A later state replaces the current pick only if its sigma is
    strictly smaller.  Returns ``(x [C, ...], index [C])``.
    """
    best_x, best_idx = xs[0].clone(), indices[0].clone()
    for x, idx in zip(xs[1:], indices[1:]):
        better = idx > best_idx
        best_x = torch.where(per_sample(better, x), x, best_x)
        best_idx = torch.where(better, idx, best_idx)
    return best_x, best_idx
