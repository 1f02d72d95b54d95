"""Training of the noise-level classifier ``q(i | x)`` with cross-entropy, as in Kim & Ye's DLG paper.

Each step draws clean samples ``x0`` (from a tensor, in epochs of random
permutations, or from a sampler), level indices ``y`` uniform over the grid
and fresh noise, ``x = x0 + grid[y] z`` (:func:`dmcmc_edu.models.classifier.noisy_batch`),
and takes one Adam step on ``cross_entropy(q(. | x), y)``.  All randomness
comes from one generator, in a fixed order per step (the batch, then the
levels, then the noise), so a seed fixes the trained weights.
"""

from __future__ import annotations

import math
import time
from typing import Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm

from dmcmc_edu.models.classifier import NoiseLevelClassifier, default_generator, noisy_batch

__all__ = ["train_noise_level_classifier"]


def train_noise_level_classifier(classifier: NoiseLevelClassifier, data, *, steps: int | None = None,
                                 epochs: int | None = None, batch_size: int = 100, lr: float = 1e-3,
                                 lr_schedule: str = "constant", generator: torch.Generator | None = None,
                                 progress: bool = True, log_every: int = 50, within_levels: int | None = None) -> dict:
    """Train ``q(i | x)`` in place with cross-entropy and Adam, as in the paper (lr 1e-3, batch 100).

    Parameters
    ----------
    classifier : NoiseLevelClassifier
        Its network's parameters are trained.
    data : tensor [N, ...] or callable
        Clean samples, iterated over epochs of random permutations (the last batch of an epoch may be
        smaller), or a sampler ``sampler(n, generator) -> [n, ...]`` such as ``GaussianMixture.sample``.
    steps, epochs : int
        Give exactly one.  ``epochs`` needs tensor data; ``steps`` works for both (tensor data then runs
        through as many permutations as needed).
    batch_size, lr : int, float
        Samples per step and Adam learning rate (paper: 100 and 1e-3).
    lr_schedule : {"constant", "cosine"}
        ``"constant"`` is the paper's; ``"cosine"`` anneals the rate to 0 over the run, which lowers the
        final KL to the exact posterior markedly for short runs (the labels ``y`` are very noisy, so late
        steps need a small rate).
    generator : torch.Generator, optional
        Source of all randomness (permutations, levels, noise, sampler draws); draws happen on its device
        (use a CPU generator) and are moved to the classifier's device.  Same seed -> same trained weights.
    progress, log_every : bool, int
        Show a tqdm progress bar, with the running loss/accuracy updated every ``log_every`` steps.
    within_levels : int, optional
        ``k`` for the "accuracy within +-k levels" record; default ``max(1, L // 50)``.

    Returns
    -------
    dict
        ``loss``, ``accuracy`` (argmax == y) and ``accuracy_within`` (``|argmax - y| <= k``), each per
        step; ``within_levels``, ``steps``, ``rows`` (training samples seen), ``time_s``.  Training
        evaluations do not touch ``classifier.calls``.
    """
    total = _check_arguments(classifier, data, steps=steps, epochs=epochs, batch_size=batch_size,
                             log_every=log_every, lr_schedule=lr_schedule)
    L = classifier.n_levels
    k = max(1, L // 50) if within_levels is None else int(within_levels)
    gen = default_generator(generator)
    opt = torch.optim.Adam(classifier.net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total) if lr_schedule == "cosine" else None
    batches = _clean_batches(data, batch_size, classifier.input_shape, gen)
    was_training = classifier.net.training
    classifier.net.train()
    hist = {"loss": [], "accuracy": [], "accuracy_within": [], "within_levels": k}
    rows = 0
    t0 = time.perf_counter()
    bar = tqdm(total=total, disable=not progress, desc="noise-level classifier")
    try:
        for step in range(total):
            rows += _training_step(classifier, opt, sched, next(batches), gen, hist)
            bar.update(1)
            if progress and ((step + 1) % log_every == 0 or step + 1 == total):
                _show_running_means(bar, hist, log_every)
    finally:
        bar.close()
        classifier.net.train(was_training)
    hist.update(steps=total, rows=rows, time_s=time.perf_counter() - t0)
    return hist


def _check_arguments(classifier, data, *, steps, epochs, batch_size, log_every, lr_schedule) -> int:
    """Validate the arguments of :func:`train_noise_level_classifier`; return the number of steps to run."""
    if not isinstance(classifier, NoiseLevelClassifier):
        raise TypeError(f"classifier must be a NoiseLevelClassifier, got {type(classifier).__name__}")
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of steps= or epochs= (got steps={steps!r}, epochs={epochs!r})")
    is_tensor = isinstance(data, torch.Tensor)
    if not is_tensor and not callable(data):
        raise TypeError(
            f"data must be a tensor [N, ...] or a callable sampler(n, generator), got {type(data).__name__}"
        )
    if is_tensor and (tuple(data.shape[1:]) != classifier.input_shape or data.shape[0] < 1):
        raise ValueError(
            f"data has shape {tuple(data.shape)}, but the classifier expects [N, *input_shape] with "
            f"input_shape {classifier.input_shape}"
        )
    if epochs is not None:
        if not is_tensor:
            raise ValueError("epochs= needs a data tensor; for a sampler give steps=")
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        total = epochs * math.ceil(data.shape[0] / batch_size)
    else:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        total = steps
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be an integer >= 1, got {log_every!r}")
    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    return total


def _clean_batches(data, batch_size: int, input_shape: tuple[int, ...], gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless clean batches: epochs of random permutations of a tensor, or draws of a sampler (shape-checked)."""
    if isinstance(data, torch.Tensor):
        N = data.shape[0]
        while True:
            perm = torch.randperm(N, generator=gen, device=gen.device).to(data.device)
            for s in range(0, N, batch_size):
                yield data[perm[s:s + batch_size]]
    while True:
        x0 = data(batch_size, gen)
        if tuple(x0.shape) != (batch_size, *input_shape):
            raise ValueError(
                f"sampler returned shape {tuple(x0.shape)}, expected [{batch_size}, {', '.join(map(str, input_shape))}]"
            )
        yield x0


def _training_step(classifier: NoiseLevelClassifier, opt: torch.optim.Optimizer, sched, x0: torch.Tensor,
                   gen: torch.Generator, hist: dict) -> int:
    """Noise ``x0``, take one optimiser (and schedule) step, record loss and accuracies; returns the batch size."""
    x, y = noisy_batch(x0, classifier.grid, gen)
    device = classifier.device
    x, y = x.to(device), y.to(device)
    logits = classifier.logits_uncounted(x)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    with torch.no_grad():
        pred = logits.argmax(dim=-1)
        hist["loss"].append(loss.item())
        hist["accuracy"].append((pred == y).double().mean().item())
        hist["accuracy_within"].append(((pred - y).abs() <= hist["within_levels"]).double().mean().item())
    return int(x.shape[0])


def _show_running_means(bar, hist: dict, log_every: int) -> None:
    """Show the mean loss and within-k accuracy of the last ``log_every`` steps on the progress bar."""
    w = min(log_every, len(hist["loss"]))
    bar.set_postfix(loss=f"{sum(hist['loss'][-w:]) / w:.4f}",
                    acc_k=f"{sum(hist['accuracy_within'][-w:]) / w:.3f}")
