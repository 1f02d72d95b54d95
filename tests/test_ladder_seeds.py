"""The ladder over seeds (issue 18): reach per setting over replicates, the 7-of-8 rule and the printed verdicts."""

import json

import numpy as np
import pytest

from dmcmc_edu.evaluation.metrics import FLOOR_METRICS
from dmcmc_edu.experiments.ladder import point_id
from dmcmc_edu.experiments.ladder.seeds import (
    analyse_seeds,
    load_replicates,
    plot_seeds,
    recheck_verdicts,
    seeds_markdown,
    seeds_text,
)

FLOORS = {k: {"threshold": 1.0, "threshold_ci": [0.9, 1.1], "quantile": 0.995} for k in FLOOR_METRICS}
FLOORS["repeats"] = 200


def _metrics(bad: bool) -> dict:
    v = 5.0 if bad else 0.1
    m = {k: v for k, how in FLOOR_METRICS.items() if how == "value"}
    m.update({f"{k}_dev": v for k, how in FLOOR_METRICS.items() if how == "abs_dev"})
    return m


def _noise(steps):
    return {"integrator": "kar1", "kind": "noise", "options": {}, "steps": steps}


def _dlg(eta):
    return {"kind": "dlg", "integrator": "kar1", "sigma_update": "exact", "x_update": "mala", "eta": eta,
            "eta_rel": 1.0, "n_skip": 1, "steps": 2, "outputs_per_chain": 5, "integrator_options": {}}


def _point(settings, nfe, bad):
    return {"id": point_id(settings), "kind": settings["kind"], "integrator": "kar1", "settings": settings,
            "nfe": nfe, "nfe_per_independent": nfe, "metrics": _metrics(bad), "tags": []}


def _docs(n_seeds=8, dlg_scale=0.3, lucky_fails=2):
    """Replicates: kar1 from noise reaches at 49 NFE (9 and 19 fail); DLG 'steady' reaches at every seed at
    ~dlg_scale * 49, DLG 'lucky' is cheaper (10) but fails at ``lucky_fails`` seeds."""
    rng = np.random.default_rng(0)
    docs = []
    for s in range(n_seeds):
        pts = [_point(_noise(5), 9.0, True), _point(_noise(10), 19.0, True), _point(_noise(25), 49.0, False),
               _point(_dlg(0.1), float(dlg_scale * 49 * np.exp(rng.normal(0, 0.05))), False),
               _point(_dlg(0.2), 10.0, s < lucky_fails)]
        docs.append({"meta": {"sweep": {"target": "ring", "n": 2000, "seed": s, "fast": False, "learned": False,
                                        "integrators": None}, "command": f"ladder --seed {s}"}, "points": pts})
    return docs


def test_the_lucky_setting_does_not_count_and_the_steady_one_decides():
    f = analyse_seeds(_docs(), FLOORS)
    e = f["per_integrator"]["kar1"]
    assert e["best"]["noise"]["cost"]["estimate"] == 49.0 and e["best"]["noise"]["n_reached"] == 8
    assert e["best"]["dlg"]["id"] == point_id(_dlg(0.1))  # not the cheaper one that reaches in 6 of 8
    v = e["dlg_vs_noise"]
    assert v["outcome"] == "a_cheaper" and 0.25 < v["ratio"]["estimate"] < 0.35
    assert v["ratio"]["high"] < 1 and v["n_seeds"] == 8
    assert e["noise_bracket_below"] == 19.0 and "next cheaper run from noise" in v["text"]
    assert e["dlg_vs_control"]["outcome"] == "only_a"


def test_dlg_is_not_called_cheaper_than_the_sweep_can_resolve():
    # DLG at ~20 NFE: cheaper than the 49-NFE run that reaches, but not than the 19-NFE run below it, which fails:
    # the integrator's own NFE to reach lies somewhere in (19, 49], so no verdict either way
    f = analyse_seeds(_docs(dlg_scale=0.42), FLOORS)
    v = f["per_integrator"]["kar1"]["dlg_vs_noise"]
    assert v["outcome"] == "no_difference" and "sweep's resolution" in v["text"] and v["ratio"]["high"] < 1


