"""What a finished ladder sweep says: the CSV table, the key findings (JSON and Markdown) and the Fig. 3 plot.

Everything here reads the result dict of :func:`~dmcmc_edu.experiments.ladder.run_ladder`
(``{"meta": ..., "points": [...]}``) and runs no sampler.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.pyplot as plt

from dmcmc_edu.evaluation.metrics import FLOOR_METRICS
from dmcmc_edu.experiments.ladder.plan import KINDS, point_label
from dmcmc_edu.plotting import nfe_axes, save_figure
from dmcmc_edu.runs import atomic_write

__all__ = ["write_csv", "analyse", "findings_markdown", "plot_ladder", "BUDGETS"]

#: the six integrators of the paper, in the order of its tables
_ORDER = ("kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion", "euler_maruyama")

_MKEYS = ["w2", "mmd2", "mode_tv", "spread", "on_manifold", "nll_mean", "nll_median"]
_CKEYS = ["ess_ratio", "ess_component_ratio", "ess_position_ratio", "ess_sigma_ratio", "acf1_component",
          "acf1_sigma", "mode_switch_rate", "decorrelation", "chosen_sigma_median"]
_DEV_KEYS = [k for k, how in FLOOR_METRICS.items() if how == "abs_dev"]


def _csv_row(p: dict) -> list:
    m, c = p.get("metrics") or {}, p.get("chain") or {}
    row = [p["id"], p["kind"], p["integrator"], point_label(p["settings"]), p["seed"], p["n"],
           p.get("nfe"), p.get("nfe_paper"), p.get("nfe_per_independent")]
    row += [m.get(k) for k in _MKEYS]
    row += [m.get(f"{k}_dev") for k in _DEV_KEYS]
    row += [(p.get("within_floor") or {}).get("all")]
    row += [c.get(k) for k in _CKEYS] + [p.get("seconds"), p.get("error"), json.dumps(p["settings"], sort_keys=True)]
    return row


def write_csv(points: list[dict], path) -> None:
    """One row per point: kind, integrator, label, NFE (full, paper, per independent), metrics, floors, settings."""
    head = (["id", "kind", "integrator", "label", "seed", "n", "nfe", "nfe_paper", "nfe_per_independent"] + _MKEYS
            + [f"{k}_dev" for k in _DEV_KEYS] + ["all_within_floor"] + _CKEYS + ["seconds", "error", "settings"])

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            for p in points:
                w.writerow(_csv_row(p))

    atomic_write(Path(path), write)


# ----------------------------------------------------------------------------- findings


def _value(p, metric):
    m = p["metrics"]
    v = m[metric] if FLOOR_METRICS[metric] == "value" else m.get(f"{metric}_dev")
    return float("nan") if v is None else v


def _passes(p, floors, targets=None):
    for k in FLOOR_METRICS:
        thr = targets[k] if targets else floors[k]["threshold"]
        v = _value(p, k)
        if not (v == v and v <= thr):
            return False
    return True


def _failing(p, floors):
    """The metrics of point ``p`` that lie above their noise-floor thresholds."""
    return [k for k in FLOOR_METRICS if not (_value(p, k) <= floors[k]["threshold"])]


def _first(points, key, ok):
    good = [p for p in points if ok(p)]
    return min(good, key=lambda p: p[key]) if good else None


def _brief(p):
    if p is None:
        return None
    return {"nfe_per_independent": p.get("nfe_per_independent"), "nfe": p.get("nfe"), "nfe_paper": p.get("nfe_paper"),
            "label": point_label(p["settings"]), "id": p["id"], "kind": p["kind"], "ess_ratio": p.get("ess_ratio")}


def _untweaked(p) -> bool:
    """Not one of the runs with the paper's extra Tweedie step (they are compared separately)."""
    return "extra_tweedie" not in p.get("tags", [])


BUDGETS = (5, 10, 20, 50, 100, 200, 500, 1000)
"""NFE budgets (per independent sample) at which :func:`analyse` reports the best point of each kind."""


def _ratio(a, b):
    return a["nfe_per_independent"] / b["nfe_per_independent"] if a and b else None


