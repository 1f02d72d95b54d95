"""The peers comparison over seeds (experiments.ladder.peers): which setting each family fields per budget, and
the verdict DLG vs the rest, on synthetic result files whose answer is known."""

import math

import matplotlib
import pytest

from dmcmc_edu.evaluation.metrics import FLOOR_METRICS
from dmcmc_edu.experiments.ladder.peers import (
    analyse_peers,
    peers_seeds_markdown,
    peers_seeds_text,
    plot_peers_seeds,
)

matplotlib.use("Agg")

SEEDS = list(range(8))
FLOORS = {k: {"threshold": 1.0} for k in FLOOR_METRICS}
DLG_SETTINGS = {"kind": "dlg", "integrator": "kar1", "sigma_update": "exact", "x_update": "mala", "eta": 0.0625,
                "eta_rel": 1.0, "init_steps": 8, "init_kick": 0.5, "burn_in": [[10, None]], "final_tweedie": "auto",
                "tweedie_sigma": 0.01, "outputs_per_chain": 20, "tags": [], "n_skip": 1, "steps": 2,
                "integrator_options": {}}


def _metrics(w2, inside=True):
    """Every metric inside its floor (1.0) or, with ``inside=False``, mode_tv outside it."""
    m = {k: 0.5 for k in FLOOR_METRICS if FLOOR_METRICS[k] == "value"}
    m.update({f"{k}_dev": 0.5 for k in FLOOR_METRICS if FLOOR_METRICS[k] == "abs_dev"})
    m["w2"] = w2
    if not inside:
        m["mode_tv"] = 2.0
    return m


def _peer_doc(seed, rows):
    return {"meta": {"seed": seed, "budgets": [10, 50]}, "rows": rows}


def _row(sampler, budget, w2, inside=True, family="k-diffusion"):
    return {"sampler": sampler, "family": family, "budget": budget, "nfe": float(budget), "label": f"{budget} st",
            "metrics": _metrics(w2, inside)}


def _ladder_doc(seed, points):
    return {"meta": {"sweep": {"seed": seed}}, "points": points}


def _dlg(pid, nfe, w2, inside=True, per_indep=None, integrator="kar1"):
    return {"id": pid, "kind": "dlg", "integrator": integrator, "nfe": nfe,
            "nfe_per_independent": per_indep if per_indep is not None else 3 * nfe,
            "settings": dict(DLG_SETTINGS, integrator=integrator), "metrics": _metrics(w2, inside)}


def _docs(peer_rows, dlg_points):
    return ([_peer_doc(s, peer_rows(s)) for s in SEEDS], [_ladder_doc(s, dlg_points(s)) for s in SEEDS])


def _budget(found, b):
    return next(pb for pb in found["per_budget"] if pb["budget"] == b)


def test_a_setting_inside_in_fewer_than_seven_seeds_does_not_count_against_one_that_is_inside_in_all():
    # DLG has the lower W2 everywhere but is outside a floor on 2 of 8 seeds: the peer counts, DLG does not
    peers, ladders = _docs(lambda s: [_row("lms", 50, 0.40)],
                           lambda s: [_dlg("a", 40, 0.20, inside=s >= 2)])
    found = analyse_peers(peers, ladders, FLOORS)
    pb = _budget(found, 50)
    assert pb["best"]["DLG (per output)"]["n_inside"] == 6 and not pb["best"]["DLG (per output)"]["counts"]
    assert pb["best"]["k-diffusion"]["n_inside"] == 8 and pb["best"]["k-diffusion"]["counts"]
    v = pb["verdicts"]["DLG (per output)"]
    assert v["outcome"] == "only_b" and v["text"].startswith("only lms (k-diffusion) reaches (0.40")


