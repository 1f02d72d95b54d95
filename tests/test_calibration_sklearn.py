"""calibration()'s confusion matrix, accuracy and reliability diagram (scikit-learn) against hand computations."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.evaluation.calibration import RELIABILITY_BINS, calibration, plot_reliability
from dmcmc_edu.models.classifier import NoiseLevelClassifier
from dmcmc_edu.targets import load_target

matplotlib.use("Agg")
GRID = noise_level_grid(0.01, 20.0, 50)


class _Logits(torch.nn.Module):
    input_shape = (2,)

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.fn(x) + 0.0 * self.dummy


@pytest.fixture(scope="module")
def cal():
    ring = load_target("ring")
    # the exact posterior, sharpened (logits x 6) so that the confidence spreads over [0, 1]
    exact = NoiseLevelClassifier(_Logits(lambda x: 6.0 * ring.sigma_log_posterior(x.double(), GRID).float()), GRID)
    return calibration(exact, ring.sample, n=1500, generator=torch.Generator().manual_seed(3), n_bins=7)


def test_confusion_and_accuracy_equal_a_hand_count(cal):
    y, p = cal["true_index"], cal["pred_index"]
    edges = cal["bin_edges"].tolist()  # grid-index bins: [edges[b], edges[b + 1])
    bin_of = lambda i: max(b for b in range(len(edges) - 1) if edges[b] <= i)  # noqa: E731
    hand = torch.zeros(7, 7, dtype=torch.long)
    for t, q in zip(y.tolist(), p.tolist()):
        hand[bin_of(t), bin_of(q)] += 1
    assert torch.equal(cal["confusion"], hand) and cal["confusion"].dtype == torch.long
    assert cal["accuracy"] == pytest.approx(sum(a == b for a, b in zip(y.tolist(), p.tolist())) / len(y), abs=0)


def test_reliability_equals_a_hand_binning(cal):
    rel = cal["reliability"]
    conf = cal["confidence"].numpy()
    correct = (cal["pred_index"] == cal["true_index"]).numpy()
    assert conf.min() >= 0 and conf.max() <= 1 and 0.05 < conf.mean() < 0.95
    rows = []
    for b in range(RELIABILITY_BINS):  # (lo, hi], the first bin [0, hi]: an edge value goes to the lower bin
        lo, hi = b / RELIABILITY_BINS, (b + 1) / RELIABILITY_BINS
        m = (conf <= hi) & ((conf > lo) if b else (conf >= 0)) if b < RELIABILITY_BINS - 1 else (conf > lo)
        if m.any():
            rows.append((conf[m].mean(), correct[m].mean(), int(m.sum())))
    hand_conf, hand_acc, hand_count = map(np.array, zip(*rows))
    assert len(rows) >= 5
    np.testing.assert_allclose(rel["confidence"], hand_conf, rtol=1e-12)
    np.testing.assert_allclose(rel["accuracy"], hand_acc, rtol=1e-12)
    assert rel["count"].tolist() == hand_count.tolist() and rel["count"].sum() == len(conf)
    ece = float(np.sum(hand_count * np.abs(hand_acc - hand_conf)) / len(conf))
    assert rel["ece"] == pytest.approx(ece, rel=1e-12)


def test_plot_reliability_draws_the_curve(cal):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert plot_reliability(cal, ax=ax) is ax
    xs = [line.get_xdata() for line in ax.get_lines()]
    assert any(len(x) == len(cal["reliability"]["confidence"]) and np.allclose(x, cal["reliability"]["confidence"])
               for x in xs)
    assert "ECE" in ax.get_title()
    plt.close(fig)
