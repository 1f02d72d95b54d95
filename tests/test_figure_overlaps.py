"""Figures that explain themselves (issue 19, item 4): no marker hidden under another, every point the axes cannot
show counted on the figure, a legend entry for every kind of marker.  Each test draws from the committed data."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from dmcmc_edu import plotting  # noqa: E402
from dmcmc_edu.experiments import overview  # noqa: E402
from dmcmc_edu.experiments.ladder.report import plot_metrics_from_noise  # noqa: E402
from dmcmc_edu.experiments.mnist import plot_dlg_tuning, plot_ladder  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _markers(ax):
    """Every marker drawn on ``ax``: (display x, display y, radius in pixels, artist)."""
    out = []
    for art in list(ax.lines) + list(ax.collections):
        xy, tr, radii = plotting._marker_points(art)
        if tr is None:
            continue
        for (x, y), r in zip(xy, radii):
            if np.isfinite([x, y]).all() and x > 0 and (y > 0 or tr is not ax.transData):
                dx, dy = tr.transform((x, y))
                out.append((dx, dy, r * ax.figure.dpi / 72, art))
    return out


def _hidden(ax, among=None):
    """Pairs of markers of different artists drawn closer than the larger one's radius (one hides the other)."""
    ms = [m for m in _markers(ax) if among is None or among(m[3])]
    return [(a, b) for a, b in itertools.combinations(ms, 2)
            if a[3] is not b[3] and np.hypot(a[0] - b[0], a[1] - b[1]) < max(a[2], b[2])]


def test_dodge_markers_puts_coinciding_markers_side_by_side_and_leaves_apart_ones_alone():
    fig, ax = plt.subplots()
    a = ax.plot([10, 100], [5, 50], "o", ms=6)[0]
    b = ax.plot([10, 200], [5, 3], "s", ms=6)[0]
    ax.set(xscale="log", yscale="log", xlim=(1, 1000), ylim=(1, 100))
    assert plotting.dodge_markers(ax) == 2
    (x0, y0), (x1, y1) = (ax.transData.transform((a.get_xdata()[0], 5)), ax.transData.transform((b.get_xdata()[0], 5)))
    assert x1 - x0 >= 6 * fig.dpi / 72 and y0 == y1  # a marker's width apart, on the same height
    assert a.get_xdata()[1] == 100 and b.get_xdata()[1] == 200  # markers that hide nothing stay where they are


def test_note_outside_counts_the_points_above_and_at_zero():
    _, ax = plt.subplots()
    assert plotting.note_outside(ax, [1.0, 0.5], top=2.0, zeros=True) == "" and not ax.texts
    note = plotting.note_outside(ax, [0.0, 0.0, 1.0, 9.0], top=2.0, zeros=True)
    assert "1 above the axes" in note and "2 points at 0" in note and ax.texts[0].get_text() == note


def test_the_papers_celeba_rk45_circle_no_longer_hides_the_kar1_circle():
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    overview.plot_paper_claims("celebahq256", ax=ax)
    fig.canvas.draw()
    kar1, rk45 = (next(ln for ln in ax.lines if ln.get_color() == plt.get_cmap("tab10")(i) and ln.get_marker() == "o")
                  for i in (0, 3))  # the KAR1 and RK45 colours, the without-DLG circles
    p, q = (ax.transData.transform((ln.get_xdata()[0], ln.get_ydata()[0])) for ln in (kar1, rk45))
    assert np.hypot(*(p - q)) > kar1.get_markersize() * fig.dpi / 72  # more than a marker's width apart
    assert not _hidden(ax)
    labels = ax.get_legend().get_texts()
    assert len(labels) == len(overview.INTEGRATOR_NAMES) + 2  # one colour per integrator, circles and squares


def test_the_integrator_panels_count_their_zeros_and_show_kar1_beside_kar2():
    doc = json.loads((RESULTS / "toy" / "ring.json").read_text())
    floors = json.loads((RESULTS / "seeds" / "ring_floors_n2000.json").read_text())["floors"]
    fig = plot_metrics_from_noise(doc, floors)
    fig.canvas.draw()
    on_manifold = fig.axes[3]
    assert any("3 points at 0" in t.get_text() for t in on_manifold.texts)
    edge = [ln for ln in on_manifold.lines if ln.get_marker() == "v" and len(ln.get_xdata())]
    assert sum(len(ln.get_xdata()) for ln in edge) == 3  # each drawn, on the bottom edge
    assert all(not any("at 0" in t.get_text() for t in ax.texts) for ax in fig.axes[:3])  # no zeros there
    for ax in fig.axes:  # KAR1 and KAR2 coincide at 3-7 NFE: neither hides the other any more
        assert not _hidden(ax), ax.get_title()
    assert "value 0, drawn on the bottom edge" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_the_tuning_figure_hides_no_setting_and_names_every_kind_of_marker():
    tuning = json.loads((RESULTS / "mnist_tuning" / "results.json").read_text())
    fig = plot_dlg_tuning(tuning["points"], floor=tuning["real_data_fid_floor"])
    fig.canvas.draw()
    a = fig.axes[0]
    assert not _hidden(a, among=lambda art: isinstance(art, PathCollection))
    dlg = [p for p in tuning["points"] if p["kind"] == "dlg"]
    labels = [t.get_text() for t in a.get_legend().get_texts()]
    want = ({f"DLG eta={p['eta']:g}" for p in dlg} | {f"n_skip={p['nskip']}" for p in dlg}
            | {f"{p['steps']} denoising steps" for p in dlg} | {"1 output per chain (hollow)", "KAR1 from noise"})
    assert want <= set(labels)
    legend_box = a.get_legend().get_window_extent()
    assert legend_box.x0 >= a.get_window_extent().x1  # outside the axes: it covers no marker
    sizes = {tuple(c.get_sizes()) for c in a.collections if len(c.get_offsets())}
    assert len(sizes) == len({p["steps"] for p in dlg})  # the denoising steps are encoded


def test_the_mnist_ladder_paper_count_markers_hide_no_from_noise_point():
    ladder = json.loads((RESULTS / "mnist_n2000" / "results.json").read_text())
    fig = plot_ladder(ladder["points"], floor=ladder["real_data_fid_floor"])
    fig.canvas.draw()
    for ax in fig.axes:
        if not ax.get_visible() or not ax.has_data():
            continue
        assert ax.get_xlabel() == "NFE per sample (full ledger)"
        assert not _hidden(ax, among=lambda art: isinstance(art, Line2D) and art.get_linestyle() != ":")
        hollow = [ln for ln in ax.lines if ln.get_marker() == "s" and ln.get_linestyle() == "None"]
        filled = [ln for ln in ax.lines if ln.get_linestyle() == "-"]
        assert all(h.get_markersize() < f.get_markersize() and h.get_zorder() < f.get_zorder()
                   for h in hollow for f in filled)
