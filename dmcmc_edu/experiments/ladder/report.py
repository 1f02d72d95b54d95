"""What a finished ladder sweep says: the CSV table, the key findings (JSON and Markdown) and the Fig. 3 plot.

Everything here reads the result dict of :func:`~dmcmc_edu.experiments.ladder.run_ladder`
(``{"meta": ..., "points": [...]}``) and runs no sampler.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from dmcmc_edu.evaluation.metrics import FLOOR_METRICS
from dmcmc_edu.experiments.ladder.plan import KINDS, point_label
from dmcmc_edu.plotting import dodge_markers, note_outside, save_figure
from dmcmc_edu.runs import atomic_write

__all__ = ["write_csv", "analyse", "findings_markdown", "plot_ladder", "plot_w2_vs_nfe", "plot_modes_vs_nfe",
           "plot_metrics_from_noise", "plot_reach", "reach_text", "BUDGETS", "LABEL_KEY"]

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
    lines = ["| integrator | from noise | schedule ctrl | restart ctrl | DLG (best) | speed-up of DLG vs noise "
             "(noise NFE / DLG NFE; > 1: DLG cheaper) | speed-up of DLG vs the best control (control NFE / DLG "
             "NFE) | paper DLG (full NFE; failing) |", "|---|---|---|---|---|---|---|---|"]
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


def reach_text(f: dict) -> str:
    """The key numbers of :func:`analyse` as a plain-text table (for notebooks and terminals).

    Per integrator: the NFE per independent sample (full ledger) at which each kind first reaches the integrator's
    reference quality ("-": never within the sweep) and DLG's speed-ups, written as ratios "noise NFE / DLG NFE"
    and "best control NFE / DLG NFE": above 1 DLG is cheaper, below 1 it costs more (0.50x = twice the NFE).
    """
    head = (f"{'':<18}{'NFE per independent sample to reach the reference':^42}"
            f"{'speed-up of DLG':^30}\n"
            f"{'integrator':<18}{'noise':>9}{'schedule':>11}{'restart':>10}{'DLG':>8}    "
            f"{'noise NFE/DLG NFE':>18}{'ctrl NFE/DLG NFE':>18}")
    lines = [head]
    for name, e in f["per_integrator"].items():
        r = e["reach"]
        nfe = {g: f"{r[g]['nfe_per_independent']:.0f}" if r[g] else "-"
               for g in ("noise", "schedule", "restart", "dlg")}
        cells = f"{nfe['noise']:>9}{nfe['schedule']:>11}{nfe['restart']:>10}{nfe['dlg']:>8}"
        sp = [f"{v:.2f}x" if v else "-" for v in (e["speedup_dlg_vs_noise"], e["speedup_dlg_vs_best_control"])]
        lines.append(f"{name:<18}{cells}    {sp[0]:>18}{sp[1]:>18}")
    return "\n".join(lines)


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


# ----------------------------------------------------------------------------- the figures
#
# Every figure has one x quantity, NFE per independent sample by the full ledger (for the samplers with
# independent outputs -- from sigma_max and the two controls -- the same as NFE per output), log axes with plain
# tick labels, one legend without duplicates, and a note when points fall above the axes.

LABEL_KEY = {
    "N st": "the integrator's steps (KAR1/KAR2: 2N - 1 NFE; the others N NFE, plus 1 for a final Tweedie step)",
    "rtol=R": "RK45's relative (and absolute) tolerance; its NFE is what the solver used",
    "+tweedie": "the paper's extra Tweedie step after the last Euler step to sigma = 0",
    "DDIM->S": "control (i): one probability-flow Euler (DDIM) step from sigma_max to sigma = S, then the integrator",
    "KAR1 C st, restart S": "control (ii): a KAR1 sample with C steps from sigma_max, noised up to sigma = S, "
                            "then the integrator from S",
    "exact / argmax / cls-sample": "DLG's sigma-update: the exact posterior p(sigma | x), the noise-level "
                                   "classifier's argmax (the paper), or a draw from the classifier",
    "ula / mala": "DLG's x-update: unadjusted Langevin (the paper) or Metropolis-adjusted Langevin",
    "eta=E": "Langevin step size (absolute part)",
    "eta_rel=R": "sigma-adapted part of the step: the step is eta + eta_rel * sigma^2",
    "skip=K": "n_skip: Gibbs steps between two outputs of a chain",
    "+S/decade": "steps_per_decade: a state picked at sigma gets max(N, ceil(S log10(sigma / sigma_min))) steps",
    "T=M": "outputs per chain before the chain is refreshed from noise (T=20: the paper's persistent chains)",
    "tilt=A": "prior_tilt: the prior over the noise levels tilted towards small sigma, p(sigma_i) ~ sigma_i^-A",
    "init=N": "KAR2 steps of the chains' initialisation (default 19 = 37 NFE, as in the paper)",
}
"""The tokens of :func:`~dmcmc_edu.experiments.ladder.point_label`'s labels, decoded."""

