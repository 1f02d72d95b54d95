"""The plotting helpers the walkthroughs use for self-explaining figures: colour bars, axis labels, points outside."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dmcmc_edu import plotting, targets  # noqa: E402


def test_count_outside_counts_exactly_the_points_beyond_the_limits():
    fig, ax = plt.subplots()
    ax.set_xlim(-1, 1)
    ax.set_ylim(2, -2)  # an inverted axis must not change the count
    x = torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, -3.0], [-0.99, 1.99], [5.0, 5.0]])
    assert plotting.count_outside(ax, x) == 3
    assert plotting.annotate_outside(ax, x, "states") == 3
    assert any("3 of 5 states" in t.get_text() for t in ax.texts)
    assert plotting.annotate_outside(ax, np.zeros((4, 2))) == 0 and len(ax.texts) == 1  # nothing outside: no note
    plt.close(fig)


def test_density_and_score_panels_carry_colour_bars_and_labels():
    mix = targets.ring()
    fig, axes = plt.subplots(1, 2)
    plotting.plot_density_with_colorbar(mix, 0.5, ax=axes[0])
    plotting.plot_score_field_with_colorbar(mix, 1.0, ax=axes[1])
    assert len(fig.axes) == 4  # two panels + two colour bars
    bars = fig.axes[2:]
    assert "p_\\sigma" in bars[0].get_ylabel() and "nabla" in bars[1].get_ylabel()
    # the score bar spans the logs of the plotted magnitudes
    lo, hi = bars[1].get_ylim()
    X, Y, pts = plotting._grid_points(plotting._lim(mix), 20)
    mags = np.log(mix.score(pts, 1.0).norm(dim=1).numpy())
    assert lo <= mags.min() + 1e-9 and hi >= mags.max() - 1e-9
    assert [a.get_xlabel() for a in axes] == ["$x_1$", "$x_2$"][:1] * 2 and axes[0].get_ylabel() == "$x_2$"
    plt.close(fig)
