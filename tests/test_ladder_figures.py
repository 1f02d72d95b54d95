"""The ladder's report: the speed-up columns say which way round they are, the figures have one legend each."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dmcmc_edu.experiments import ladder  # noqa: E402

_FLOORS = {k: {"threshold": 0.1} for k in ("w2", "mmd2", "mode_tv", "spread", "on_manifold", "nll_mean",
                                            "nll_median")}


def _pt(kind, integrator, nfe, w2, ess=1.0, tags=()):
    m = {"w2": w2, "mmd2": 0.0, "mode_tv": 0.01, "spread": 1.0, "spread_dev": 0.0, "on_manifold_dev": 0.0,
         "nll_mean_dev": 0.0, "nll_median_dev": 0.0}
    s = {"kind": kind, "integrator": integrator, "steps": 3, "options": {}, "sigma_mid": 2.0}
    if kind == "dlg":
        s.update(sigma_update="exact", x_update="mala", eta=0.01, outputs_per_chain=2, n_skip=1)
    return {"id": f"{integrator}{kind}{nfe}", "kind": kind, "integrator": integrator, "settings": s,
            "tags": list(tags), "metrics": m, "nfe": nfe, "nfe_paper": nfe, "nfe_per_independent": nfe / ess,
            "ess_ratio": ess}


def _doc():
    pts = []
    for integ in ("kar1", "kar2"):
        pts += [_pt("noise", integ, 10, 50.0), _pt("noise", integ, 50, 0.08), _pt("noise", integ, 100, 0.07),
                _pt("schedule", integ, 20, 0.09), _pt("dlg", integ, 5, 0.05, ess=0.5),
                _pt("dlg", integ, 8, 0.3, tags=("paper",))]
    return {"meta": {"floors": _FLOORS, "stem": "toy", "d": 2, "sweep": {"n": 10}}, "points": pts}


def test_reach_text_writes_the_speed_up_as_noise_over_dlg():
    text = ladder.reach_text(ladder.analyse(_doc()))
    assert "noise NFE/DLG NFE" in text and "ctrl NFE/DLG NFE" in text
    row = next(line for line in text.splitlines() if line.startswith("kar1"))
    # noise reaches at 50, the control at 20, DLG at 5 / 0.5 = 10 per independent sample: 5x and 2x
    assert row.split() == ["kar1", "50", "20", "-", "10", "5.00x", "2.00x"]


def _labels(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_figures_have_one_legend_without_duplicates_and_note_points_above_the_axes():
    doc = _doc()
    for fig in (ladder.plot_w2_vs_nfe(doc), ladder.plot_modes_vs_nfe(doc), ladder.plot_ladder(doc),
                ladder.plot_reach({"toy": ladder.analyse(doc)})):
        labels = _labels(fig)
        assert len(fig.legends) == 1 and labels and len(labels) == len(set(labels))
        assert all(ax.get_legend() is None for ax in fig.axes)
        xlabels = {ax.get_xlabel() for ax in fig.axes if ax.get_visible() and ax.get_xlabel()}
        assert len(xlabels) == 1 and "NFE" in xlabels.pop()  # one x quantity per figure
        plt.close(fig)
    fig = ladder.plot_w2_vs_nfe(doc)  # W2 50 lies above the top (30 x the floor of 0.1)
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(n.startswith("1 above the axes") for n in notes)
    plt.close(fig)


def test_every_label_token_is_decoded():
    for token in ("T=M", "tilt=A", "+S/decade", "DDIM->S", "KAR1 C st, restart S", "eta_rel=R"):
        assert token in ladder.LABEL_KEY


def test_every_integrator_of_a_sweep_gets_its_panel_including_solvers_beyond_the_six():
    """A sweep with the paper's six and four more solvers draws ten titled W2 panels (the figure grows a row)."""
    names = ("kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion", "euler_maruyama",
             "dpmpp_2m", "dpmpp_2m_sde", "unipc", "restart")
    pts = [_pt("noise", integ, nfe, w2) for integ in names for nfe, w2 in ((10, 1.0), (50, 0.08))]
    doc = {"meta": {"floors": _FLOORS, "stem": "toy", "d": 2, "sweep": {"n": 10}}, "points": pts}
    for fig in (ladder.plot_w2_vs_nfe(doc), ladder.plot_ladder(doc)):
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        assert all(n in titles for n in names), titles
        plt.close(fig)