_STYLE = {"noise": dict(color="k", marker="o", label="from sigma_max (the integrator alone)"),
          "schedule": dict(color="C1", marker="s", label="control (i), schedule: DDIM jump, then the integrator"),
          "restart": dict(color="C2", marker="^", label="control (ii), restart: KAR1 sample re-noised, integrator"),
          "dlg": dict(color="C0", marker="D", label="DLG, best setting at or below each NFE")}
_X_LABEL = "NFE per independent sample (full ledger)"


def _envelope(pts, key, metric):
    """Lower envelope of (NFE, metric): points that beat every point of smaller NFE."""
    best, out = float("inf"), []
    for p in sorted(pts, key=lambda p: p[key]):
        v = p["metrics"][metric]
        if v < best:
            best = v
            out.append((p[key], v))
    return out


def _plain_log_ticks(ax, y_subs=(1.0, 2.0, 5.0)):
    """Log axes labelled with plain numbers: x at the decades, y at ``y_subs`` per decade (None: decades only)."""
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if y_subs is not None:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=y_subs))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def _x_limits(pts):
    xs = [p["nfe_per_independent"] for p in pts]
    return 0.7 * min(xs), 1.4 * max(xs)


def _w2_panel(ax, mine, name, floors, top):
    """W2 against NFE per independent sample of one integrator: from noise, the controls, DLG, the paper's DLG."""
    shown = []
    for kind in KINDS:
        ps = [p for p in mine if p["kind"] == kind and _untweaked(p)]
        if not ps:
            continue
        st = _STYLE[kind]
        if kind == "noise":
            xy = sorted((p["nfe_per_independent"], p["metrics"]["w2"]) for p in ps)
        else:
            xy = _envelope(ps, "nfe_per_independent", "w2")
            ax.scatter([p["nfe_per_independent"] for p in ps], [p["metrics"]["w2"] for p in ps], s=6,
                       color=st["color"], alpha=0.25)
        ax.plot(*zip(*xy), marker=st["marker"], ms=3, color=st["color"], label=st["label"])
        shown += [p["metrics"]["w2"] for p in ps]
    paper = [p for p in mine if p["kind"] == "dlg" and "paper" in p.get("tags", [])]
    if paper:
        ax.scatter([p["nfe_per_independent"] for p in paper], [p["metrics"]["w2"] for p in paper], marker="*",
                   s=60, color="C3", zorder=5, label="DLG with the paper-like settings")
    tw = [p for p in mine if not _untweaked(p)]
    if tw:
        ax.scatter([p["nfe_per_independent"] for p in tw], [p["metrics"]["w2"] for p in tw], marker="x",
                   color="C4", s=20, label="from sigma_max + the paper's extra Tweedie step")
        shown += [p["metrics"]["w2"] for p in tw]
    ax.scatter([], [], s=6, color="0.5", alpha=0.5, label="faint dots: every setting of a control or DLG")
    ax.axhline(floors["w2"]["threshold"], color="0.4", ls=":", lw=1.0, label="noise floor (what exact samples score)")
    ax.set(xscale="log", yscale="log", title=name, ylim=(None, top))
    note_outside(ax, shown, top)


