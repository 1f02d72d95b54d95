"""Checks of assignment A5, the noise-level classifier: training pairs, the loss, the KL to the exact posterior, the
spread of log sigma under the posterior and the question on why the argmax collapses in 2D.

The references are the library's: :func:`dmcmc_edu.models.classifier.noisy_batch` (the training joint),
``torch.nn.functional.cross_entropy`` (the paper's loss), the KL of :func:`dmcmc_edu.evaluation.calibration.kl_to_exact`
and the spread of :func:`dmcmc_edu.evaluation.calibration.level_posterior_spread`; the exact posterior comes from
:class:`dmcmc_edu.targets.ExactLevelClassifier`.  Student signatures (notebook ``a5_noise_level_classifier``):

* ``training_pairs(x0, grid, generator) -> (x, y)``;
* ``cross_entropy_loss(logits, y) -> scalar tensor``;
* ``kl_exact_to_classifier(log_p, logits) -> float``: mean over rows of KL(p_exact || q), q = softmax(logits);
* ``log_sigma_spread(log_p, grid) -> [B]``: the standard deviation of log sigma under p(sigma_i | x);
* ``why_argmax_collapses() -> str``: a letter of the multiple-choice question.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.grading.feedback import as_array, call_student, compare, fail, graded, hidden_seed, ok
from dmcmc_edu.models.classifier import noisy_batch
from dmcmc_edu.targets import ExactLevelClassifier, ring

__all__ = ["check_training_pairs", "check_cross_entropy_loss", "check_kl_exact_to_classifier",
           "check_log_sigma_spread", "check_why_argmax_collapses", "QUESTION_OPTIONS", "reference_kl",
           "reference_spread"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _grid(L: int) -> torch.Tensor:
    mix = ring()
    return noise_level_grid(mix.default_sigma_min(), mix.default_sigma_max(), L)


# ----------------------------------------------------------------------------- training pairs


def _pairs(student_fn, x0, grid, seed):
    got = call_student(student_fn, "training_pairs", x0.clone(), grid, _gen(seed))
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"training_pairs returned a {type(got).__name__}, expected the pair (x, y)")
    x, y = got
    if not isinstance(y, torch.Tensor) or torch.is_floating_point(y):
        fail("training_pairs: y must be a tensor of integer level indices (torch.long), the classifier's labels")
    if tuple(y.shape) != (x0.shape[0],):
        fail(f"training_pairs: y has shape {tuple(y.shape)}, expected one label per sample: ({x0.shape[0]},)")
    xa = as_array(x, "x of training_pairs")
    if xa.shape != tuple(x0.shape):
        fail(f"training_pairs: x has shape {xa.shape}, expected the shape of x0, {tuple(x0.shape)}")
    return torch.as_tensor(xa), y.long()


def _pairs_statistics(student_fn, grid: torch.Tensor, seed: int, n: int = 20000) -> None:
    """Pairs drawn in another order than the library's: check their law (levels uniform, noise N(0, grid[y]^2))."""
    L = grid.numel()
    x0 = ring().sample(n, _gen(seed + 100))
    x, y = _pairs(student_fn, x0, grid, seed + 101)
    if int(y.min()) < 0 or int(y.max()) > L - 1:
        extra = " -- labels off by one?" if int(y.max()) == L else ""
        fail(f"training_pairs: labels run from {int(y.min())} to {int(y.max())}, but the grid's indices are 0..{L - 1}"
             f"{extra}")
    counts = torch.bincount(y, minlength=L).double()
    chi2 = float(((counts - n / L) ** 2 / (n / L)).sum())
    if chi2 > (L - 1) + 10 * math.sqrt(2 * (L - 1)):
        fail(f"training_pairs: over {n} pairs the labels are not uniform over the grid's indices (mean index "
             f"{float(y.double().mean()):.1f}, expected about {(L - 1) / 2:.1f}; chi-square {chi2:.0f} for {L - 1} "
             "degrees of freedom) -- the paper draws the index y uniformly from 0..L-1, not sigma uniformly in "
             "[sigma_min, sigma_max]")
    r2 = (x - x0).pow(2).sum(1) / x0.shape[1]

    def ratio(shift: int) -> float:
        keep = (y + shift >= 0) & (y + shift < L)
        return float((r2[keep] / grid[y[keep] + shift] ** 2).mean())

    tol = 6 * math.sqrt(2 / (x0.shape[1] * n))
    if abs(ratio(0) - 1) > tol:
        near = [s for s in (-1, 1) if abs(ratio(s) - 1) <= tol]
        extra = (f" but it matches grid[y {'+' if near[0] > 0 else '-'} 1]: the labels are off by one" if near else
                 " -- is x = x0 + grid[y] * z with z standard normal?")
        fail(f"training_pairs: the noise x - x0 has mean square {ratio(0):.3f} * grid[y]^2 per coordinate (expected "
             f"1){extra}")


