"""The peers comparison over seeds: at each NFE budget, which sampler family gets inside every noise floor.

``bench/peers.py`` runs, for one seed, k-diffusion's samplers and the paper's six integrators from
``sigma_max`` at NFE budgets (5, 10, 20, 50), and reads the best DLG point within each budget from the ladder
sweep of that seed.  One seed decides nothing: :func:`analyse_peers` reads the peers files of several seeds
together with the ladder replicates of the same seeds (``bench/ladder_seeds.py``) and, per budget:

1. every *setting* measured on every seed: a peer sampler at the budget (its step count is fixed by the budget;
   RK45's tolerance is the loosest that fits, so it can differ by seed), or one DLG point of the ladder's plan
   (the same id in every replicate) whose median NFE -- per output, or per independent sample -- is within
   the budget;
2. per seed, whether the setting's sample set has every metric inside its noise floor (the exact floors of
   ``metrics.exact_floors``, one file for all seeds), how many metrics are outside, and its W2;
3. per family (k-diffusion, ours from ``sigma_max``, DLG per output, DLG per independent sample) the setting
   with the most seeds inside every floor (then the fewest metrics outside, median over seeds; then the lowest
   median W2);
4. the verdict DLG vs the best non-DLG setting, from :func:`~dmcmc_edu.evaluation.uncertainty.verdict`: a
   setting *counts* when at least 7 of 8 seeds are inside every floor; when both count, their W2 is compared,
   paired by seed.

Choosing the best of many DLG points on the same seeds that score it is a selection that flatters DLG a little
(the ladder's ``--recheck-seeds`` measures that for the ladder's own choices); the peers' settings are not
chosen (one per sampler and budget).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from dmcmc_edu.evaluation.metrics import FLOOR_METRICS
from dmcmc_edu.evaluation.uncertainty import MIN_REACH_FRACTION, interval, verdict
from dmcmc_edu.experiments.ladder.plan import point_label
from dmcmc_edu.experiments.ladder.report import _failing

__all__ = ["DLG_FAMILIES", "analyse_peers", "peers_seeds_markdown", "peers_seeds_text", "plot_peers_seeds"]

DLG_FAMILIES = {"DLG (per output)": "nfe", "DLG (per independent sample)": "nfe_per_independent"}
"""DLG's two families: the ladder's points whose median NFE per output, or per independent sample, fits a budget."""

_MISSING = {"inside": False, "failing": len(FLOOR_METRICS), "w2": float("nan"), "nfe": float("nan"),
            "nfe_per_independent": float("nan")}


def _score(metrics: dict | None, floors: dict) -> tuple[bool, int, float]:
    if not metrics:
        return False, len(FLOOR_METRICS), float("nan")
    failing = _failing({"metrics": metrics}, floors)
    w2 = metrics.get("w2")
    return not failing, len(failing), float("nan") if w2 is None else float(w2)


def _seed_of(doc: dict, what: str) -> int:
    try:
        return int(doc["meta"]["seed"] if "seed" in doc["meta"] else doc["meta"]["sweep"]["seed"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{what}: a file without meta.seed") from None


def _by_seed(docs: list[dict], what: str) -> dict[int, dict]:
    out = {}
    for d in docs:
        s = _seed_of(d, what)
        if s in out:
            raise ValueError(f"{what}: seed {s} given twice")
        out[s] = d
    return out


def _peer_settings(peers: dict[int, dict], seeds: list[int], budgets, floors) -> dict:
    """``{budget: {(family, name): {"label": ..., "per_seed": [dict per seed]}}}`` for the non-DLG rows."""
    out = {b: {} for b in budgets}
    for i, s in enumerate(seeds):
        for r in peers[s]["rows"]:
            if r["family"].startswith("DLG") or r["budget"] not in out:
                continue
            key = (r["family"], r["sampler"])
            entry = out[r["budget"]].setdefault(key, {"labels": [None] * len(seeds),
                                                      "per_seed": [dict(_MISSING) for _ in seeds]})
            inside, nfail, w2 = _score(r.get("metrics"), floors)
            entry["labels"][i] = r.get("label")
            entry["per_seed"][i] = {"inside": inside, "failing": nfail, "w2": w2, "nfe": r.get("nfe", float("nan")),
                                    "nfe_per_independent": r.get("nfe_per_independent", r.get("nfe", float("nan")))}
    return out


def _dlg_points(ladders: dict[int, dict], seeds: list[int], floors) -> dict:
    """``{point id: {"label", "integrator", "per_seed"}}`` for every DLG point of the replicates."""
    out = {}
    for i, s in enumerate(seeds):
        for p in ladders[s]["points"]:
            if p.get("kind") != "dlg":
                continue
            e = out.setdefault(p["id"], {"label": point_label(p["settings"]), "integrator": p["integrator"],
                                         "per_seed": [dict(_MISSING) for _ in seeds]})
            inside, nfail, w2 = _score(p.get("metrics"), floors)
            e["per_seed"][i] = {"inside": inside, "failing": nfail, "w2": w2,
                                "nfe": float(p["nfe"]) if p.get("nfe") is not None else float("nan"),
                                "nfe_per_independent": float(p["nfe_per_independent"])
                                if p.get("nfe_per_independent") is not None else float("nan")}
    return out


def _rank(per_seed: list[dict]) -> tuple:
    inside = sum(r["inside"] for r in per_seed)
    w2 = np.array([r["w2"] for r in per_seed], dtype=float)
    med_w2 = float(np.nanmedian(w2)) if np.isfinite(w2).any() else math.inf
    return (-inside, float(np.median([r["failing"] for r in per_seed])), med_w2)


def _summary(family: str, sampler: str, label: str, per_seed: list[dict], seeds: list[int], extra=None) -> dict:
    w2 = np.array([r["w2"] for r in per_seed], dtype=float)
    fin = w2[np.isfinite(w2)]
    n_inside = int(sum(r["inside"] for r in per_seed))
    need = math.ceil(MIN_REACH_FRACTION * len(seeds) - 1e-9)
    return {"family": family, "sampler": sampler, "label": label, "seeds": list(seeds),
            "inside": [bool(r["inside"]) for r in per_seed], "n_inside": n_inside, "counts": n_inside >= need,
            "failing": [int(r["failing"]) for r in per_seed],
            "median_failing": float(np.median([r["failing"] for r in per_seed])),
            "w2": [float(x) for x in w2], "w2_median": interval(fin).to_dict() if fin.size else None,
            "nfe_median": float(np.nanmedian([r["nfe"] for r in per_seed]))
            if np.isfinite([r["nfe"] for r in per_seed]).any() else None,
            "nfe_per_independent_median": float(np.nanmedian([r["nfe_per_independent"] for r in per_seed]))
            if np.isfinite([r["nfe_per_independent"] for r in per_seed]).any() else None, **(extra or {})}


def _w2_if_inside(summary: dict) -> list[float]:
    return [w if ok else float("nan") for w, ok in zip(summary["w2"], summary["inside"])]


def _name(summary: dict) -> str:
    if summary["family"].startswith("DLG"):
        return f"{summary['family']} {summary['sampler']}"
    return f"{summary['sampler']} ({summary['family']})"


def analyse_peers(peer_docs: list[dict], ladder_docs: list[dict], floors: dict, budgets=None) -> dict:
    """The peers over seeds: per budget, each family's best setting and the verdicts of DLG against the rest.

    ``peer_docs``: the ``peers_<target>[_seedS].json`` files of ``bench/peers.py``; ``ladder_docs``: the ladder
    replicates of the same seeds; ``floors``: one set of noise floors for every seed (``metrics.exact_floors``).
    Refused (ValueError, one line): seeds that differ between the two lists, or a seed given twice.
    """
    peers, ladders = _by_seed(peer_docs, "peers"), _by_seed(ladder_docs, "ladder replicates")
    if set(peers) != set(ladders):
        raise ValueError(f"analyse_peers: the peers files cover seeds {sorted(peers)} but the ladder replicates "
                         f"{sorted(ladders)}; give both for the same seeds")
    seeds = sorted(peers)
    budgets = list(budgets or peer_docs[0]["meta"]["budgets"])
    settings = _peer_settings(peers, seeds, budgets, floors)
    dlg = _dlg_points(ladders, seeds, floors)
    out = {"seeds": seeds, "budgets": budgets, "min_reach_fraction": MIN_REACH_FRACTION,
           "floors": {k: floors[k]["threshold"] for k in FLOOR_METRICS}, "per_budget": []}
    for b in budgets:
        best: dict[str, dict] = {}
        for (fam, name), e in settings[b].items():
            labels = sorted({lab for lab in e["labels"] if lab})
            rank = _rank(e["per_seed"])
            if fam not in best or rank < best[fam]["_rank"]:
                best[fam] = dict(_summary(fam, name, " / ".join(labels), e["per_seed"], seeds), _rank=rank)
        for fam, key in DLG_FAMILIES.items():
            for pid, e in dlg.items():
                costs = [r[key] for r in e["per_seed"] if math.isfinite(r[key])]
                if not costs or float(np.median(costs)) > b:
                    continue
                rank = _rank(e["per_seed"])
                if fam not in best or rank < best[fam]["_rank"]:
                    best[fam] = dict(_summary(fam, e["integrator"], e["label"], e["per_seed"], seeds,
                                              {"ladder_id": pid}), _rank=rank)
        others = [v for f, v in best.items() if not f.startswith("DLG")]
        other = min(others, key=lambda v: v["_rank"]) if others else None
        verdicts = {}
        for fam in DLG_FAMILIES:
            if fam in best and other is not None:
                v = verdict(_w2_if_inside(best[fam]), _w2_if_inside(other), _name(best[fam]), _name(other),
                            what="W2", kind="value", seeds=seeds, fmt=".2f")
                verdicts[fam] = v.to_dict()
        out["per_budget"].append({"budget": b, "best": {f: {k: v for k, v in e.items() if k != "_rank"}
                                                        for f, e in sorted(best.items())},
                                  "best_other": _name(other) if other else None, "verdicts": verdicts})
    return out


def _row_text(e: dict) -> str:
    w2 = e["w2_median"]
    w2_txt = f"W2 {w2['estimate']:.2f} ({100 * w2['confidence']:g}% CI {w2['low']:.2f}-{w2['high']:.2f})" if w2 \
        else "W2 -"
    nfe = e["nfe_median"]
    ind = e["nfe_per_independent_median"]
    cost = (f"NFE {nfe:.1f}" if nfe is not None else "NFE -") + (
        f" (per indep. {ind:.1f})" if ind is not None and e["family"].startswith("DLG") else "")
    return (f"{e['n_inside']}/{len(e['seeds'])} seeds inside every floor, median {e['median_failing']:g} of "
            f"{len(FLOOR_METRICS)} outside; {w2_txt}; {cost}")


def peers_seeds_text(f: dict, budgets=None) -> str:
    """Plain text for a notebook: per budget, each family's best setting and DLG's verdicts."""
    lines = []
    for pb in f["per_budget"]:
        if budgets is not None and pb["budget"] not in budgets:
            continue
        lines.append(f"--- at most {pb['budget']} NFE ({len(f['seeds'])} seeds)")
        for fam, e in pb["best"].items():  # a DLG label starts with its integrator; a peer's is its step count
            setting = e["label"] if fam.startswith("DLG") else f"{e['sampler']} {e['label']}"
            lines += [f"  {fam}: {setting}", f"      {_row_text(e)}"]
        lines += [f"  -> {line}" for line in _verdict_lines(pb)]
    return "\n".join(lines)


def _verdict_lines(pb: dict) -> list[str]:
    """The verdicts of one budget as sentences, with what DLG's per-output setting costs per independent sample."""
    out = []
    for fam in DLG_FAMILIES:
        v, e = pb["verdicts"].get(fam), pb["best"].get(fam)
        if v is None:
            out.append(f"{fam}: no DLG setting within {pb['budget']} NFE")
            continue
        line = f"{fam}, inside every floor: {v['text']}"
        ind = e.get("nfe_per_independent_median")
        if fam == "DLG (per output)" and ind is not None:
            line += (f"; per independent sample this DLG setting costs {ind:.1f} NFE, {ind / pb['budget']:.1f}x the "
                     "budget")
        out.append(line)
    return out