def _summary_panel(ax, pts, metric, floors):
    """The best value of ``metric`` per NFE over all integrators, one line per kind, and the paper's DLG."""
    value_key = "mode_tv" if metric == "mode_tv" else "spread_dev"
    for kind in KINDS:
        ps = [dict(p, metrics=dict(p["metrics"], value=p["metrics"][value_key]))
              for p in pts if p["kind"] == kind and _untweaked(p)]
        if ps:
            xy = _envelope(ps, "nfe_per_independent", "value")
            ax.plot(*zip(*xy), marker=_STYLE[kind]["marker"], ms=3, color=_STYLE[kind]["color"],
                    label=_STYLE[kind]["label"])
    paper = [p for p in pts if p["kind"] == "dlg" and "paper" in p.get("tags", [])]
    if paper:
        ax.scatter([p["nfe_per_independent"] for p in paper], [p["metrics"][value_key] for p in paper],
                   marker="*", s=50, color="C3", zorder=5, label="DLG with the paper-like settings")
    ax.axhline(floors[metric]["threshold"], color="0.4", ls=":", lw=1.0, label="noise floor (what exact samples score)")
    ax.set(xscale="log", yscale="log", xlabel=_X_LABEL)


def _one_legend(fig, axes, ncol=3, y=0.0):
    """One legend for the whole figure: every label once, in the order first drawn."""
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, y))


def _ladder_points(doc):
    """The points with metrics, and the integrators among them: the paper's six in their order, then any other."""
    pts = [p for p in doc["points"] if p.get("metrics")]
    others = list(dict.fromkeys(p["integrator"] for p in pts if p["integrator"] not in _ORDER))
    return pts, [nm for nm in _ORDER if any(p["integrator"] == nm for p in pts)] + others