@graded(off_limits=("dmcmc_edu.models.classifier:noisy_batch",))
def check_training_pairs(student_fn, hidden: bool = False) -> str:
    """``training_pairs``: the library's pairs for the same seed, or pairs with the training joint's distribution."""
    seed, n, L = (hidden_seed(41), 12, 40) if hidden else (4, 6, 25)
    grid = _grid(L)
    x0 = ring().sample(n, _gen(seed))
    x, y = _pairs(student_fn, x0, grid, seed + 1)
    want_x, want_y = noisy_batch(x0, grid, _gen(seed + 1))
    if torch.equal(y, want_y):
        compare("x of training_pairs", x, want_x, where=f"{n} clean points of the ring, {L} levels", rtol=1e-10,
                atol=1e-12, mistakes={"labels off by one (x noised with grid[y + 1])":
                                      x0 + grid[(want_y + 1).clamp(max=L - 1)][:, None] * (want_x - x0)
                                      / grid[want_y][:, None]},
                hint="x = x0 + grid[y] * z, one level per sample")
        return ok("training_pairs: the library's training joint, draw for draw")
    if torch.allclose(x, want_x, rtol=1e-10, atol=1e-12):
        compare("y of training_pairs", y, want_y, where=f"{n} clean points of the ring, {L} levels", rtol=0, atol=0,
                mistakes={"labels off by one (y + 1)": want_y + 1, "labels off by one (y - 1)": want_y - 1},
                hint="y is the index of the level used to noise x")
    _pairs_statistics(student_fn, grid, seed)
    return ok("training_pairs: levels uniform over the grid and noise grid[y] * z (drawn in another order than the "
              "library's, which is fine)")


# ----------------------------------------------------------------------------- the loss


@graded
def check_cross_entropy_loss(student_fn, hidden: bool = False) -> str:
    """``cross_entropy_loss``: equals ``F.cross_entropy`` and has its gradient."""
    seed, B, L = (hidden_seed(43), 16, 30) if hidden else (6, 5, 8)
    g = _gen(seed)
    logits = 3.0 * torch.randn(B, L, generator=g, dtype=torch.float64) + 2.0
    y = torch.randint(0, L, (B,), generator=g)
    where = f"{B} rows of logits over {L} levels"

    def loss_and_gradient(logits, y):
        """The student's loss, whether it has a gradient, and that gradient (all of it data, for the record)."""
        lg = logits.clone().requires_grad_(True)
        loss = student_fn(lg, y)
        if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
            return loss, False, None
        loss.backward()
        return loss.detach(), True, lg.grad

    got, has_gradient, grad = call_student(loss_and_gradient, "cross_entropy_loss", logits.clone(), y.clone())
    picked = logits.gather(1, y[:, None]).squeeze(1)
    compare("cross_entropy_loss(logits, y)", got.detach() if isinstance(got, torch.Tensor) else got,
            F.cross_entropy(logits, y), where=where, rtol=1e-6, atol=1e-9,
            mistakes={"logits used as log-probabilities (no log-softmax)": -picked.mean(),
                      "logits used as probabilities (log of the logit, no softmax)": -picked.log().mean(),
                      "softmax probabilities used in place of log-probabilities": -torch.softmax(logits, 1)
                      .gather(1, y[:, None]).mean(),
                      "the sum over the batch instead of the mean": F.cross_entropy(logits, y, reduction="sum"),
                      "labels off by one (y + 1)": F.cross_entropy(logits, (y + 1) % L)},
            hint="the loss is the mean over the batch of -log q(y | x), with log q = log_softmax(logits)")
    if not has_gradient:
        fail("cross_entropy_loss returned a number without a gradient: keep it a torch tensor (no .item() or float()) "
             "so that loss.backward() can train the network")
    want_grad = (torch.softmax(logits, 1) - F.one_hot(y, L).double()) / B
    compare("the gradient of your loss", grad, want_grad, where=where, rtol=1e-6, atol=1e-9,
            hint="a loss built from torch operations on logits gets its gradient for free")
    return ok("cross_entropy_loss: the paper's cross-entropy, value and gradient")


# ----------------------------------------------------------------------------- KL to the exact posterior


