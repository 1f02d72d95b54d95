"""The ladder's answer over seeds: NFE to reach the reference as a median with its interval, and printed verdicts.

A *replicate* of a sweep is the same plan run with another base seed (``ladder --seed S``, files
``<stem>_seedS.json``; seed 0 keeps the plain stem): every point's seed and the exact reference set change, the
classifier, the MMD kernel and the population values do not.  :func:`analyse_seeds` reads the replicates of one
sweep and, per integrator:

1. per seed, the reference quality: every metric within max(noise floor, the value of that seed's own
   from-noise run at the largest NFE) -- the single-seed rule of :func:`.report.analyse`;
2. per setting, over the seeds: whether it reaches and at what NFE per independent sample
   (:func:`~dmcmc_edu.evaluation.uncertainty.reach_summary`); a setting *counts* only when at least 7 of 8 seeds
   reach;
3. per kind (from noise, each control, DLG): the counting setting with the smallest median NFE;
4. the verdicts "DLG vs from noise" and "DLG vs the best control", each from
   :func:`~dmcmc_edu.evaluation.uncertainty.verdict` (paired by replicate: seed i of one arm beside seed i of the
   other).  The runs from noise form a grid of step counts, so the integrator's own NFE to reach lies between the
   grid's next cheaper run and the chosen one: DLG is called cheaper only when it beats that lower end too.

The noise floors are those of :func:`~dmcmc_edu.evaluation.metrics.exact_floors` for the sweep's n and MMD
kernel (fresh exact pairs, the same numbers for every replicate), not the per-replicate floors saved in each file.
Choosing the cheapest counting setting among many is a selection: the interval of the chosen one is a little
optimistic, which :func:`recheck` measures by running the chosen settings again on seeds that took no part in
the choice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from dmcmc_edu.core.ledger import ORACLE_FIELDS, NFELedger
from dmcmc_edu.evaluation.metrics import FLOOR_METRICS
from dmcmc_edu.evaluation.uncertainty import MIN_REACH_FRACTION, reach_summary, verdict
from dmcmc_edu.experiments.ladder.plan import point_label
from dmcmc_edu.experiments.ladder.report import _ORDER, _passes, _untweaked, _value

__all__ = ["GROUPS", "load_replicates", "analyse_seeds", "seeds_markdown", "seeds_text", "plot_seeds",
           "per_seed_costs", "point_cost", "recheck_verdicts"]

GROUPS = ("noise", "schedule", "restart", "control", "dlg")
"""The kinds compared (``control`` = the better of the two controls)."""


def load_replicates(paths) -> list[dict]:
    """The result files of replicates of one sweep, checked to be replicates (same plan settings, other seeds).

    Refused (ValueError, one line naming the file): a file that is not a ladder result, or whose target, n,
    ``fast``, ``learned`` or integrators differ from the first, or a seed given twice.
    """
    docs, seen = [], {}
    for p in paths:
        p = Path(p)
        try:
            doc = json.loads(p.read_text())
            sweep = doc["meta"]["sweep"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{p}: not a ladder result file ({type(err).__name__}: {err})") from None
        key = {k: v for k, v in sweep.items() if k != "seed"}
        if docs:
            first = {k: v for k, v in docs[0]["meta"]["sweep"].items() if k != "seed"}
            if key != first:
                raise ValueError(f"{p}: not a replicate of {seen[docs[0]['meta']['sweep']['seed']]} (sweep "
                                 f"{key} vs {first})")
        if sweep["seed"] in seen:
            raise ValueError(f"{p}: seed {sweep['seed']} is already given by {seen[sweep['seed']]}")
        seen[sweep["seed"]] = p
        docs.append(doc)
    if not docs:
        raise ValueError("load_replicates: no result files")
    return sorted(docs, key=lambda d: d["meta"]["sweep"]["seed"])


def _targets(noise: list[dict], floors: dict) -> dict:
    ref = max(noise, key=lambda p: p["nfe"])
    return {k: max(floors[k]["threshold"], _value(ref, k)) for k in FLOOR_METRICS}


def _oracle_rows(docs: list[dict]) -> dict[str, dict]:
    """Per DLG point id, the counted rows of a replicate whose ledger has the oracle fields (the counts of a
    setting do not depend on the seed: every chain makes the same Gibbs steps), for replicates written before the
    ledger counted them."""
    out = {}
    for doc in docs:
        for p in doc["points"]:
            rows = (p.get("ledger") or {}).get("totals_in_rows") or {}
            if p["kind"] == "dlg" and all(rows.get(k) is not None for k in ORACLE_FIELDS):
                out.setdefault(p["id"], rows)
    return out


def point_cost(p: dict, prices: dict | None = None, borrowed: dict | None = None) -> float | None:
    """A point's NFE per independent sample: the full ledger (``prices`` None) or the cost-weighted one.

    Cost-weighted: the score model's evaluations plus each classifier, exact-posterior and log-density row at its
    measured price (:meth:`~dmcmc_edu.core.ledger.NFELedger.per_output`), divided by the ESS ratio.  Samplers with
    independent outputs make score evaluations only, so their two costs agree.  ``None`` when the point's oracle
    rows were not counted and no replicate of the same setting has them (``borrowed``: :func:`_oracle_rows`).
    """
    if prices is None or p["kind"] != "dlg":
        return float(p["nfe_per_independent"])
    rows = dict((p.get("ledger") or {}).get("totals_in_rows") or {})
    if any(rows.get(k) is None for k in ORACLE_FIELDS) and borrowed and p["id"] in borrowed:
        rows.update({k: borrowed[p["id"]][k] for k in ORACLE_FIELDS})
    if not rows:
        return None
    cw = NFELedger.from_dict({"totals_in_rows": rows}).per_output(prices)["cost_weighted"]
    return None if cw is None else cw / max(float(p["ess_ratio"]), 1e-9)


def per_seed_costs(docs: list[dict], floors: dict, integrator: str, *, rule: str = "reference",
                   prices: dict | None = None) -> dict:
    """Per setting of one integrator: its kind, label and per-seed NFE per independent sample where it reaches.

    ``rule`` is ``"reference"`` (within max(floor, that seed's from-noise value at the largest NFE)) or
    ``"floors"`` (every metric inside the noise floors).  A seed where the point is missing, failed or does not
    reach gives ``nan``.  With ``prices`` the cost is :func:`point_cost`'s cost-weighted one.  Returns
    ``{point_id: {"kind", "label", "costs": [...], "seeds": [...]}}``.
    """
    seeds = [d["meta"]["sweep"]["seed"] for d in docs]
    borrowed = _oracle_rows(docs) if prices else None
    out = {}
    for i, doc in enumerate(docs):
        mine = [p for p in doc["points"] if p["integrator"] == integrator and p.get("metrics") and _untweaked(p)]
        noise = [p for p in mine if p["kind"] == "noise"]
        if not noise:
            continue
        targets = _targets(noise, floors) if rule == "reference" else None
        for p in mine:
            e = out.setdefault(p["id"], {"kind": p["kind"], "label": point_label(p["settings"]),
                                         "costs": [math.nan] * len(docs), "all": [math.nan] * len(docs),
                                         "seeds": seeds})
            c = point_cost(p, prices, borrowed)
            e["all"][i] = math.nan if c is None else c  # what the point costs, whether it reaches or not
            if _passes(p, floors, targets):
                e["costs"][i] = e["all"][i]
    return out


def _best(settings: dict, kinds) -> dict | None:
    """The counting setting of the given kinds with the smallest median cost (its Reach and label)."""
    best = None
    for pid, e in settings.items():
        if e["kind"] not in kinds:
            continue
        r = reach_summary(e["costs"], e["seeds"], label=e["label"])
        if r.counts and (best is None or r.cost.estimate < best["reach"].cost.estimate):
            best = {"id": pid, "label": e["label"], "kind": e["kind"], "reach": r}
    return best


def _noise_bracket(settings: dict, chosen: dict | None) -> float | None:
    """The NFE of the sweep's next cheaper run from noise below the chosen one (it does not count as reaching).

    The runs from noise form a grid of step counts (roughly doubling), so the integrator's true NFE to reach lies
    between this value (exclusive) and the chosen one: a verdict that DLG is cheaper must hold against this lower
    end too.  ``None`` if the chosen run is the cheapest of the grid.
    """
    if chosen is None:
        return None
    costs = [float(np.nanmedian(e["all"])) for e in settings.values()
             if e["kind"] == "noise" and np.isfinite(e["all"]).any()]
    below = [c for c in costs if c < chosen["reach"].cost.estimate]
    return max(below) if below else None


def _bracketed(v_hi, dlg_arm, lo: float | None, names: dict, n: int) -> dict:
    """The DLG-vs-noise verdict at the sweep's resolution: noise reaches somewhere in (lo, hi].

    DLG is called cheaper only when it is cheaper than ``lo`` too (the verdict against the lower end), dearer only
    when it is dearer than the chosen run (``v_hi``); between the two the sweep cannot tell.
    """
    if v_hi.outcome != "a_cheaper" or lo is None:
        return v_hi.to_dict()
    v_lo = verdict(dlg_arm, [lo] * n, names["dlg"], f"{names['noise']} at {lo:.0f} NFE (the next cheaper run, which "
                   "does not reach)", what="NFE per independent sample")
    if v_lo.outcome == "a_cheaper":
        d = v_lo.to_dict()
        d["text"] = (f"{v_hi.text}; and cheaper than the sweep's next cheaper run from noise: {v_lo.text}")
        d["ratio"] = v_hi.ratio.to_dict()
        return d
    r = v_hi.ratio
    return {**v_hi.to_dict(), "outcome": "no_difference",
            "text": (f"no measurable difference at the sweep's resolution between {names['dlg']} and "
                     f"{names['noise']}: against the run that reaches the ratio is {r.estimate:.2f} (95% CI "
                     f"{r.low:.2f}-{r.high:.2f}, {r.n} seeds), but the sweep's next cheaper run from noise ({lo:.0f} "
                     "NFE) lies below DLG's cost, so the integrator's own NFE to reach may too")}


def _best_noncounting(settings: dict, kinds) -> dict | None:
    """The setting of the given kinds that reaches in the most seeds (the nearest miss), for the report."""
    cands = [(sum(np.isfinite(e["costs"])), pid, e) for pid, e in settings.items() if e["kind"] in kinds]
    cands = [c for c in cands if c[0] > 0]
    if not cands:
        return None
    k, pid, e = max(cands, key=lambda c: (c[0], -np.nanmedian(c[2]["costs"])))
    return {"id": pid, "label": e["label"], "n_reached": int(k), "n": len(e["costs"]),
            "reach": reach_summary(e["costs"], e["seeds"], label=e["label"])}


_KINDS_OF = {"noise": ("noise",), "schedule": ("schedule",), "restart": ("restart",),
             "control": ("schedule", "restart"), "dlg": ("dlg",)}


def _integrator_entry(docs, floors, name, rule, prices=None) -> dict | None:
    settings = per_seed_costs(docs, floors, name, rule=rule, prices=prices)
    if not settings:
        return None
    best = {g: _best(settings, _KINDS_OF[g]) for g in GROUPS}
    miss = {g: _best_noncounting(settings, _KINDS_OF[g]) for g in GROUPS if best[g] is None}
    entry = {"best": {g: (None if b is None else {"id": b["id"], "label": b["label"], "kind": b["kind"],
                                                   **b["reach"].to_dict()}) for g, b in best.items()},
             "nearest_miss": {g: (None if m is None else {k: v for k, v in m.items() if k != "reach"})
                              for g, m in miss.items()}}
    names = {"noise": f"{name} from noise", "control": f"{name} with the best control", "dlg": f"DLG with {name}"}

    def arm(g):  # the chosen setting, else the nearest miss (its Reach says in how many seeds), else nothing
        if best[g]:
            return best[g]["reach"]
        return miss[g]["reach"] if miss.get(g) else [math.nan] * len(docs)

    entry["dlg_vs_control"] = verdict(arm("dlg"), arm("control"), names["dlg"], names["control"],
                                      what="NFE per independent sample").to_dict()
    lo = _noise_bracket(settings, best["noise"])
    entry["noise_bracket_below"] = lo
    entry["dlg_vs_noise"] = _bracketed(verdict(arm("dlg"), arm("noise"), names["dlg"], names["noise"],
                                               what="NFE per independent sample"), arm("dlg"), lo, names, len(docs))
    return entry


def analyse_seeds(docs: list[dict], floors: dict, *, rule: str = "reference", prices: dict | None = None) -> dict:
    """The findings of a sweep's replicates (see the module docstring); JSON-ready.

    ``prices`` (``{"classifier": r, "oracle_posterior": r2, "oracle_log_prob": r3}``, measured by
    ``bench/ledger_costs.py``) weighs every row by its cost instead of counting each call as one NFE.
    """
    names = sorted({p["integrator"] for d in docs for p in d["points"]},
                   key=lambda nm: _ORDER.index(nm) if nm in _ORDER else 99)
    per = {}
    for name in names:
        e = _integrator_entry(docs, floors, name, rule, prices)
        if e is not None:
            per[name] = e
    meta = docs[0]["meta"]
    return {"target": meta["sweep"]["target"], "learned": meta["sweep"].get("learned", False),
            "n": meta["sweep"]["n"], "seeds": [d["meta"]["sweep"]["seed"] for d in docs], "rule": rule,
            "min_reach_fraction": MIN_REACH_FRACTION, "prices": prices,
            "floors": {k: {"threshold": floors[k]["threshold"], "threshold_ci": floors[k].get("threshold_ci"),
                           "quantile": floors[k].get("quantile")} for k in FLOOR_METRICS},
            "floor_repeats": floors.get("repeats"), "per_integrator": per}


def _cell(b: dict | None) -> str:
    if b is None:
        return "—"
    c = b["cost"]
    return f"{c['estimate']:.0f} ({c['low']:.0f}–{c['high']:.0f}) {b['n_reached']}/{b['n']}"


def seeds_markdown(f: dict, commands: list[str] | None = None) -> str:
    """The findings of :func:`analyse_seeds` as Markdown: reach per kind and the two verdicts per integrator."""
    n_seeds = len(f["seeds"])
    lines = [f"# Ladder over seeds: {f['target']}{' (learned model)' if f['learned'] else ''}", "",
             f"{n_seeds} replicates (seeds {', '.join(map(str, f['seeds']))}), n = {f['n']} outputs per point. "
             "Cells: the median NFE per independent sample ("
             + ("cost-weighted ledger" if f.get("prices") else "full ledger") + " / ESS ratio) to reach the reference "
             "(every metric within max(noise floor, that seed's own from-noise value at the largest NFE)), its 95% "
             "bootstrap interval, and the seeds that reach; a setting counts only when it reaches in at least "
             f"{math.ceil(f['min_reach_fraction'] * n_seeds)} of {n_seeds} seeds. Noise floors: the "
             f"{f['floors']['w2']['quantile']} quantile of {f['floor_repeats']} exact pairs of n samples.", "",
             "| integrator | from noise | schedule ctrl | restart ctrl | DLG (best counting) |",
             "|---|---|---|---|---|"]
    for name, e in f["per_integrator"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(e["best"][g]) for g in ("noise", "schedule", "restart", "dlg"))
                     + " |")
    lines += ["", "Verdicts (each printed by `dmcmc_edu.evaluation.uncertainty.verdict`):", ""]
    for e in f["per_integrator"].values():
        lines.append(f"- {e['dlg_vs_noise']['text']}")
        lines.append(f"- {e['dlg_vs_control']['text']}")
    lines += ["", "Settings chosen:", ""]
    for name, e in f["per_integrator"].items():
        for g in ("noise", "control", "dlg"):
            b = e["best"][g]
            if b:
                lines.append(f"- {name}, {g}: {b['label']}")
            elif g in e["nearest_miss"] and e["nearest_miss"][g]:
                m = e["nearest_miss"][g]
                lines.append(f"- {name}, {g}: none counts; nearest: {m['label']} ({m['n_reached']}/{m['n']} seeds)")
    if commands:
        lines += ["", "Commands:", ""] + [f"    {c}" for c in commands]
    if f.get("run_seconds_per_seed"):
        lines += ["", "Sampling time per replicate (sum over its points, one torch thread, on a 2-core machine shared "
                  "with other work): " + ", ".join(f"seed {k} {v / 60:.1f} min"
                                                   for k, v in f["run_seconds_per_seed"].items()) + "."]
    return "\n".join(lines) + "\n"


def seeds_text(f: dict) -> str:
    """The reach table and verdicts of :func:`analyse_seeds` as plain text (for notebooks and terminals)."""
    lines = [f"{'integrator':<18}{'from noise':>22}{'best control':>22}{'DLG':>22}   (median NFE, 95% CI, seeds)"]
    for name, e in f["per_integrator"].items():
        cells = "".join(f"{_cell(e['best'][g]):>22}" for g in ("noise", "control", "dlg"))
        lines.append(f"{name:<18}{cells}")
    lines.append("")
    for e in f["per_integrator"].values():
        lines += [e["dlg_vs_noise"]["text"], e["dlg_vs_control"]["text"]]
    return "\n".join(lines)


_STYLE = {"noise": dict(color="k", marker="o", label="from sigma_max"),
          "control": dict(color="C1", marker="s", label="best control (schedule or restart)"),
          "dlg": dict(color="C0", marker="D", label="DLG, best counting setting")}


_DODGE = 0.8 / 3
"""Row offset between the kinds of :func:`plot_seeds`: seaborn's ``dodge`` splits a row's width 0.8 in three."""


def _seed_values(b: dict) -> list[float]:
    """The per-seed costs of a chosen setting that reached (``values`` of its :class:`Reach`, ``None`` = missed)."""
    return [float(v) for v in b.get("values", []) if v is not None and math.isfinite(float(v))]


def plot_seeds(findings: dict):
    """Per integrator and kind: each seed's NFE to reach the reference (dots) and their median with its 95%
    interval (marker and bar); one panel per sweep.

    ``findings`` maps a title to a result of :func:`analyse_seeds`.  The dots are the chosen setting's per-seed
    values (seaborn's strip plot; seeds that did not reach have no dot); the median and its interval are the
    :func:`~dmcmc_edu.evaluation.uncertainty.reach_summary` numbers the verdicts rest on (not a new bootstrap).
    A hollow marker in the grey band: no setting of that kind reaches in enough seeds.  Returns the figure.
    """
    fig, axes = plt.subplots(1, len(findings), figsize=(6.2 * len(findings), 4.4), squeeze=False)
    best = [b for f in findings.values() for e in f["per_integrator"].values() for b in e["best"].values() if b]
    vals = [b["cost"]["high"] for b in best] + [b["cost"]["low"] for b in best]
    vals += [v for b in best for v in _seed_values(b)]
    vals += [e["noise_bracket_below"] for f in findings.values() for e in f["per_integrator"].values()
             if e.get("noise_bracket_below")]
    lo, never = 0.6 * min(vals), 4.0 * max(vals)
    kinds = ("noise", "control", "dlg")
    for ax, (title, f) in zip(axes[0], findings.items()):
        names = list(f["per_integrator"])
        rows = []  # every seed's value of every chosen setting: seaborn's strip plot, one row per integrator
        for j, kind in enumerate(kinds):
            st, dy = _STYLE[kind], (j - 1) * _DODGE  # the row offset seaborn's dodge gives the kind
            ax.errorbar([], [], xerr=[], fmt=st["marker"], color=st["color"], label=st["label"], ms=5)
            for i, name in enumerate(names):
                b = f["per_integrator"][name]["best"][kind]
                below = f["per_integrator"][name].get("noise_bracket_below")
                if b and kind == "noise" and below:  # the sweep's resolution: the next cheaper run does not count
                    ax.plot([below, b["cost"]["estimate"]], [i + dy] * 2, color="0.6", lw=1, ls=":", zorder=2)
                    ax.plot([below], [i + dy], marker="|", color="0.6", ms=8, zorder=2)
                if b:
                    rows += [{"integrator": name, "kind": kind, "nfe": v} for v in _seed_values(b)]
                    c = b["cost"]
                    err = [[c["estimate"] - c["low"]], [c["high"] - c["estimate"]]]
                    ax.errorbar([c["estimate"]], [i + dy], xerr=err, fmt=st["marker"], color=st["color"], ms=6,
                                mec="white", mew=0.6, capsize=3, elinewidth=1.4, zorder=4)
                else:
                    ax.scatter([never], [i + dy], marker=st["marker"], s=28, facecolor="none",
                               edgecolor=st["color"], zorder=3)
        if rows:
            sns.stripplot(data=pd.DataFrame(rows), x="nfe", y="integrator", hue="kind", order=names,
                          hue_order=kinds, palette={k: _STYLE[k]["color"] for k in kinds}, dodge=True,
                          jitter=0.05, size=3, alpha=0.35, linewidth=0, legend=False, ax=ax, zorder=3)
        ax.axvspan(never / 1.6, never * 1.6, color="0.92", zorder=0)
        ax.text(never, -0.6, "does not count", ha="center", va="center", fontsize=8, color="0.3")
        ax.set(xscale="log", xlim=(lo, never * 1.6), ylim=(len(names) - 0.5, -0.9),
               title=f"{title}: {len(f['seeds'])} seeds")
        ax.set_yticks(range(len(names)), names)
        ax.set_ylabel("")
        ax.set_xlabel("NFE per independent sample to reach the reference\n(dots: seeds; marker and bar: median "
                      "over seeds, 95% interval)")
        ax.grid(axis="x", which="both", color="0.9", lw=0.5)
    axes[0][0].plot([], [], color="0.6", lw=1, ls=":", marker="|",
                    label="from the sweep's next cheaper run from noise (it does not count)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def recheck_verdicts(found: dict, fresh: dict) -> list[dict]:
    """Whether each verdict of ``found`` holds on ``fresh`` (the same analysis on seeds not used for the choice).

    Per verdict: ``"holds"`` (the same outcome), ``"weakened"`` (a difference found, "no measurable difference"
    on the fresh seeds) or ``"contradicted"`` (anything else), with both sentences.
    """
    rows = []
    for name, e in found["per_integrator"].items():
        f2 = fresh["per_integrator"].get(name)
        for key in ("dlg_vs_noise", "dlg_vs_control"):
            old, new = e[key], (f2[key] if f2 else None)
            if new is not None and new["outcome"] == old["outcome"]:
                status = "holds"
            elif new is not None and new["outcome"] == "no_difference" and old["outcome"] in ("a_cheaper",
                                                                                            "b_cheaper"):
                status = "weakened"
            else:
                status = "contradicted"
            rows.append({"integrator": name, "comparison": key, "status": status, "found": old["text"],
                         "fresh": new["text"] if new else "not measured"})
    return rows
