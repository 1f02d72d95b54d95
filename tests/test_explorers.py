"""The live explorers (dmcmc_edu.explorers): their pure compute/draw/report parts and the widgets without a browser.

The numbers must move with the settings the way the method says they should (more KAR1 steps -> lower W2; a start
at small sigma needs fewer steps; n_skip and the x-update cost what they cost), NFE must equal the calls that reach
the model, and the DLG chains recorded for the pictures must be the sampler's own chains.
"""

import pytest
import torch

pytest.importorskip("ipywidgets")

from dmcmc_edu import DMCMCSampler, dlg_config, ring  # noqa: E402
from dmcmc_edu import explorers as ex  # noqa: E402
from dmcmc_edu.targets import ExactLevelClassifier, GaussianMixture, SpectralMixture  # noqa: E402

SMALL = ex.ExplorerSettings(n_chains=16, n_samples=128, n_paths=8, dpi=40)


class CountingRing(GaussianMixture):
    """The ring, counting the rows of every denoiser call (independently of the sampler's own ledger)."""

    def __init__(self):
        m = ring()
        super().__init__(m.weights, m.means, m.covariances, name="ring")
        self.rows = 0

    def __call__(self, x, sigma):
        self.rows += x.shape[0]
        return super().__call__(x, sigma)


# ----------------------------------------------------------------------------- DLG


def test_recorded_chains_are_the_samplers_own():
    """Recording the chains step by step draws exactly the numbers of DMCMCSampler.run()."""
    mix = ring()
    run = ex.compute_dlg(ex.ExplorerSettings(target=mix, n_chains=16, seed=3), outputs_per_chain=3, n_skip=2)
    cfg = dlg_config(mix, n_outputs=48, outputs_per_chain=3, n_skip=2, eta=ex.DLG_DEFAULTS["eta"],
                     eta_rel=ex.DLG_DEFAULTS["eta_rel"], steps=ex.DLG_DEFAULTS["steps"], seed=3)
    # the explorer evaluates a plain mixture in its eigenbases (SpectralMixture): the same draws, bit for bit ...
    ref = DMCMCSampler(SpectralMixture(mix), cfg, data_shape=(2,)).run()
    torch.testing.assert_close(run.samples, ref.samples, rtol=0, atol=0)
    # ... and the generic evaluation's to rounding (the same model; the two differ in the last bits)
    generic = DMCMCSampler(mix, cfg, data_shape=(2,)).run()
    torch.testing.assert_close(run.samples, generic.samples, rtol=1e-9, atol=1e-9 * float(generic.samples.abs().max()))
    torch.testing.assert_close(run.chosen_sigma, ref.chosen_sigma, rtol=0, atol=0)
    # states: init + 10 burn-in steps + one per round; sigma trace: init + burn-in + every Gibbs step of the rounds
    assert run.xs.shape == (1 + 10 + 3, 16, 2) and run.n_burn == 10
    assert run.sigma_trace.shape == (1 + 10 + 3 * 2, 16)
    torch.testing.assert_close(run.sigma_trace[11:], ref.sigma_trace.to(run.sigma_trace.dtype))
    # the last recorded state of each round is the state after its n_skip Gibbs steps
    torch.testing.assert_close(run.xs_sigma[11:], run.sigma_trace[11:][1::2])


@pytest.mark.parametrize("x_update,per_gibbs", [("ula", 1), ("mala", 2)])
def test_dlg_nfe_equals_counted_calls(x_update, per_gibbs):
    mix = CountingRing()
    s = ex.ExplorerSettings(target=mix, n_chains=16)
    run = ex.compute_dlg(s, x_update=x_update, n_skip=3, steps=5, outputs_per_chain=2)
    n = run.metrics["n_outputs"]
    assert n == 32
    # the paper's ledger: n_skip x-updates + KAR1 (2 steps - 1) + no Tweedie (KAR1 ends at 0)
    assert run.nfe["paper"] == pytest.approx(per_gibbs * 3 + 2 * 5 - 1, abs=1e-12)
    # the full ledger holds every row that reached the model: init (KAR2 19 steps = 37) and burn-in included
    assert run.nfe["full"] * n == pytest.approx(mix.rows, abs=1e-9)
    assert run.nfe["init_amortised"] * n == pytest.approx(16 * (37 + 10 * per_gibbs), abs=1e-9)


def test_classifier_calls_counted_in_full_ledger_only(monkeypatch):
    calls = {"rows": 0}
    original = ExactLevelClassifier.log_probs

    def counting(self, x):
        calls["rows"] += x.shape[0]
        return original(self, x)

    monkeypatch.setattr(ExactLevelClassifier, "log_probs", counting)
    exact = ex.compute_dlg(SMALL)
    draw = ex.compute_dlg(SMALL, sigma_update="classifier-sample")
    argmax = ex.compute_dlg(SMALL, sigma_update="classifier-argmax")
    n = draw.metrics["n_outputs"]
    # an exact classifier's draw is the exact sigma-update: the same chains, only the full ledger differs
    torch.testing.assert_close(draw.samples, exact.samples, rtol=0, atol=0)
    assert draw.nfe["paper"] == exact.nfe["paper"]
    extra = draw.nfe["classifier"] + draw.nfe["classifier_init_amortised"]
    assert draw.nfe["full"] == pytest.approx(exact.nfe["full"] + extra)
    # one classifier row per chain per sigma-update: init + 10 burn-in + 4 rounds of 1 Gibbs step
    assert extra * n == pytest.approx(16 * (1 + 10 + 4))
    assert calls["rows"] == 2 * 16 * 15
    assert not torch.equal(argmax.samples, exact.samples)  # the argmax is another chain


def test_dlg_numbers_move_with_the_settings():
    base = ex.compute_dlg(SMALL)
    more_steps = ex.compute_dlg(SMALL, steps=16)
    assert more_steps.nfe["denoise"] - base.nfe["denoise"] == pytest.approx(2 * (16 - 8))
    more_outputs = ex.compute_dlg(SMALL, outputs_per_chain=8)
    assert more_outputs.metrics["n_outputs"] == 16 * 8
    # burn-in and initialisation are shared by more outputs: their amortised part halves
    assert more_outputs.nfe["init_amortised"] == pytest.approx(base.nfe["init_amortised"] / 2)
    # the ESS counts outputs: at most all of them, at least about one per chain
    for r in (base, more_outputs):
        m = r.metrics
        assert 0.5 * m["n_chains"] <= m["ess_component"] <= m["n_outputs"]
    # a bigger step changes the chains
    assert not torch.equal(ex.compute_dlg(SMALL, eta=0.05).samples, base.samples)