def reference_kl(log_p: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over rows of KL(p || softmax(logits)), as :func:`dmcmc_edu.evaluation.calibration.kl_to_exact`."""
    log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)
    log_q = torch.log_softmax(logits.double(), dim=-1)
    p = log_p.exp()
    return float((torch.where(p > 0, p * log_p, torch.zeros_like(p)) - p * log_q).sum(-1).mean())


def _posterior_case(seed: int, B: int, L: int):
    mix = ring()
    grid = _grid(L)
    g = _gen(seed)
    idx = torch.randint(0, L, (B,), generator=g)
    x = mix.sample(B, g) + grid[idx][:, None] * torch.randn(B, 2, generator=g, dtype=torch.float64)
    return ExactLevelClassifier(mix, grid).log_probs(x), grid, g


@graded(off_limits=("dmcmc_edu.grading.a5_classifier:reference_kl",
                    "dmcmc_edu.evaluation.calibration:kl_to_exact"))
def check_kl_exact_to_classifier(student_fn, hidden: bool = False) -> str:
    """``kl_exact_to_classifier``: mean KL(p_exact || q) against the reference, naming a swapped direction."""
    seed, B, L = (hidden_seed(47), 20, 40) if hidden else (8, 6, 15)
    log_p, grid, g = _posterior_case(seed, B, L)
    logits = log_p + 1.5 * torch.randn(B, L, generator=g, dtype=torch.float64) + 4.0  # a classifier a little off
    where = f"{B} points x, {L} levels"
    got = call_student(student_fn, "kl_exact_to_classifier", log_p.clone(), logits.clone())
    p, log_q = log_p.exp(), torch.log_softmax(logits, 1)
    q = log_q.exp()
    compare("kl_exact_to_classifier(log_p, logits)", got, reference_kl(log_p, logits), where=where, rtol=1e-6,
            atol=1e-9,
            mistakes={"KL direction swapped (KL(q || p_exact) instead of KL(p_exact || q))":
                          float((q * (log_q - log_p)).sum(1).mean()),
                      "logits used as log-probabilities (no log-softmax)": float((p * (log_p - logits)).sum(1).mean()),
                      "the sum over the points instead of the mean": float((p * (log_p - log_q)).sum()),
                      "the cross-entropy -sum p log q (the entropy of p not subtracted)":
                          float(-(p * log_q).sum(1).mean())},
            hint="KL(p || q) = sum_i p_i (log p_i - log q_i) per point, with log q = log_softmax(logits), "
                 "then the mean over the points")
    return ok("kl_exact_to_classifier: KL(p_exact || q) in nats")


# ----------------------------------------------------------------------------- spread of log sigma


def reference_spread(log_p: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Standard deviation of log sigma under p(sigma_i | x) per row (as ``level_posterior_spread``)."""
    p = torch.softmax(log_p.double(), dim=-1)
    lg = torch.log(grid.double())
    mean = p @ lg
    return ((p @ lg**2) - mean**2).clamp(min=0).sqrt()


@graded(off_limits=("dmcmc_edu.grading.a5_classifier:reference_spread",
                    "dmcmc_edu.evaluation.calibration:level_posterior_spread"))
def check_log_sigma_spread(student_fn, hidden: bool = False) -> str:
    """``log_sigma_spread``: the per-point posterior standard deviation of log sigma."""
    seed, B, L = (hidden_seed(53), 12, 60) if hidden else (9, 5, 30)
    log_p, grid, _ = _posterior_case(seed, B, L)
    got = call_student(student_fn, "log_sigma_spread", log_p.clone(), grid.clone())
    p = log_p.exp()
    want = reference_spread(log_p, grid)
    m_sig = p @ grid
    compare("log_sigma_spread(log_p, grid)", got, want, where=f"{B} points x on the ring, {L} levels", rtol=1e-6,
            atol=1e-9,
            mistakes={"the standard deviation of sigma instead of log sigma": ((p @ grid**2) - m_sig**2).sqrt(),
                      "the variance instead of the standard deviation": want**2,
                      "log_p used as weights (no exp)": ((log_p @ grid.log()**2) - (log_p @ grid.log())**2).abs()
                      .sqrt()},
            hint="with p_i = exp(log p_i): mean m = sum_i p_i log sigma_i, spread = "
                 "sqrt(sum_i p_i (log sigma_i - m)^2)")
    return ok("log_sigma_spread: the posterior spread of log sigma")


# ----------------------------------------------------------------------------- the question


QUESTION_OPTIONS = {
    "a": "the network is too small: a larger classifier trained longer would give a sharp argmax",
    "b": "in 2D one noisy point says little about its noise level: p(sigma | x) is broad (about 1/sqrt(2d) = 0.5 in "
         "log sigma), so the argmax, a fixed function of x, throws the spread away and the chains' sigma piles up on "
         "the few levels where the argmax lands",
    "c": "the argmax is biased because the grid is geometric: there are more levels at small sigma",
    "d": "the argmax collapses because the Langevin step eta is too large in 2D",
}
_WHY_NOT = {
    "a": "the exact posterior itself is broad in 2D (the spreads above are for the exact p(sigma | x)), so even a "
         "perfect classifier has the same argmax problem",
    "c": "a geometric grid is uniform in log sigma, and the prior over indices is uniform; the grid does not favour "
         "any level",
    "d": "the sigma-update does not use eta, and the spread you computed is that of the exact posterior at fixed x",
}


@graded
def check_why_argmax_collapses(student_fn, hidden: bool = False) -> str:
    """``why_argmax_collapses()``: the letter of the right option of :data:`QUESTION_OPTIONS`."""
    got = call_student(student_fn, "why_argmax_collapses")
    letter = str(got).strip().lower().strip("()") if got is not None else ""
    if letter not in QUESTION_OPTIONS:
        fail(f"why_argmax_collapses returned {got!r}; return one of the letters {', '.join(QUESTION_OPTIONS)}")
    if letter != "b":
        fail(f"why_argmax_collapses: option ({letter}) is not the reason: {_WHY_NOT[letter]}")
    return ok("why_argmax_collapses: the posterior is broad in 2D, the argmax hides it")
