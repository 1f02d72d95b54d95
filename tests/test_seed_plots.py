"""plot_seeds: every seed's value (seaborn's strip plot) on its integrator's row, beside the median and interval."""

from __future__ import annotations

import matplotlib
import numpy as np
from test_ladder_seeds import FLOORS, _docs

from dmcmc_edu.experiments.ladder.seeds import _DODGE, analyse_seeds, plot_seeds

matplotlib.use("Agg")


def test_seed_dots_sit_on_their_rows_beside_the_interval():
    f = analyse_seeds(_docs(), FLOORS)
    fig = plot_seeds({"ring": f})
    ax = fig.axes[0]
    names = list(f["per_integrator"])
    dots = np.concatenate([np.asarray(c.get_offsets()) for c in ax.collections if len(c.get_offsets())
                           and c.get_alpha() == 0.35])
    want = []
    for i, name in enumerate(names):
        for j, kind in enumerate(("noise", "control", "dlg")):
            b = f["per_integrator"][name]["best"][kind]
            if b:
                want += [(v, i + (j - 1) * _DODGE) for v in b["values"] if v is not None]
    assert len(dots) == len(want) > 0
    got = sorted(map(tuple, dots))
    for (x, y), (wx, wy) in zip(got, sorted(want)):
        assert x == wx and abs(y - wy) < 0.03  # the value itself; jittered (+-0.02) within its kind's row
    # the median of each chosen setting is drawn at the same row offset as its seeds
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 1]
    b = f["per_integrator"][names[0]]["best"]["dlg"]
    assert any(np.isclose(ln.get_xdata()[0], b["cost"]["estimate"]) and np.isclose(ln.get_ydata()[0], _DODGE)
               for ln in lines)