def test_dlg_mode_weights_within_reach_of_exact_samples():
    """The defaults on 64 chains x 4 outputs: mode TV a few times that of exact samples at most (chains share modes),
    W2 near its floor, every output near the ring."""
    run = ex.compute_dlg(ex.ExplorerSettings())
    m = run.metrics
    assert m["mode_tv"] < 4 * m["mode_tv_exact"] + 0.05
    assert m["w2"] < 2.0 * m["w2_floor"]
    r = run.samples.norm(dim=1)
    assert ((r - 4).abs() < 1.5).float().mean() > 0.97
    assert torch.allclose(run.weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_dlg_report_is_deterministic_and_complete():
    a, b = ex.compute_dlg(SMALL), ex.compute_dlg(SMALL)
    text = ex.dlg_report(a)
    assert text == ex.dlg_report(b)
    for word in ("paper's ledger", "full ledger", "mode TV", "W2", "ESS", "noise floor", "spread", "median"):
        assert word in text
    assert f"{a.nfe['paper']:.1f}" in text and f"{a.nfe['full']:.1f}" in text


def test_dlg_divergence_is_reported_not_raised(monkeypatch):
    def diverge(sampler):
        raise FloatingPointError("DLG: chain(s) [0] at Gibbs step 3 diverged; lower eta")

    monkeypatch.setattr(ex, "_record_chains", diverge)
    run = ex.compute_dlg(SMALL, eta=0.1)
    assert run.error and "diverged" in run.error
    assert "no outputs" in ex.dlg_report(run)
    fig = ex.draw_dlg(run, SMALL)
    assert ex.figure_png(fig)[:4] == b"\x89PNG"


def test_dlg_figure_panels():
    run = ex.compute_dlg(SMALL)
    fig = ex.draw_dlg(run, SMALL)
    axes = fig.get_axes()
    assert len(axes) == 4 and len(axes[0].child_axes) == 1  # four panels, the first with the colourbar of sigma
    assert "sigma" in axes[0].child_axes[0].get_ylabel()
    assert axes[1].get_yscale() == "log" and axes[1].get_xlabel() == "Gibbs step"
    assert "TV" in axes[3].get_title()
    assert all(ax.get_xlabel() for ax in axes[:4])


def test_bad_settings_named():
    with pytest.raises(ValueError, match="n_chains"):
        ex.ExplorerSettings(n_chains=0)
    with pytest.raises(ValueError, match="unknown DLG explorer setting"):
        ex.compute_dlg(SMALL, etta=0.1)
    with pytest.raises(ValueError, match="sigma-update"):
        ex.compute_dlg(SMALL, sigma_update="median")
    with pytest.raises(ValueError, match="sigma_start"):
        ex.compute_integrator(SMALL, sigma_start=1000.0)
    with pytest.raises(ValueError, match="2-D"):
        ex.ExplorerSettings(target="lowrank").mixture()


# ----------------------------------------------------------------------------- integrators


def test_more_kar1_steps_lower_w2():
    w = [ex.compute_integrator(SMALL, integrator="kar1", steps=k).metrics for k in (4, 8, 32)]
    assert w[0]["w2"] > w[1]["w2"] > w[2]["w2"]
    assert w[2]["w2"] < 1.5 * w[2]["w2_floor"]  # converged: near what exact samples score
    assert w[0]["w2"] > 3 * w[0]["w2_floor"]


def test_a_low_start_needs_few_steps():
    """The point of DMCMC: from exact samples of p_sigma at sigma = 1 two KAR1 steps suffice; from sigma_max not."""
    low = ex.compute_integrator(SMALL, steps=2, sigma_start=1.0).metrics
    high = ex.compute_integrator(SMALL, steps=2).metrics
    assert low["w2"] < 1.5 * low["w2_floor"] < high["w2"]


@pytest.mark.parametrize("name,steps,expected", [("kar1", 6, 11), ("kar2", 6, 11), ("pf_euler", 6, 7),
                                                 ("reverse_diffusion", 6, 7), ("euler_maruyama", 6, 7),
                                                 ("em_score_sde", 6, 6), ("pc", 6, 13), ("rk45", 6, None)])
def test_integrator_nfe_equals_counted_calls(name, steps, expected):
    mix = CountingRing()
    run = ex.compute_integrator(ex.ExplorerSettings(target=mix, n_samples=64), integrator=name, steps=steps)
    assert run.nfe * 64 == mix.rows
    if expected is not None:
        assert run.nfe == expected
    # the path holds the start and one state per step, at decreasing sigma
    assert run.paths.shape[1:] == (64, 2) and run.path_sigma.shape == run.paths.shape[:2]
    assert (run.path_sigma[1:] <= run.path_sigma[:-1] + 1e-12).all()
    torch.testing.assert_close(run.paths[0], run.start)


def test_integrator_report_and_figure():
    run = ex.compute_integrator(SMALL, integrator="pf_euler", steps=12, sigma_start=5.0)
    text = ex.integrator_report(run)
    assert "NFE per sample (counted): 13" in text and "Tweedie" in text and "noise floor" in text
    assert "spread" in text and "mode TV" in text
    assert text == ex.integrator_report(ex.compute_integrator(SMALL, integrator="pf_euler", steps=12,
                                                              sigma_start=5.0))
    fig = ex.draw_integrator(run, SMALL)
    ax1, ax2, ax3 = fig.get_axes()
    assert ax2.get_xscale() == "log" and ax2.get_xlim()[0] > ax2.get_xlim()[1]  # sigma decreases to the right
    assert "W2" in ax3.get_title()


# ----------------------------------------------------------------------------- widgets (no browser)


def test_dlg_widget_builds_and_redraws():
    w = ex.dlg_explorer(SMALL)
    assert set(w.controls) == set(ex.DLG_DEFAULTS)
    assert w.values() == ex.DLG_DEFAULTS
    png, text = w.image.value, w.numbers.value
    assert png[:4] == b"\x89PNG" and "NFE per output" in text
    assert ex.dlg_report(ex.compute_dlg(SMALL)) in text.replace("&#x27;", "'").replace("&amp;", "&")
    w.controls["steps"].value = 16
    assert w.numbers.value != text and w.image.value != png
    assert "KAR1 16 steps" in w.numbers.value
    assert repr(w).startswith("DLG explorer (a live widget")
    w.controls["sigma_update"].value = "classifier-argmax"
    assert "classifier-argmax" in w.numbers.value


def test_integrator_widget_builds_and_redraws():
    w = ex.integrator_explorer(SMALL)
    assert list(w.controls["integrator"].options[:6]) == ["kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion",
                                                         "euler_maruyama"]
    assert {"pc", "em_score_sde"} <= set(w.controls["integrator"].options)
    text = w.numbers.value
    assert "NFE per sample (counted): 15" in text
    w.controls["steps"].value = 32
    assert "NFE per sample (counted): 63" in w.numbers.value
    w.controls["integrator"].value = "rk45"
    assert "adaptive" in w.numbers.value


def test_widget_shows_errors_in_place(monkeypatch):
    w = ex.integrator_explorer(SMALL)

    def broken(settings, **controls):
        raise RuntimeError("rk45: solve_ivp failed: step size too small")

    monkeypatch.setattr(w, "_compute", broken)
    png = w.image.value
    w.controls["steps"].value = 4
    assert "error: rk45: solve_ivp failed" in w.numbers.value and w.image.value == png


def test_one_output_per_chain_reports_no_switch_rate():
    run = ex.compute_dlg(SMALL, outputs_per_chain=1)
    assert run.metrics["ess_component"] == pytest.approx(16)  # one output per independent chain
    assert "no mode switches to measure" in ex.dlg_report(run)


def _count_figures(monkeypatch) -> list:
    """Every matplotlib Figure the explorers make from now on, in a list."""
    made = []

    class CountedFigure(ex.Figure):
        def __init__(self, *a, **k):
            made.append(self)
            super().__init__(*a, **k)

    monkeypatch.setattr(ex, "Figure", CountedFigure)
    return made


def test_dlg_widget_updates_one_figure_and_draws_what_a_new_figure_draws(monkeypatch):
    """Slider moves update the explorer's one figure (no new Figure); its image equals a fresh figure's."""
    made = _count_figures(monkeypatch)
    w = ex.dlg_explorer(SMALL)
    assert len(made) == 1
    fig = made[0]
    for name, value in (("steps", 16), ("outputs_per_chain", 8), ("n_skip", 3), ("eta", 0.1), ("eta", 0.002)):
        w.controls[name].value = value
    assert len(made) == 1 and w.render(w.last_run) is fig
    fresh = ex.figure_png(ex.draw_dlg(w.last_run, SMALL), SMALL.dpi)  # a second Figure, built from scratch
    assert len(made) == 2
    assert w.image.value == fresh  # the updated figure keeps nothing of the earlier runs (titles, notes, limits)
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert f"{16 * 8} outputs (denoised)" in titles[2]  # 16 chains x 8 outputs


def test_dlg_figure_shows_an_error_then_recovers(monkeypatch):
    figure = ex.DLGFigure(SMALL)
    good = ex.compute_dlg(SMALL)
    bad = ex.DLGRun(good.settings, *([None] * 8), error="DLG: chains diverged; lower eta")
    figure.update(bad)
    assert figure.error.get_visible() and not any(ax.get_visible() for ax in figure.axes)
    assert figure.update(good) is figure.figure
    assert not figure.error.get_visible() and all(ax.get_visible() for ax in figure.axes)
    assert ex.figure_png(figure.figure, SMALL.dpi) == ex.figure_png(ex.draw_dlg(good, SMALL), SMALL.dpi)


def test_widget_marks_the_figure_as_updating_while_it_computes():
    w = ex.dlg_explorer(SMALL)
    seen = {}
    compute = w._compute

    def watched(settings, **controls):
        seen["status"], seen["classes"] = w.status.value, list(w.image._dom_classes)
        return compute(settings, **controls)

    w._compute = watched
    w.controls["steps"].value = 4
    assert "updating" in seen["status"] and "dmcmc-stale" in seen["classes"]
    assert "updated in" in w.status.value and "dmcmc-stale" not in w.image._dom_classes
    assert set(w.last_timings) == {"compute", "draw", "png", "total", "cached"} and not w.last_timings["cached"]


def test_widget_redraws_controls_seen_before_from_its_cache():
    w = ex.dlg_explorer(SMALL)
    png0, text0 = w.image.value, w.numbers.value
    w.controls["steps"].value = 4
    png4 = w.image.value
    calls = []
    compute = w._compute
    w._compute = lambda settings, **c: calls.append(c) or compute(settings, **c)
    w.controls["steps"].value = 8  # back to the start: no new run
    assert not calls and w.last_timings["cached"] and "seen before" in w.status.value
    assert w.image.value == png0 and w.numbers.value == text0 and w.last_run.settings["steps"] == 8
    w.cache_size = 1
    w.controls["steps"].value = 16  # new controls: computed; the cache keeps only this one now
    assert len(calls) == 1 and not w.last_timings["cached"] and len(w._cache) == 1
    w.controls["steps"].value = 4  # evicted: computed again, the same image
    assert len(calls) == 2 and w.image.value == png4


def test_integrator_widget_updates_one_figure_and_draws_what_a_new_figure_draws(monkeypatch):
    made = _count_figures(monkeypatch)
    w = ex.integrator_explorer(SMALL)
    for name, value in (("steps", 32), ("integrator", "kar2"), ("sigma_start", 1.0), ("steps", 2)):
        w.controls[name].value = value
    assert len(made) == 1 and w.render(w.last_run) is made[0]
    assert w.image.value == ex.figure_png(ex.draw_integrator(w.last_run, SMALL), SMALL.dpi)


def test_widget_without_cache_computes_every_update():
    w = ex.dlg_explorer(SMALL)
    w.cache_size = 0
    w.controls["steps"].value = 4
    w.controls["steps"].value = 8  # back to the start, seen at build time: computed all the same
    assert not w.last_timings["cached"]