def _panel_rows(doc) -> int:
    """Rows of three W2 panels needed for the integrators of ``doc`` (at least two, the paper's layout)."""
    return max(2, -(-len(_ladder_points(doc)[1]) // 3))


def _draw_w2(doc, axes):
    floors = doc["meta"]["floors"]
    pts, names = _ladder_points(doc)
    top = 30 * floors["w2"]["threshold"]
    for ax, name in zip(axes, names):
        _w2_panel(ax, [p for p in pts if p["integrator"] == name], name, floors, top)
        ax.set_xlim(*_x_limits(pts))
        _plain_log_ticks(ax)
    for ax in axes[len(names):]:
        ax.set_visible(False)


def _draw_modes(doc, axes):
    floors = doc["meta"]["floors"]
    pts, _ = _ladder_points(doc)
    for ax, metric, title in zip(axes, ("mode_tv", "spread"), ("mode-weight TV", "|spread - 1|")):
        _summary_panel(ax, pts, metric, floors)
        ax.set_xlim(*_x_limits(pts))
        ax.set_title(f"{title}: best over the integrators", fontsize=10)
        ax.set_ylabel(title)
        _plain_log_ticks(ax, y_subs=(1.0, 2.0, 5.0) if metric == "mode_tv" else None)


def _title(doc, what):
    m = doc["meta"]
    return f"{m['stem']} (d = {m['d']}, n = {m['sweep']['n']} outputs per point): {what}"


def plot_w2_vs_nfe(doc: dict):
    """W2 to exact samples against NFE per independent sample, one panel per integrator (the paper's Fig. 3).

    Black: the integrator from sigma_max; orange/green: the best control setting at or below each NFE; blue: the
    best DLG setting at or below each NFE (faint dots: every setting); red stars: the paper-like DLG settings.
    Returns the figure.
    """
    rows = _panel_rows(doc)
    fig, axes = plt.subplots(rows, 3, figsize=(13, 3.8 * rows), sharex=True, sharey=True)
    _draw_w2(doc, list(axes.flat))
    for c in range(3):  # the x label under the lowest visible panel of each column
        bottom = next(axes[r, c] for r in range(rows - 1, -1, -1) if axes[r, c].get_visible() or r == 0)
        bottom.set_xlabel(_X_LABEL)
        bottom.tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("W2 to exact samples")
    _one_legend(fig, list(axes.flat))
    fig.suptitle(_title(doc, "W2 against NFE"), fontsize=11)
    fig.tight_layout(rect=(0, 0.09 * 2 / rows, 1, 1))
    return fig


#: the four metric panels of :func:`plot_metrics_from_noise`: (metric, what its axis shows)
NOISE_PANELS = (("w2", "W2"), ("mode_tv", "mode-weight TV"), ("spread", "|spread - 1|"),
                ("on_manifold", "|on-manifold fraction - 0.99|"))


def _shown_value(p: dict, metric: str) -> float:
    """The value a panel draws: the metric itself, or its distance from the population value."""
    return p["metrics"][metric] if FLOOR_METRICS[metric] == "value" else p["metrics"][metric + "_dev"]


def plot_metrics_from_noise(doc: dict, floors: dict, integrators=None, panels=NOISE_PANELS):
    """Each metric against the counted NFE, one line per integrator from sigma_max (no extra Tweedie step).

    ``doc``: a ladder sweep (bench/results/toy/<target>.json); ``floors``: its ``{"metric": {"threshold": ...}}``
    (dotted).  Both axes are logarithmic, so a value of 0 (exactly the population value) has no place on
    them: such points are drawn as hollow triangles on the bottom edge, and each panel says how many there are.
    Markers that would hide each other (within a few points on the page) are spread sideways; the values
    are unchanged.  Returns the figure.
    """
    noise = [p for p in doc["points"]
             if p["kind"] == "noise" and "extra_tweedie" not in p.get("tags", []) and p.get("metrics")]
    names = list(integrators or [n for n in _ORDER if any(p["integrator"] == n for p in noise)])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.25 * len(panels), 4.2), squeeze=False)
    axes = list(axes[0])
    for ax, (metric, title) in zip(axes, panels):
        values = []
        for i, name in enumerate(names):
            pts = sorted((p["nfe"], _shown_value(p, metric)) for p in noise if p["integrator"] == name)
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, [v if v > 0 else float("nan") for v in ys], "o-", ms=3, color=f"C{i}", label=name)
            zero_x = [x for x, v in pts if v <= 0]
            if zero_x:  # on the bottom edge: x in data, y in axes coordinates
                ax.plot(zero_x, [0.0] * len(zero_x), "v", ms=6, mfc="none", mew=1.3, color=f"C{i}",
                        transform=ax.get_xaxis_transform(), clip_on=False, zorder=4)
            values += list(ys)
        ax.axhline(floors[metric]["threshold"], color="k", ls=":", lw=1, label="noise-floor threshold")
        ax.set(xscale="log", yscale="log", xlabel="NFE per sample (counted)", ylabel=title, title=title)
        note_outside(ax, values, zeros=True)
    axes[0].plot([], [], "v", ms=6, mfc="none", mew=1.3, color="0.3", label="value 0, drawn on the bottom edge")
    _one_legend(fig, axes, ncol=len(names) + 2)  # below the panels: it hides no marker
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    for ax in axes:
        dodge_markers(ax)
    return fig