def test_when_both_count_their_w2_is_compared_paired_by_seed():
    peers, ladders = _docs(lambda s: [_row("lms", 50, 0.40 + 0.01 * s)],
                           lambda s: [_dlg("a", 40, 0.20 + 0.005 * s)])
    v = _budget(analyse_peers(peers, ladders, FLOORS), 50)["verdicts"]["DLG (per output)"]
    assert v["outcome"] == "a_cheaper" and math.isclose(v["ratio"]["estimate"], 0.5, rel_tol=1e-9)
    # the same W2 on both sides (up to noise around 1): no measurable difference
    peers, ladders = _docs(lambda s: [_row("lms", 50, 0.40 * (1 + (-1) ** s * 0.05))],
                           lambda s: [_dlg("a", 40, 0.40)])
    v = _budget(analyse_peers(peers, ladders, FLOORS), 50)["verdicts"]["DLG (per output)"]
    assert v["outcome"] == "no_difference"


def test_each_family_fields_its_setting_with_the_most_seeds_inside_then_the_lowest_w2():
    def rows(s):
        return [_row("euler", 50, 0.10, inside=s < 5),  # lowest W2 but inside on 5 seeds only
                _row("heun", 50, 0.35), _row("lms", 50, 0.30),  # both inside on 8: lms has the lower W2
                _row("kar1", 50, 0.32, family="ours (from sigma_max)")]

    def points(s):
        return [_dlg("cheap", 30, 0.31), _dlg("dear", 60, 0.05),  # over the budget per output: not a candidate
                _dlg("indep", 10, 0.5, per_indep=45)]

    pb = _budget(analyse_peers(*_docs(rows, points), FLOORS), 50)
    assert pb["best"]["k-diffusion"]["sampler"] == "lms"
    assert pb["best"]["ours (from sigma_max)"]["sampler"] == "kar1"
    assert pb["best"]["DLG (per output)"]["ladder_id"] == "cheap"
    assert pb["best"]["DLG (per independent sample)"]["ladder_id"] == "indep"  # 45 <= 50 per independent sample
    assert pb["best_other"] == "lms (k-diffusion)"
    assert "DLG (per independent sample)" not in _budget(analyse_peers(*_docs(rows, points), FLOORS), 10)["best"]


def test_a_failed_row_or_a_missing_point_counts_as_outside_every_floor():
    def rows(s):
        if s == 3:
            return [{"sampler": "lms", "family": "k-diffusion", "budget": 50, "label": "50 st",
                     "error": "non-finite outputs"}]
        return [_row("lms", 50, 0.4)]

    def points(s):
        return [] if s == 5 else [_dlg("a", 40, 0.3)]

    pb = _budget(analyse_peers(*_docs(rows, points), FLOORS), 50)
    assert pb["best"]["k-diffusion"]["inside"][3] is False and pb["best"]["k-diffusion"]["n_inside"] == 7
    assert pb["best"]["DLG (per output)"]["inside"][5] is False and pb["best"]["DLG (per output)"]["failing"][5] == 7


def test_seeds_that_differ_between_peers_and_ladder_are_refused():
    peers, ladders = _docs(lambda s: [_row("lms", 50, 0.4)], lambda s: [_dlg("a", 40, 0.3)])
    with pytest.raises(ValueError, match="seeds"):
        analyse_peers(peers, ladders[:-1], FLOORS)
    with pytest.raises(ValueError, match="given twice"):
        analyse_peers(peers + peers[:1], ladders, FLOORS)


def test_the_report_says_what_the_analysis_found():
    peers, ladders = _docs(lambda s: [_row("lms", 10, 0.9, inside=False), _row("lms", 50, 0.40)],
                           lambda s: [_dlg("a", 40, 0.20, inside=s >= 2)])
    found = analyse_peers(peers, ladders, FLOORS)
    text = peers_seeds_text(found)
    assert "--- at most 50 NFE (8 seeds)" in text and "6/8 seeds inside every floor" in text
    assert "per independent sample this DLG setting costs 120.0 NFE, 2.4x the budget" in text
    assert "DLG (per output): no DLG setting within 10 NFE" in text
    md = peers_seeds_markdown(found, ["python bench/peers_seeds.py"])
    assert "| k-diffusion | lms | 50 st | 8/8 | 0 |" in md and "counts when at least 7 of 8 seeds" in md
    fig = plot_peers_seeds(found)  # bars by family (sorted), then budget: DLG at 50 only; lms at 10 and 50
    assert [b.get_height() for b in fig.axes[0].patches] == [6, 0, 8]
