"""How well a noise-level classifier ``q(i | x)`` knows the noise level: calibration, KL to the exact posterior, plots.

All diagnostics draw from the classifier's training joint: clean ``x0`` from
the data (a tensor or a sampler), a level index ``y`` uniform over the grid,
``x = x0 + grid[y] z``.  They evaluate the network without touching its
``calls``/``rows`` counters (diagnostics are not sampling cost).

* :func:`calibration` -- argmax level against the true one (errors,
  accuracies, a confusion matrix over coarse bins of the grid);
* :func:`kl_to_exact` -- ``KL(p_exact(sigma | x) || q(sigma | x))`` on an
  analytic mixture, the classifier's excess cross-entropy over the Bayes optimum;
* :func:`level_posterior_spread` -- how sharply ``q`` pins ``log sigma``,
  against the chi-square width ``1 / sqrt(2 d)``;
* :func:`plot_calibration`, :func:`plot_confusion`, :func:`plot_reliability`
  -- figures of a :func:`calibration` result.

The confusion matrix and the accuracy come from :mod:`sklearn.metrics`
(``confusion_matrix``, ``accuracy_score``; the same counts as the earlier
hand-written ones), the reliability diagram of the argmax's confidence from
:func:`sklearn.calibration.calibration_curve` (its convention: 10 equal bins of
``[0, 1]``, a confidence on an inner edge in the lower bin, empty bins left out)
and :class:`sklearn.calibration.CalibrationDisplay`.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.calibration import CalibrationDisplay, calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix

from dmcmc_edu.models.classifier import NoiseLevelClassifier, default_generator, draw_clean, noisy_batch

__all__ = ["calibration", "kl_to_exact", "level_posterior_spread", "plot_calibration", "plot_confusion",
           "plot_reliability", "RELIABILITY_BINS"]

RELIABILITY_BINS = 10
"""Equal-width bins of the argmax's confidence in :func:`calibration`'s reliability diagram."""


@torch.no_grad()
def _joint_draw(classifier: NoiseLevelClassifier, data, n: int, generator: torch.Generator):
    """``x0`` from data, ``y`` uniform, ``x = x0 + grid[y] z`` (all from ``generator``)."""
    x0 = draw_clean(data, n, generator)
    if tuple(x0.shape) != (n, *classifier.input_shape):
        raise ValueError(f"data gave shape {tuple(x0.shape)}, expected [{n}, *{classifier.input_shape}]")
    return noisy_batch(x0, classifier.grid, generator)


@torch.no_grad()
def _log_q(classifier: NoiseLevelClassifier, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = classifier.device
    out = [torch.log_softmax(classifier.logits_uncounted(x[s:s + batch_size].to(device)).double(), dim=-1).cpu()
           for s in range(0, x.shape[0], batch_size)]
    return torch.cat(out)


@torch.no_grad()
def calibration(classifier: NoiseLevelClassifier, data, n: int = 2000, generator: torch.Generator | None = None,
                n_bins: int = 20, batch_size: int = 1000) -> dict:
    """Compare the classifier's argmax level with the true level on fresh noisy samples.

    Samples come from the joint of training: ``x0`` from ``data`` (tensor or
    sampler), ``y`` uniform over the grid, ``x = x0 + grid[y] z``.

    Parameters
    ----------
    classifier : NoiseLevelClassifier
    data : tensor [N, ...] or callable ``sampler(n, generator)``
    n : int
        Number of noisy samples.
    generator : torch.Generator, optional
    n_bins : int
        Coarse bins of consecutive grid indices for the confusion matrix.
    batch_size : int
        Evaluation batch size.

    Returns
    -------
    dict
        ``true_index``, ``pred_index`` (long ``[n]``), ``true_sigma``,
        ``pred_sigma`` (float64 ``[n]``), ``mean_abs_log_error`` (mean
        ``|log sigma_pred - log sigma_true|``), ``accuracy``,
        ``accuracy_within`` (``|pred - true| <= within_levels``),
        ``within_levels``, ``confusion`` (``[n_bins, n_bins]`` counts, rows =
        true bin, columns = predicted bin; bin 0 holds the largest sigmas),
        ``bin_edges`` (grid indices, ``[n_bins + 1]``), ``bin_sigma`` (geometric
        mean sigma of each bin), ``grid``; ``confidence`` (float64 ``[n]``, the
        classifier's probability of its argmax level) and ``reliability``: the
        reliability diagram of that confidence against the argmax being the
        true level, from :func:`sklearn.calibration.calibration_curve` over
        :data:`RELIABILITY_BINS` equal bins (``confidence`` and ``accuracy``:
        mean confidence and fraction correct per non-empty bin, ``count``,
        ``bin_edges``, and ``ece``: the expected calibration error, the
        count-weighted mean of ``|accuracy - confidence|``).
    """
    gen = default_generator(generator)
    x, y = _joint_draw(classifier, data, n, gen)
    log_q = _log_q(classifier, x, batch_size)
    grid = classifier.grid.detach().double().cpu()
    L = grid.numel()
    y = y.cpu()
    pred = log_q.argmax(dim=-1)
    true_sigma, pred_sigma = grid[y], grid[pred]
    k = max(1, L // 50)
    n_bins = max(1, min(int(n_bins), L))
    edges = torch.div(torch.arange(n_bins + 1) * L, n_bins, rounding_mode="floor")
    bin_of = torch.bucketize(torch.arange(L), edges[1:-1], right=True)  # level index -> bin
    confusion = torch.from_numpy(confusion_matrix(bin_of[y].numpy(), bin_of[pred].numpy(),
                                                  labels=np.arange(n_bins))).long()
    bin_sigma = torch.stack([grid[edges[b]:edges[b + 1]].log().mean().exp() for b in range(n_bins)])
    confidence = log_q.max(dim=-1).values.exp().clamp(0.0, 1.0)
    return {
        "true_index": y,
        "pred_index": pred,
        "true_sigma": true_sigma,
        "pred_sigma": pred_sigma,
        "mean_abs_log_error": (pred_sigma.log() - true_sigma.log()).abs().mean().item(),
        "accuracy": float(accuracy_score(y.numpy(), pred.numpy())),
        "accuracy_within": ((pred - y).abs() <= k).double().mean().item(),
        "within_levels": k,
        "confusion": confusion,
        "bin_edges": edges,
        "bin_sigma": bin_sigma,
        "grid": grid,
        "confidence": confidence,
        "reliability": _reliability((pred == y).numpy(), confidence.numpy()),
    }


def _reliability(correct: np.ndarray, confidence: np.ndarray, n_bins: int = RELIABILITY_BINS) -> dict:
    """Reliability diagram of ``confidence`` against ``correct`` (sklearn's ``calibration_curve``) and the ECE."""
    acc, conf = calibration_curve(correct.astype(int), confidence, n_bins=n_bins, strategy="uniform", pos_label=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count = np.bincount(np.searchsorted(edges[1:-1], confidence), minlength=n_bins)  # calibration_curve's bins
    count = count[count > 0]
    return {"confidence": conf, "accuracy": acc, "count": count, "bin_edges": edges,
            "ece": float(np.sum(count * np.abs(acc - conf)) / max(1, count.sum()))}


@torch.no_grad()
def kl_to_exact(classifier: NoiseLevelClassifier, mixture, n: int = 2000, generator: torch.Generator | None = None,
                batch_size: int = 1000) -> dict:
    """Mean ``KL(p_exact(sigma | x) || q(sigma | x))`` over ``x`` from the training joint.

    ``x0 ~ mixture``, ``y`` uniform over the grid, ``x = x0 + grid[y] z``;
    the exact posterior (uniform prior over the grid) comes from
    ``mixture.sigma_log_posterior(x, grid)``.  Since the training loss is
    ``E[-log q(y | x)] = E[KL(p || q)] + E[H(p(. | x))]``, this KL is the
    excess cross-entropy of the classifier over the Bayes optimum.

    Parameters
    ----------
    classifier : NoiseLevelClassifier
    mixture : object
        With ``sample(n, generator)`` and ``sigma_log_posterior(x, grid) -> [B, L]``
        (e.g. :class:`dmcmc_edu.targets.mixture.GaussianMixture`).
    n : int
        Number of samples ``x``.
    generator : torch.Generator, optional
    batch_size : int
        Evaluation batch size.

    Returns
    -------
    dict
        ``kl`` (mean, nats), ``kl_sem`` (its standard error), ``kl_uniform``
        (the same for the uniform ``q = 1/L``, i.e. ``log L - H(p)``, for
        reference), ``kl_per_sample`` and ``kl_uniform_per_sample`` (``[n]``),
        ``n``.
    """
    gen = default_generator(generator)
    x, _ = _joint_draw(classifier, mixture.sample, n, gen)
    L = classifier.n_levels
    log_q = _log_q(classifier, x, batch_size)
    grid = classifier.grid.detach().to(device=x.device, dtype=x.dtype)
    log_p = torch.cat([mixture.sigma_log_posterior(x[s:s + batch_size], grid).double().cpu()
                       for s in range(0, n, batch_size)])
    if log_p.shape != (n, L):
        raise ValueError(f"mixture.sigma_log_posterior returned shape {tuple(log_p.shape)}, expected [{n}, {L}]")
    log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)  # guard: renormalise over the grid
    p = log_p.exp()
    plogp = torch.where(p > 0, p * log_p, torch.zeros_like(p))
    kl = (plogp - p * log_q).sum(dim=-1)
    kl_u = (plogp + p * math.log(L)).sum(dim=-1)
    return {
        "kl": kl.mean().item(),
        "kl_sem": (kl.std() / math.sqrt(n)).item() if n > 1 else float("nan"),
        "kl_uniform": kl_u.mean().item(),
        "kl_per_sample": kl,
        "kl_uniform_per_sample": kl_u,
        "n": n,
    }


@torch.no_grad()
def level_posterior_spread(classifier: NoiseLevelClassifier, data, sigmas, n: int = 256,
                           generator: torch.Generator | None = None, batch_size: int = 1000) -> dict:
    """How sharply the classifier pins the noise level: the spread of ``log sigma`` under ``q(i | x)``.

    For each ``s`` in ``sigmas``: ``n`` clean samples from ``data`` (tensor or
    sampler), ``x = x0 + s z``, and per sample the standard deviation of
    ``log grid[i]`` under ``q(. | x)``.  Returns ``{"sigma": [...],
    "std_log_sigma_median": [...], "std_log_sigma_q90": [...], "dim": d,
    "chi2_std": 1 / sqrt(2 d)}``.  For Gaussian noise in ``d`` dimensions the
    exact posterior of ``log sigma`` has a spread of about ``1 / sqrt(2 d)``
    (``|x - x0|^2 / sigma^2`` is chi-square with ``d`` degrees of freedom), so a
    Gibbs update of sigma moves ``log sigma`` by about that much: 0.025 on
    MNIST (784 pixels), 0.5 on a 2-d toy.
    """
    g = default_generator(generator)
    sig = [float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)]
    if not sig or min(sig) <= 0 or not all(math.isfinite(s) for s in sig):
        raise ValueError(f"sigmas must be finite and > 0, got {sigmas!r}")
    log_grid = torch.log(classifier.grid.double().cpu())
    med, q90 = [], []
    for s in sig:
        x0 = draw_clean(data, n, g)
        if tuple(x0.shape[1:]) != tuple(classifier.input_shape):
            raise ValueError(f"data gave shape {tuple(x0.shape)}, expected [n, *{classifier.input_shape}]")
        x = x0 + s * torch.randn(x0.shape, generator=g, device=g.device, dtype=x0.dtype).to(x0.device)
        p = _log_q(classifier, x, batch_size).exp()  # [n, L]
        mean = p @ log_grid
        std = ((p @ log_grid**2) - mean**2).clamp(min=0).sqrt()
        med.append(float(std.median()))
        q90.append(float(std.quantile(0.9)))
    d = int(math.prod(classifier.input_shape))
    return {"sigma": sig, "std_log_sigma_median": med, "std_log_sigma_q90": q90, "dim": d,
            "chi2_std": 1.0 / math.sqrt(2 * d)}


def plot_calibration(cal: dict, ax=None):
    """Scatter predicted (argmax) vs true sigma of :func:`calibration`'s ``cal`` on log-log axes; returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    t, p = cal["true_sigma"].numpy(), cal["pred_sigma"].numpy()
    ax.scatter(t, p, s=4, alpha=0.3, label="samples")
    lo, hi = float(cal["grid"].min()), float(cal["grid"].max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="exact")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("true sigma")
    ax.set_ylabel("predicted sigma (argmax)")
    ax.set_title(f"mean |log error| = {cal['mean_abs_log_error']:.3f}")
    ax.legend(loc="upper left")
    return ax


def plot_confusion(cal: dict, ax=None):
    """Row-normalised confusion matrix of :func:`calibration`'s ``cal`` over coarse bins of the grid.

    Rows: true bin, columns: predicted bin.  Draws into ``ax`` (or a new figure) and returns the Axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    conf = cal["confusion"].double()
    conf = conf / conf.sum(dim=1, keepdim=True).clamp_min(1)
    im = ax.imshow(conf.numpy(), cmap="viridis", vmin=0, vmax=1, origin="upper")
    nb = conf.shape[0]
    ticks = list(range(0, nb, max(1, nb // 5)))
    labels = [f"{cal['bin_sigma'][i].item():.2g}" for i in ticks]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted sigma bin")
    ax.set_ylabel("true sigma bin")
    ax.set_title("confusion (row-normalised)")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return ax


def plot_reliability(cal: dict, ax=None):
    """Reliability diagram of :func:`calibration`'s ``cal``: per bin of the argmax's confidence, the fraction of
    argmaxes that are the true level (sklearn's :class:`~sklearn.calibration.CalibrationDisplay`, the diagonal =
    calibrated); returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    rel = cal["reliability"]
    correct = (cal["pred_index"] == cal["true_index"]).numpy().astype(int)
    CalibrationDisplay(rel["accuracy"], rel["confidence"], cal["confidence"].numpy(), estimator_name="argmax level",
                       pos_label=1).plot(ax=ax)
    ax.set_xlabel("confidence of the argmax level q(argmax | x)")
    ax.set_ylabel("fraction where the argmax is the true level")
    ax.set_title(f"reliability: accuracy {correct.mean():.2f}, ECE {rel['ece']:.3f}")
    return ax