def peers_seeds_markdown(f: dict, commands: list[str] | None = None, title: str = "Peers over seeds") -> str:
    """The report of :func:`analyse_peers` as markdown (one table per budget, the verdicts under it)."""
    n = len(f["seeds"])
    lines = [f"# {title}", "",
             f"Seeds {', '.join(map(str, f['seeds']))}; a setting counts when at least "
             f"{math.ceil(f['min_reach_fraction'] * n - 1e-9)} of {n} seeds are inside every noise floor "
             "(" + ", ".join(f"{k} {v:.3g}" for k, v in f["floors"].items()) + "). W2: median over the seeds "
             "with its 95% bootstrap interval. DLG settings are the ladder's points whose median NFE (per output, "
             "or per independent sample) fits the budget; the best of them is chosen on the same seeds.", ""]
    for pb in f["per_budget"]:
        lines += [f"## At most {pb['budget']} NFE", "",
                  "| family | sampler | settings | seeds inside | median outside | W2 median (95% CI) | NFE | "
                  "NFE/indep. |", "|---|---|---|---|---|---|---|---|"]
        for fam, e in pb["best"].items():
            w2 = e["w2_median"]
            nfe, ind = (("-" if v is None else f"{v:.1f}") for v in (e["nfe_median"], e["nfe_per_independent_median"]))
            lines.append(f"| {fam} | {e['sampler']} | {e['label']} | {e['n_inside']}/{n} | {e['median_failing']:g} | "
                         + (f"{w2['estimate']:.3f} ({w2['low']:.3f}-{w2['high']:.3f})" if w2 else "-")
                         + f" | {nfe} | {ind} |")
        lines.append("")
        lines += [f"- {line}" for line in _verdict_lines(pb)] + [""]
    if commands:
        lines += ["## Commands", "", "```bash", *commands, "```", ""]
    return "\n".join(lines)


