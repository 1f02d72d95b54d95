"""The smallest-sigma pick: which state of a block of Gibbs steps a chain hands to the integrator.

Between two outputs a chain takes ``n_skip`` Gibbs steps; the state at the smallest noise level is the closest
to the data, so it is the one denoised.  Two rules (:data:`PICK_RULES`): ``"authors"`` (the authors' code) starts
the running minimum from the state *before* the block, so the previous block's last state is a candidate and
wins ties; ``"block"`` picks among the block's new states only, so every output starts from a state not denoised
before (with ``"authors"`` and a chain whose sigma rose, two outputs can come from one state).
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.contract import per_sample

__all__ = ["pick_smallest_sigma", "PICK_RULES"]

PICK_RULES = ("block", "authors")


def pick_smallest_sigma(xs, indices, start=None):
    """Per chain, the state with the smallest sigma of a block (the earliest wins ties).

    ``xs``: ``[C, ...]`` states after each Gibbs step of the block; ``indices``: their ``[C]`` grid indices (a
    larger index is a smaller sigma); ``start``: ``(x, index)`` before the block for the authors' rule, or None.
    A later state replaces the current pick only if its sigma is strictly smaller.  Returns ``(x, index)``.
    """
    if start is not None:
        xs, indices = [start[0], *xs], [start[1], *indices]
    best_x, best_idx = xs[0].clone(), indices[0].clone()
    for x, idx in zip(xs[1:], indices[1:]):
        better = idx > best_idx
        best_x = torch.where(per_sample(better, x), x, best_x)
        best_idx = torch.where(better, idx, best_idx)
    return best_x, best_idx