def _extra_tweedie_pairs(mine, noise, floors) -> list[dict]:
    """Each run with the extra Tweedie step beside the run of the same steps without it."""
    pairs = []
    for p in mine:
        if _untweaked(p):
            continue
        twin = [q for q in noise if q["settings"]["steps"] == p["settings"]["steps"]]
        if twin:
            pairs.append({"steps": p["settings"]["steps"], "nfe": p["nfe"], "w2": p["metrics"]["w2"],
                          "w2_without": twin[0]["metrics"]["w2"], "spread": p["metrics"]["spread"],
                          "spread_without": twin[0]["metrics"]["spread"],
                          "failing": _failing(p, floors), "failing_without": _failing(twin[0], floors)})
    return pairs


def _integrator_findings(mine: list[dict], floors: dict) -> dict | None:
    """The findings of one integrator's points (None if it has no run from noise)."""
    noise = [p for p in mine if p["kind"] == "noise" and _untweaked(p)]
    if not noise:
        return None
    ref = max(noise, key=lambda p: p["nfe"])
    targets = {k: max(floors[k]["threshold"], _value(ref, k)) for k in FLOOR_METRICS}
    reach = lambda p: _passes(p, floors, targets)  # noqa: E731
    floor_ok = lambda p: _passes(p, floors)  # noqa: E731
    groups = {"noise": noise, **{k: [p for p in mine if p["kind"] == k] for k in ("schedule", "restart", "dlg")}}
    groups["control"] = groups["schedule"] + groups["restart"]
    entry = {"reference": {"nfe": ref["nfe"], "label": point_label(ref["settings"]),
                           "within_floors": floor_ok(ref), "failing": _failing(ref, floors)},
             "targets": targets, "reach": {}, "floors_reach": {}}
    for g, ps in groups.items():
        entry["reach"][g] = _brief(_first(ps, "nfe_per_independent", reach))
        entry["floors_reach"][g] = _brief(_first(ps, "nfe_per_independent", floor_ok))
    r = entry["reach"]
    entry["speedup_dlg_vs_noise"] = _ratio(r["noise"], r["dlg"])
    entry["speedup_dlg_vs_best_control"] = _ratio(r["control"], r["dlg"])
    entry["speedup_control_vs_noise"] = _ratio(r["noise"], r["control"])
    entry["paper_settings"] = [
        dict(_brief(p), failing=_failing(p, floors), reaches_reference=reach(p),
             mode_tv=p["metrics"]["mode_tv"], w2=p["metrics"]["w2"])
        for p in groups["dlg"] if "paper" in p.get("tags", []) and p["settings"].get("outputs_per_chain") == 20
        and p["settings"]["sigma_update"] == "classifier-argmax" and not p["settings"].get("eta_rel")]
    if any(not _untweaked(p) for p in mine):
        entry["extra_tweedie"] = _extra_tweedie_pairs(mine, noise, floors)
    return entry


def _best_at_budget(pts: list[dict], floors: dict) -> dict:
    """Per NFE budget, the best point of each kind: fewest failing metrics first, then the lowest W2."""
    def rank(p):
        return (len(_failing(p, floors)), p["metrics"]["w2"])

    budgets = {}
    for b in BUDGETS:
        row = {}
        for kind in KINDS:
            cands = [p for p in pts if p["kind"] == kind and p["nfe_per_independent"] <= b and _untweaked(p)]
            if cands:
                best = min(cands, key=rank)
                row[kind] = dict(_brief(best), failing=_failing(best, floors), w2=best["metrics"]["w2"],
                                 mode_tv=best["metrics"]["mode_tv"])
        budgets[str(b)] = row
    return budgets


def analyse(doc: dict) -> dict:
    """The key findings of a sweep (see the README in bench/results/toy).

    Per integrator: the reference quality is that of its from-noise run at the largest NFE; a point *reaches*
    it when every metric is within max(noise floor, reference value).  Reported: the smallest NFE per
    independent sample at which vanilla sampling, each control and DLG reach it; the same with the pure noise
    floors; the paper's DLG settings (NFE, failing metrics).  Per NFE budget: the best point of each kind
    (all metrics inside the floors first, then the fewest failing metrics, then the lowest W2).
    """
    floors = doc["meta"]["floors"]
    pts = [p for p in doc["points"] if p.get("metrics")]
    names = sorted({p["integrator"] for p in pts}, key=lambda nm: _ORDER.index(nm) if nm in _ORDER else 99)
    per = {}
    for name in names:
        entry = _integrator_findings([p for p in pts if p["integrator"] == name], floors)
        if entry is not None:
            per[name] = entry
    errors = [{"label": point_label(p["settings"]), "error": p["error"]} for p in doc["points"] if p.get("error")]
    return {"per_integrator": per, "best_at_budget": _best_at_budget(pts, floors), "errors": errors,
            "floors": {k: floors[k]["threshold"] for k in FLOOR_METRICS}}


