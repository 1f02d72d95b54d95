"""Every random draw of the core, in one place.

Each draw takes ``generator``: ``None`` (torch's global one), a ``torch.Generator``, or a list of one per
sample; then row ``b`` depends only on ``generator[b]``, so a sample reproduces whatever batch it is run in (as in
EDM's sampler).  Draws are made on the generator's device and moved to ``device``.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["normal", "uniform", "categorical"]


def _per_sample(generator, n: int) -> bool:
    if isinstance(generator, (list, tuple)):
        if len(generator) != n:
            raise ValueError(f"got {len(generator)} per-sample generators for a batch of {n}")
        return True
    return False


def normal(shape: Sequence[int], generator, dtype, device) -> torch.Tensor:
    """Standard normal noise of ``shape`` (rows along dim 0)."""
    if _per_sample(generator, shape[0]):
        rows = [torch.randn(tuple(shape[1:]), generator=g, dtype=dtype, device=g.device) for g in generator]
        return torch.stack(rows).to(device)
    gdev = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=gdev).to(device)


def uniform(n: int, generator, device) -> torch.Tensor:
    """``n`` draws from U[0, 1) in float64, one per row."""
    if _per_sample(generator, n):
        rows = [torch.rand((), generator=g, dtype=torch.float64, device=g.device) for g in generator]
        return torch.stack(rows).to(device)
    gdev = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, dtype=torch.float64, device=gdev).to(device)


def categorical(log_p: torch.Tensor, generator) -> torch.Tensor:
    """One index per row of (unnormalised) log-probabilities ``[B, K]``, by inverting the CDF at a uniform draw."""
    p = torch.softmax(log_p.to(torch.float64), dim=1)
    cdf = p.cumsum(dim=1)
    u = uniform(log_p.shape[0], generator, log_p.device)[:, None]
    index = torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(1)
    return index.clamp(max=log_p.shape[1] - 1)