def plot_modes_vs_nfe(doc: dict):
    """Mode-weight TV and |spread - 1| against NFE per independent sample: the best of each kind of sampler.

    These are what W2 (and FID) barely see: chains that never leave their mode give a good W2 per sample but the
    mode weights of their initialisation.  Returns the figure.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharex=True)
    _draw_modes(doc, list(axes))
    _one_legend(fig, list(axes))
    fig.suptitle(_title(doc, "the metrics W2 barely sees"), fontsize=11)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig


def plot_ladder(doc: dict, path=None):
    """The ladder's figure: W2 vs NFE per integrator (with and without DLG, the controls), mode TV and spread.

    One x quantity throughout (NFE per independent sample by the full ledger) and one legend.  ``doc`` is a
    result dict of :func:`~dmcmc_edu.experiments.ladder.run_ladder`; with ``path`` the figure is saved there and
    closed.  Returns the figure.  Notebooks draw the two halves separately with :func:`plot_w2_vs_nfe` and
    :func:`plot_modes_vs_nfe`.
    """
    rows = _panel_rows(doc)
    fig = plt.figure(figsize=(13, 3.8 * rows + 3.9))
    grid = fig.add_gridspec(rows + 1, 6)
    w2_axes = [fig.add_subplot(grid[r, 2 * c:2 * c + 2]) for r in range(rows) for c in range(3)]
    mode_axes = [fig.add_subplot(grid[rows, 0:3]), fig.add_subplot(grid[rows, 3:6])]
    _draw_w2(doc, w2_axes)
    for i, ax in enumerate(w2_axes):
        below = w2_axes[i + 3] if i + 3 < len(w2_axes) else None
        ax.set_ylabel("W2 to exact samples" if i % 3 == 0 else "")
        ax.set_xlabel(_X_LABEL if below is None or not below.get_visible() else "")
    _draw_modes(doc, mode_axes)
    _one_legend(fig, w2_axes + mode_axes)
    fig.suptitle(_title(doc, "quality against NFE"), fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    if path is not None:
        save_figure(fig, path)
        plt.close(fig)
    return fig


_REACH_KINDS = ("noise", "schedule", "restart", "dlg")


def plot_reach(findings: dict):
    """NFE per independent sample at which each kind of sampler first reaches the integrator's reference quality.

    ``findings`` maps a title (e.g. the target) to the result of :func:`analyse`; one panel each, sharing the
    log NFE axis.  A hollow marker in the grey band on the right: that sampler never reached the reference within
    the sweep.  Returns the figure.
    """
    fig, axes = plt.subplots(1, len(findings), figsize=(6.2 * len(findings), 4.4), sharex=True, squeeze=False)
    reached = [e["reach"][k]["nfe_per_independent"] for f in findings.values()
               for e in f["per_integrator"].values() for k in _REACH_KINDS if e["reach"][k]]
    lo, never = 0.6 * min(reached), 4.0 * max(reached)
    for ax, (title, f) in zip(axes[0], findings.items()):
        names = list(f["per_integrator"])
        for j, kind in enumerate(_REACH_KINDS):
            st, dy = _STYLE[kind], (j - 1.5) * 0.2
            ax.scatter([], [], marker=st["marker"], s=30, color=st["color"],
                       label=st["label"].replace("best setting at or below each NFE", "its best setting"))
            for i, name in enumerate(names):
                r = f["per_integrator"][name]["reach"][kind]
                x, face = (r["nfe_per_independent"], st["color"]) if r else (never * 1.15 ** (j - 1.5), "none")
                ax.scatter([x], [i + dy], marker=st["marker"], s=30, facecolor=face, edgecolor=st["color"], zorder=3)
        ax.scatter([], [], marker="o", s=30, facecolor="none", edgecolor="0.4",
                   label="hollow, in the grey band: never reached within the sweep")
        ax.axvspan(never / 1.6, never * 1.6, color="0.92", zorder=0)
        ax.text(never, -0.55, "not reached", ha="center", va="center", fontsize=8, color="0.3")
        ax.set(xscale="log", xlim=(lo, never * 1.6), ylim=(len(names) - 0.5, -0.8), title=title)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("NFE per independent sample to reach the reference (full ledger)")
        ax.grid(axis="x", which="major", color="0.85", lw=0.6)
        _plain_log_ticks(ax, y_subs=None)
    _one_legend(fig, list(axes[0]), ncol=2)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig
