"""Training of the toy targets' learned denoiser (:class:`~dmcmc_edu.models.learned.MLPDenoiser`).

Denoising score matching with EDM's loss (:func:`dmcmc_edu.training.losses.edm_loss`)
and one change of EDM's noise distribution: the noise levels are drawn
**log-uniformly** over ``[sigma_min, sigma_max]`` of the target (EDM's
log-normal is tuned for images; the toys' samplers visit four decades of
sigma evenly in log).  Adam with a cosine-annealed rate; every random number
comes from one seeded generator, so a seed fixes the trained weights.

:func:`quick_denoiser` trains one on a mixture with fixed seeds;
:func:`load_or_train_denoiser` is the ladder's cached version of it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from dmcmc_edu.models.learned import FrozenDenoiser, MLPDenoiser, load_denoiser, save_denoiser
from dmcmc_edu.runs import RunRefused, atomic_write, target_sha256
from dmcmc_edu.training.losses import edm_loss

__all__ = ["train_denoiser", "quick_denoiser", "load_or_train_denoiser"]


def train_denoiser(net: MLPDenoiser, sampler, *, sigma_min: float, sigma_max: float, steps: int = 4000,
                   batch_size: int = 1024, lr: float = 2e-3, generator: torch.Generator | None = None,
                   progress: bool = False) -> dict:
    """Train ``net`` by denoising score matching: clean ``x0 = sampler(batch, generator)``, sigma log-uniform.

    Adam with a cosine-annealed rate.  Returns ``{"loss": [per step], "steps", "time_s"}``.  Same generator
    seed and same initial weights give the same trained weights.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    hist, t0 = [], time.perf_counter()
    net.train()
    for _ in tqdm(range(steps), desc="denoiser", disable=not progress):
        x0 = sampler(batch_size, g)
        sigma = torch.exp(lo + (hi - lo) * torch.rand(batch_size, generator=g, dtype=torch.float64))
        noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        loss = edm_loss(net, x0, sigma, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.append(loss.item())
    net.eval()
    return {"loss": hist, "steps": steps, "time_s": time.perf_counter() - t0}


def _sigma_data(mixture) -> float:
    """One standard deviation of the data: sqrt(trace(Cov) / d)."""
    _, cov = mixture.moments(0.0)
    return math.sqrt(float(torch.diagonal(cov).mean()))


def quick_denoiser(mixture, *, steps: int = 4000, seed: int = 0, hidden: int = 256, depth: int = 4,
                   batch_size: int = 1024, progress: bool = False):
    """Train an :class:`~dmcmc_edu.models.learned.MLPDenoiser` on a mixture with fixed seeds; returns ``(net, info)``.

    ``info``: the settings, the mean loss over the last 10 % of steps, training time.  On the ring, 4000 steps
    take about a minute on one CPU thread.
    """
    torch.manual_seed(seed)  # initial weights
    net = MLPDenoiser(mixture.d, _sigma_data(mixture), hidden=hidden, depth=depth)
    smin, smax = mixture.default_sigma_min(), mixture.default_sigma_max()
    hist = train_denoiser(net, mixture.sample, sigma_min=smin, sigma_max=smax, steps=steps, batch_size=batch_size,
                          generator=torch.Generator().manual_seed(seed), progress=progress)
    tail = hist["loss"][-max(1, steps // 10):]
    info = {"steps": steps, "seed": seed, "d": mixture.d, "hidden": hidden, "depth": depth, "batch_size": batch_size,
            "sigma_min": smin, "sigma_max": smax, "sigma_data": net.sigma_data,
            "final_loss": sum(tail) / len(tail), "train_seconds": hist["time_s"]}
    return net, info


def load_or_train_denoiser(mixture, path, *, fast: bool = False, seed: int = 0, progress: bool = False):
    """The ladder's learned model: load ``path`` if it holds one trained with these settings, else train and save.

    Returns ``(FrozenDenoiser, info)``; ``fast`` trains 300 steps instead of 4000.  The saved info records the
    target it was trained on (``target_sha256``); a file trained with other settings or on another target is
    refused (:class:`~dmcmc_edu.runs.RunRefused`), never replaced.
    """
    path = Path(path)
    steps = 300 if fast else 4000
    target = target_sha256(mixture.to_dict())
    if path.exists():
        net, info = load_denoiser(path)
        want = {"steps": steps, "seed": seed, "d": mixture.d, "sigma_max": mixture.default_sigma_max(),
                "target_sha256": target}
        diff = [f"{k}: {info.get(k)!r} vs {v!r}" for k, v in want.items() if info.get(k) != v]
        if diff:
            raise RunRefused(f"{path} holds a denoiser trained with other settings ({'; '.join(diff)}, saved vs "
                             "now); it is not replaced -- choose another --out")
        return FrozenDenoiser(net), dict(info, source="loaded")
    net, info = quick_denoiser(mixture, steps=steps, seed=seed, progress=progress)
    info["target_sha256"] = target
    atomic_write(path, lambda tmp: save_denoiser(net, tmp, info))
    return FrozenDenoiser(net), dict(info, source="trained")