def test_seven_of_eight_counts():
    f = analyse_seeds(_docs(lucky_fails=1), FLOORS)
    assert f["per_integrator"]["kar1"]["best"]["dlg"]["id"] == point_id(_dlg(0.2))


def test_no_measurable_difference_when_dlg_costs_the_same():
    f = analyse_seeds(_docs(dlg_scale=1.0, lucky_fails=8), FLOORS)
    v = f["per_integrator"]["kar1"]["dlg_vs_noise"]
    assert v["outcome"] == "no_difference" and "no measurable difference" in v["text"]


def test_reports_print_the_verdicts(tmp_path):
    f = analyse_seeds(_docs(), FLOORS)
    md, txt = seeds_markdown(f, ["a command"]), seeds_text(f)
    v = f["per_integrator"]["kar1"]["dlg_vs_noise"]["text"]
    assert v in md and v in txt and "8/8" in md and "a command" in md
    fig = plot_seeds({"ring": f})
    assert len(fig.axes) == 1
    json.dumps(f)  # JSON-ready


def test_recheck_flags_a_verdict_that_changes():
    found = analyse_seeds(_docs(), FLOORS)
    same = analyse_seeds(_docs(n_seeds=8), FLOORS)
    flipped = analyse_seeds(_docs(dlg_scale=2.0, lucky_fails=8), FLOORS)
    assert all(r["status"] == "holds" for r in recheck_verdicts(found, same))
    rows = {r["comparison"]: r["status"] for r in recheck_verdicts(found, flipped)}
    assert rows["dlg_vs_noise"] == "contradicted"


def test_load_replicates_refuses_other_sweeps_and_repeated_seeds(tmp_path):
    docs = _docs(n_seeds=2)
    paths = []
    for d in docs:
        p = tmp_path / f"ring_seed{d['meta']['sweep']['seed']}.json"
        p.write_text(json.dumps(d))
        paths.append(p)
    assert [d["meta"]["sweep"]["seed"] for d in load_replicates(paths[::-1])] == [0, 1]
    with pytest.raises(ValueError, match="already given"):
        load_replicates([paths[0], paths[0]])
    other = dict(docs[1], meta=dict(docs[1]["meta"], sweep=dict(docs[1]["meta"]["sweep"], n=500, seed=5)))
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other.json: not a replicate"):
        load_replicates([paths[0], tmp_path / "other.json"])
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="bad.json: not a ladder result"):
        load_replicates([tmp_path / "bad.json"])


def test_cost_weighted_point_cost_prices_every_row_and_borrows_missing_oracle_counts():
    from dmcmc_edu.experiments.ladder.seeds import _oracle_rows, point_cost

    rows = {"n_chains": 10, "n_outputs": 100, "init": 500, "gibbs": 200, "denoise": 300, "tweedie": 0,
            "classifier_init": 50, "classifier": 100, "oracle_posterior_init": 40, "oracle_posterior": 60,
            "oracle_log_prob_init": 0, "oracle_log_prob": 0}
    p = {"id": "x", "kind": "dlg", "ess_ratio": 0.5, "nfe_per_independent": 17.0,
         "ledger": {"totals_in_rows": rows}}
    prices = {"classifier": 0.1, "oracle_posterior": 3.0, "oracle_log_prob": 1.0}
    # score rows (500 + 200 + 300) + 0.1 * 150 classifier rows + 3 * 100 posterior rows, per output, / ESS 0.5
    assert point_cost(p, prices) == pytest.approx((1000 + 15 + 300) / 100 / 0.5, rel=1e-12)
    assert point_cost(p) == 17.0  # no prices: the full ledger as stored
    old = dict(p, ledger={"totals_in_rows": {k: v for k, v in rows.items() if not k.startswith("oracle")}})
    assert point_cost(old, prices) is None  # an older ledger: oracle rows not counted
    borrowed = _oracle_rows([{"points": [p]}])
    assert point_cost(old, prices, borrowed) == pytest.approx(point_cost(p, prices), rel=1e-12)
    noise = {"id": "n", "kind": "noise", "nfe_per_independent": 9.0}
    assert point_cost(noise, prices) == 9.0