def _fmt(v, nd=1):
    return "—" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _reach_cell(e: dict, g: str) -> str:
    r, fr = e["reach"], e["floors_reach"]
    a = _fmt(r[g]["nfe_per_independent"]) if r[g] else "—"
    b = _fmt(fr[g]["nfe_per_independent"]) if fr[g] else "—"
    return f"{a} [{b}]"


def _reach_table(f: dict) -> list[str]:
    lines = ["| integrator | from noise | schedule ctrl | restart ctrl | DLG (best) | DLG vs noise | "
             "DLG vs best ctrl | paper DLG (full NFE; failing) |", "|---|---|---|---|---|---|---|---|"]
    for name, e in f["per_integrator"].items():
        paper = "; ".join(f"{p['nfe']:.0f}: {','.join(p['failing']) or 'none'}" for p in e["paper_settings"])
        cells = " | ".join(_reach_cell(e, g) for g in ("noise", "schedule", "restart", "dlg"))
        lines.append(f"| {name} | {cells} | {_fmt(e['speedup_dlg_vs_noise'], 2)}x | "
                     f"{_fmt(e['speedup_dlg_vs_best_control'], 2)}x | {paper or '—'} |")
    lines += ["", "Settings that first reach the reference:", ""]
    for name, e in f["per_integrator"].items():
        for g in ("noise", "control", "dlg"):
            if e["reach"][g]:
                lines.append(f"- {name}, {g}: {e['reach'][g]['label']} (NFE/output {e['reach'][g]['nfe']:.1f}, "
                             f"ESS ratio {e['reach'][g]['ess_ratio']:.2f})")
    return lines


