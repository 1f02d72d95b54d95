"""The sigma-update of DLG: a new noise-level index for each chain, given its x.

The chains live on a grid ``sigma_0 > ... > sigma_{N-1}`` (index 0 is sigma_max) under a prior (uniform by
default, as in the paper).  Three named choices (:data:`SIGMA_UPDATES`), each ``(x, grid, generator) -> index``:

* ``"exact"``             -- draw from the exact posterior p(sigma_i | x) ∝ p_{sigma_i}(x) prior_i
  of an analytic mixture (an oracle, no network: its rows are counted in the ledger's ``oracle`` column);
* ``"classifier-argmax"`` -- the paper: the argmax of a noise-level classifier q(i | x);
* ``"classifier-sample"`` -- draw from q(i | x) (times the prior ratio): a Gibbs step if q were exact.
"""

from __future__ import annotations

import torch

from dmcmc_edu.core.random import categorical

__all__ = ["ExactSigmaUpdate", "ClassifierArgmaxUpdate", "ClassifierSampleUpdate", "SIGMA_UPDATES",
           "make_sigma_update", "check_classifier_fits"]


def _normalised_log_prior(log_prior, grid):
    if log_prior is None:
        return None
    lp = torch.as_tensor(log_prior, dtype=torch.float64, device=grid.device)
    if lp.shape != grid.shape:
        raise ValueError(f"log_prior must have the grid's shape {tuple(grid.shape)}, got {tuple(lp.shape)}")
    return lp - torch.logsumexp(lp, 0)


class ExactSigmaUpdate:
    """Draw sigma from the exact posterior; ``model`` provides ``sigma_log_posterior(x, grid, log_prior)``."""

    name = "exact"

    def __init__(self, model, log_prior=None):
        if not hasattr(model, "sigma_log_posterior"):
            raise TypeError("the 'exact' sigma-update needs a model with sigma_log_posterior (an analytic mixture)")
        self.model = model
        self.log_prior = log_prior

    def __call__(self, x, grid, generator=None):
        log_p = self.model.sigma_log_posterior(x, grid, log_prior=_normalised_log_prior(self.log_prior, grid))
        return categorical(log_p, generator)


def check_classifier_fits(classifier, grid, data_shape=None) -> None:
    """Refuse a classifier made for another grid of levels or another data shape than the chain's."""
    n = getattr(classifier, "n_levels", None)
    if n is not None and n != grid.numel():
        raise ValueError(f"the classifier predicts {n} levels but the chain's grid has {grid.numel()}")
    c_grid = getattr(classifier, "grid", None)
    if c_grid is not None and not torch.allclose(c_grid.to(grid), grid, rtol=1e-6):
        raise ValueError("the classifier was trained on a different noise-level grid than the chain's")
    in_shape = getattr(classifier, "input_shape", None)
    if data_shape is not None and in_shape is not None and tuple(in_shape) != tuple(data_shape):
        raise ValueError(f"classifier input shape {tuple(in_shape)} does not match data shape {tuple(data_shape)}")


class _ClassifierUpdate:
    def __init__(self, classifier, log_prior=None):
        self.classifier = classifier
        self.log_prior = log_prior

    def log_q(self, x, grid):
        """``log q(i | x)`` on the chain's grid (checked against the classifier's), reweighted by the prior."""
        check_classifier_fits(self.classifier, grid)
        log_q = self.classifier.log_probs(x).to(torch.float64)
        lp = _normalised_log_prior(self.log_prior, grid)
        if lp is not None:  # the classifier was trained under a uniform prior: reweight by the prior ratio
            log_q = torch.log_softmax(log_q + lp, dim=1)
        return log_q


class ClassifierArgmaxUpdate(_ClassifierUpdate):
    """The paper's sigma-update: ``argmax_i q(i | x)`` (deterministic)."""

    name = "classifier-argmax"

    def __call__(self, x, grid, generator=None):
        return self.log_q(x, grid).argmax(dim=1)


class ClassifierSampleUpdate(_ClassifierUpdate):
    """Draw the index from ``q(i | x)``."""

    name = "classifier-sample"

    def __call__(self, x, grid, generator=None):
        return categorical(self.log_q(x, grid), generator)


SIGMA_UPDATES = {
    "exact": ExactSigmaUpdate,
    "classifier-argmax": ClassifierArgmaxUpdate,
    "classifier-sample": ClassifierSampleUpdate,
}
"""The sigma-updates by name."""


def make_sigma_update(name: str, *, model=None, classifier=None, log_prior=None):
    """Build a sigma-update by name: ``exact`` needs ``model``; the classifier ones need ``classifier``."""
    if name not in SIGMA_UPDATES:
        raise ValueError(f"unknown sigma-update {name!r}; choose one of {', '.join(SIGMA_UPDATES)}")
    if name == "exact":
        return ExactSigmaUpdate(model, log_prior)
    if classifier is None:
        raise ValueError(f"the {name!r} sigma-update needs a noise-level classifier")
    return SIGMA_UPDATES[name](classifier, log_prior)