def plot_peers_seeds(f: dict, title: str = ""):
    """Two panels over the budgets: seeds inside every floor, and median W2 with its interval, per family."""
    fams = sorted({fam for pb in f["per_budget"] for fam in pb["best"]})
    n = len(f["seeds"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(fams))
    for j, fam in enumerate(fams):
        xs, ins, w2, lo, hi = [], [], [], [], []
        for i, pb in enumerate(f["per_budget"]):
            e = pb["best"].get(fam)
            if e is None:
                continue
            xs.append(i + (j - (len(fams) - 1) / 2) * width)
            ins.append(e["n_inside"])
            m = e["w2_median"]
            w2.append(m["estimate"] if m else np.nan)
            lo.append(m["estimate"] - m["low"] if m else 0)
            hi.append(m["high"] - m["estimate"] if m else 0)
        a1.bar(xs, ins, width=width, label=fam, color=f"C{j}")
        for x, k in zip(xs, ins):  # the count on every bar, so that 0 seeds differs from "no setting fits"
            a1.text(x, k + 0.1, str(k), ha="center", va="bottom", fontsize=7, color=f"C{j}")
        a2.errorbar(xs, w2, yerr=[lo, hi], fmt="o", ms=4, capsize=3, color=f"C{j}", label=fam)
    labels = [str(pb["budget"]) for pb in f["per_budget"]]
    need = math.ceil(f["min_reach_fraction"] * n - 1e-9)
    a1.axhline(need, color="0.3", ls=":", lw=1)
    a1.text(0.5, need + 0.1, f"counts from {need} of {n}", va="bottom", ha="center", fontsize=8, color="0.3")
    a1.set_ylim(0, n + 1)
    a1.set_ylabel(f"seeds inside every floor (of {n})")
    a2.axhline(f["floors"]["w2"], color="0.3", ls=":", lw=1, label="W2 noise floor")
    a2.set_yscale("log")
    a2.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    a2.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    a2.yaxis.set_minor_formatter(NullFormatter())
    a2.set_ylabel("W2, median over seeds (95% CI)")
    for ax in (a1, a2):
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("NFE budget (a family without a bar or point: no setting fits)")
    handles, names = a2.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, bbox_to_anchor=(0.5, -0.02),
               frameon=False)
    fig.suptitle(title or f"best setting of each family per budget, {n} seeds; dotted: W2 floor / counting line",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