def _budget_table(f: dict) -> list[str]:
    lines = ["| budget | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    for b, row in f["best_at_budget"].items():
        cells = []
        for kind in KINDS:
            p = row.get(kind)
            cells.append("—" if p is None else
                         f"{p['label']} ({p['nfe_per_independent']:.0f}) [{','.join(p['failing']) or 'all ok'}]")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return lines


def findings_markdown(f: dict, meta: dict) -> str:
    """The findings of :func:`analyse` as Markdown tables (``meta``: the result file's meta block)."""
    lines = [f"# Ladder findings: {meta['stem']}", "",
             f"Target `{meta['sweep']['target']}` (d = {meta['d']}, K = {meta['K']}), n = {meta['sweep']['n']} "
             f"outputs per point, sigma in [{meta['sigma_min']:.3g}, {meta['sigma_max']:.3g}]; command: "
             f"`{meta.get('command')}`.", "",
             "NFE per independent sample (full ledger / ESS ratio) at which each sampler first reaches the "
             "integrator's own best quality from noise (every metric within max(noise floor, value at the "
             "largest NFE from noise)); in brackets: every metric inside the noise floors.", ""]
    lines += _reach_table(f)
    lines += ["", "Best point of each kind within an NFE budget (per independent sample); failing metrics in "
              "brackets:", ""]
    lines += _budget_table(f)
    if f["errors"]:
        lines += ["", f"{len(f['errors'])} point(s) failed and have no score: "
                  + "; ".join(f"{e['label']} ({e['error']})" for e in f["errors"][:10])]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the figure


def _envelope(pts, key, metric):
    """Lower envelope of (NFE, metric): points that beat every point of smaller NFE."""
    best, out = float("inf"), []
    for p in sorted(pts, key=lambda p: p[key]):
        v = p["metrics"][metric]
        if v < best:
            best = v
            out.append((p[key], v))
    return out


_STYLE = {"noise": dict(color="k", marker="o", label="from sigma_max"),
          "schedule": dict(color="C1", marker="s", label="control: schedule"),
          "restart": dict(color="C2", marker="^", label="control: restart"),
          "dlg": dict(color="C0", marker="D", label="DLG (full ledger, per output)")}


def _plot_dlg_extras(ax, ps):
    """The DLG envelope per independent sample and the paper's settings (full ledger and paper's count)."""
    st = _STYLE["dlg"]
    xy = _envelope(ps, "nfe_per_independent", "w2")
    ax.plot(*zip(*xy), ls="--", color=st["color"], label="DLG per independent sample")
    paper = [p for p in ps if "paper" in p.get("tags", [])]
    if paper:
        ax.scatter([p["nfe"] for p in paper], [p["metrics"]["w2"] for p in paper], marker="*", s=60,
                   color="C3", zorder=5, label="DLG, paper settings (full)")
        ax.scatter([p["nfe_paper"] for p in paper], [p["metrics"]["w2"] for p in paper], marker="*",
                   s=60, facecolor="none", edgecolor="C3", zorder=5, label="... paper accounting")


def _integrator_panel(ax, mine, name, floors):
    """W2 against NFE of one integrator: from noise, the controls' and DLG's envelopes, the extra Tweedie step."""
    for kind in KINDS:
        ps = [p for p in mine if p["kind"] == kind and _untweaked(p)]
        if not ps:
            continue
        st = _STYLE[kind]
        if kind == "noise":
            xy = sorted((p["nfe"], p["metrics"]["w2"]) for p in ps)
        else:
            xy = _envelope(ps, "nfe", "w2")
            ax.scatter([p["nfe"] for p in ps], [p["metrics"]["w2"] for p in ps], s=6, color=st["color"], alpha=0.25)
        ax.plot(*zip(*xy), marker=st["marker"], ms=3, color=st["color"], label=st["label"])
        if kind == "dlg":
            _plot_dlg_extras(ax, ps)
    tw = [p for p in mine if not _untweaked(p)]
    if tw:
        ax.scatter([p["nfe"] for p in tw], [p["metrics"]["w2"] for p in tw], marker="x", color="C4", s=20,
                   label="+ extra Tweedie step")
    nfe_axes(ax, floors["w2"]["threshold"], floor_label="W2 noise floor")
    ax.set_title(name)
    ax.set_xlabel("NFE")
    ax.set_ylabel("W2 to exact samples")


def _summary_panel(ax, pts, metric, title, floors):
    """The best value of ``metric`` per NFE over all integrators, one line per kind (DLG per independent sample)."""
    value_key = "mode_tv" if metric == "mode_tv" else "spread_dev"
    for kind in KINDS:
        ps = [p for p in pts if p["kind"] == kind and _untweaked(p)]
        if not ps:
            continue
        key = "nfe" if kind != "dlg" else "nfe_per_independent"
        vals = [dict(p, metrics=dict(p["metrics"], spread=p["metrics"]["spread_dev"]))
                for p in ps] if metric == "spread" else ps
        xy = _envelope(vals, key, metric)
        lab = _STYLE[kind]["label"] if kind != "dlg" else "DLG (per independent sample)"
        ax.plot(*zip(*xy), marker=_STYLE[kind]["marker"], ms=3, color=_STYLE[kind]["color"], label=lab)
        if kind == "dlg":
            paper = [p for p in ps if "paper" in p.get("tags", [])]
            ax.scatter([p["nfe_per_independent"] for p in paper], [p["metrics"][value_key] for p in paper],
                       marker="*", s=50, color="C3", zorder=5, label="DLG, paper settings")
    nfe_axes(ax, floors[metric]["threshold"])
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("NFE per independent sample")


def plot_ladder(doc: dict, path=None):
    """The paper's Fig. 3 layout: W2 vs NFE per integrator (with/without DLG, controls), plus mode TV and spread.

    ``doc`` is a result dict of :func:`~dmcmc_edu.experiments.ladder.run_ladder`; with ``path`` the figure is
    saved there and closed.  Returns the figure.
    """
    floors = doc["meta"]["floors"]
    pts = [p for p in doc["points"] if p.get("metrics")]
    names = [nm for nm in _ORDER if any(p["integrator"] == nm for p in pts)]
    fig, axes = plt.subplots(2, 4, figsize=(17, 8))
    for ax, name in zip(axes.flat, names):
        _integrator_panel(ax, [p for p in pts if p["integrator"] == name], name, floors)
    _summary_panel(axes.flat[6], pts, "mode_tv", "mode-weight TV (best per NFE, all integrators)", floors)
    _summary_panel(axes.flat[7], pts, "spread", "|spread - 1| (best per NFE, all integrators)", floors)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=5, fontsize=8, frameon=False)
    m = doc["meta"]
    fig.suptitle(f"{m['stem']}: d = {m['d']}, n = {m['sweep']['n']} outputs per point; NFE by the full ledger "
                 "(DLG envelopes: best W2 at or below each NFE)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    if path is not None:
        save_figure(fig, path)
        plt.close(fig)
    return fig
