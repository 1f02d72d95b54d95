"""The demo's metric figure: log axes (its values span decades), one legend without duplicates, RK45 shown."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from dmcmc_edu.experiments.demo import plot_demo_metrics  # noqa: E402


def _rows():
    rows = []
    for name, w2s in (("kar1", [12.0, 0.6]), ("euler_maruyama", [4176.6, 0.66])):
        for steps, (nfe, w2) in zip((3, 50), zip((5.0, 99.0), w2s)):
            rows.append({"integrator": name, "mode": "from sigma_max", "steps": steps, "nfe": nfe, "w2": w2,
                         "mode_tv": 0.1 if steps == 3 else 0.012, "mode_tv_exact": 0.01, "n": 4000})
    rows.append({"integrator": "rk45", "mode": "from sigma_max", "steps": 1, "nfe": 129.0, "w2": 0.47,
                 "mode_tv": 0.014, "mode_tv_exact": 0.012, "n": 4000})
    rows.append({"integrator": "kar1", "mode": "DLG", "steps": 8, "nfe": 45.5, "w2": 0.77, "mode_tv": 0.016,
                 "mode_tv_exact": 0.02, "n": 4000})
    return rows


def test_demo_metric_figure_has_log_axes_and_one_legend():
    fig = plot_demo_metrics(_rows(), floor=0.644)
    try:
        axes = fig.axes
        assert [ax.get_yscale() for ax in axes] == ["log", "log"]
        assert [ax.get_xscale() for ax in axes] == ["log", "log"]
        assert all(ax.get_legend() is None for ax in axes) and len(fig.legends) == 1
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert len(labels) == len(set(labels)) == 5  # 4 samplers + the floor, each once
        assert "rk45 from sigma_max" in labels and "DLG + kar1 (full ledger)" in labels
        # the whole range of values, from below the floor to Euler-Maruyama's 4,176, is on the axis
        lo, hi = axes[0].get_ylim()
        assert lo < 0.47 and hi > 4176.6
        floor_line = next(line for line in axes[1].get_lines() if line.get_label().startswith("exact samples"))
        assert abs(floor_line.get_ydata()[0] - (4 * 0.01 + 0.012 + 0.02) / 6) < 1e-12
    finally:
        plt.close(fig)
