"""DLG with modern few-step solvers (issue 13): DPM-Solver++(2M), its SDE form, UniPC and Restart, side by side.

    python bench/modern_solvers.py --target lowrank --out bench/results/modern_solvers
    python bench/modern_solvers.py --target ring --out bench/results/modern_solvers
    python bench/modern_solvers.py --target ring --learned --out bench/results/modern_solvers

One ladder sweep (:func:`dmcmc_edu.experiments.ladder.run_ladder`, ``integrators`` = the four solvers) per target:
each solver from sigma_max, the two controls (schedule, restart without MCMC) and DLG denoising with each solver,
every point with 2000 outputs, its seed, the full NFE ledger and seven metrics against exact samples with their
noise floors (the same reference set as ``bench/results/toy``: same n and seed).  The noise-level classifier
(and with ``--learned`` the MLP denoiser) is trained in OUT on first use with the ladder's settings (3000 / 4000
steps, seed 0); the files in ``bench/results/toy`` predate the record of the target's hash and are refused by
today's checks, so they are not reused.  Then:

* ``OUT/<stem>_fig3.png`` -- the paper's Fig. 3 layout: W2 vs NFE per solver (from sigma_max, controls, DLG by
  the full ledger and per independent sample), mode-weight TV and |spread - 1| vs NFE per independent sample;
* ``OUT/<stem>_table.{md,json}`` -- at 5 / 10 / 20 / 50 NFE per independent sample, the best DLG point with any
  of the four solvers against every peer: each solver from sigma_max, the controls, the paper's six integrators
  from sigma_max and DLG with them (``bench/results/toy/<stem>.json``) and k-diffusion's samplers
  (``bench/results/toy/peers_<stem>.json``).  "Best" = fewest metrics outside their noise floors, then the
  lowest W2 (the ladder's own rule).

Without ``--out`` a run goes to a new folder ``runs/modern_solvers-<UTC time>``.  ``--out DIR`` starts or resumes
that folder through the ladder's run records (a finished sweep is read back, a folder made with other settings
is refused), so the committed results (``bench/results/modern_solvers``) are read or rewritten only when named,
as in the commands above.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dmcmc_edu.cli.common import run_handler  # noqa: E402
from dmcmc_edu.experiments.ladder import _clean, _failing, point_label, run_ladder, target_stem  # noqa: E402
from dmcmc_edu.plotting import nfe_axes  # noqa: E402
from dmcmc_edu.runs import atomic_write, fresh_folder, write_json  # noqa: E402
from dmcmc_edu.solvers import MODERN_SOLVERS  # noqa: E402

BUDGETS = (5, 10, 20, 50)
TOY = Path("bench/results/toy")


_STYLE = {"noise": dict(color="k", marker="o", label="from sigma_max"),
          "schedule": dict(color="C1", marker="s", label="control: schedule"),
          "restart": dict(color="C2", marker="^", label="control: restart"),
          "dlg": dict(color="C0", marker="D", label="DLG (full ledger, per output)")}


def _envelope(pts, key, value):
    """Lower envelope of (NFE, value): the points that beat every point of smaller NFE."""
    best, out = float("inf"), []
    for p in sorted(pts, key=lambda p: p[key]):
        v = value(p)
        if v is not None and v < best:
            best = v
            out.append((p[key], v))
    return out


def _solver_panel(ax, mine, name, floors):
    """W2 vs NFE for one solver: from sigma_max, the controls' and DLG's envelopes, DLG per independent sample."""
    for kind, st in _STYLE.items():
        ps = [p for p in mine if p["kind"] == kind]
        if not ps:
            continue
        if kind == "noise":
            xy = sorted((p["nfe"], p["metrics"]["w2"]) for p in ps)
        else:
            ax.scatter([p["nfe"] for p in ps], [p["metrics"]["w2"] for p in ps], s=6, color=st["color"], alpha=0.25)
            xy = _envelope(ps, "nfe", lambda p: p["metrics"]["w2"])
        ax.plot(*zip(*xy), marker=st["marker"], ms=3, color=st["color"], label=st["label"])
        if kind == "dlg":
            xy = _envelope(ps, "nfe_per_independent", lambda p: p["metrics"]["w2"])
            ax.plot(*zip(*xy), ls="--", color=st["color"], label="DLG per independent sample")
    nfe_axes(ax, floors["w2"]["threshold"], floor_label="W2 noise floor", plain_ticks=True)
    ax.set_title(name)
    ax.set_xlabel("NFE")
    ax.set_ylabel("W2 to exact samples")


def _summary(ax, pts, metric, title, floors):
    """The best ``metric`` per NFE per independent sample over the four solvers, one line per kind."""
    value = (lambda p: p["metrics"]["mode_tv"]) if metric == "mode_tv" else (lambda p: p["metrics"].get("spread_dev"))
    for kind, st in _STYLE.items():
        ps = [p for p in pts if p["kind"] == kind]
        xy = _envelope(ps, "nfe_per_independent", value)
        if xy:
            lab = st["label"] if kind != "dlg" else "DLG (per independent sample)"
            ax.plot(*zip(*xy), marker=st["marker"], ms=3, color=st["color"], label=lab)
    nfe_axes(ax, floors[metric]["threshold"], plain_ticks=metric == "mode_tv")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("NFE per independent sample")


def plot_fig3(doc: dict, path: Path) -> None:
    """Fig. 3 layout for the four solvers: one W2-vs-NFE panel each, then mode TV and spread (all kinds)."""
    floors = doc["meta"]["floors"]
    pts = [p for p in doc["points"] if p.get("metrics") and "extra_tweedie" not in p.get("tags", [])]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    for ax, name in zip(axes.flat, MODERN_SOLVERS):
        _solver_panel(ax, [p for p in pts if p["integrator"] == name], name, floors)
    _summary(axes.flat[4], pts, "mode_tv", "mode-weight TV (best per NFE, four solvers)", floors)
    _summary(axes.flat[5], pts, "spread", "|spread - 1| (best per NFE, four solvers)", floors)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=5, fontsize=8, frameon=False)
    m = doc["meta"]
    fig.suptitle(f"{m['stem']} with DPM++ 2M / 2M SDE / UniPC / Restart: d = {m['d']}, n = {m['sweep']['n']} per "
                 "point; NFE by the full ledger", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)


def _entry(group: str, p: dict, floors: dict, nfe_key: str = "nfe_per_independent") -> dict:
    fail = _failing(p, floors)
    m = p["metrics"]
    return {"group": group, "label": point_label(p["settings"]), "integrator": p["integrator"], "kind": p["kind"],
            "nfe_per_independent": p[nfe_key], "nfe": p.get("nfe"), "failing": fail, "n_failing": len(fail),
            "w2": m["w2"], "mode_tv": m["mode_tv"], "spread_dev": m.get("spread_dev"), "ess_ratio": p.get("ess_ratio")}


def _best(points, budget, floors, key="nfe_per_independent"):
    cands = [p for p in points if p.get("metrics") and p[key] <= budget + 1e-9
             and "extra_tweedie" not in p.get("tags", [])]
    return min(cands, key=lambda p: (len(_failing(p, floors)), p["metrics"]["w2"])) if cands else None


def _peer_failing(row: dict, floors: dict) -> dict:
    """A k-diffusion row of peers_<stem>.json measured like a ladder point (its failing metrics, from its values)."""
    return _failing({"metrics": row["metrics"]}, floors)


def peer_groups(doc: dict, stem: str) -> list[tuple[str, list[dict]]]:
    """Every group compared: DLG + each solver, each solver from sigma_max, controls, and the earlier peers."""
    pts = doc["points"]
    groups = [(f"DLG + {s}", [p for p in pts if p["kind"] == "dlg" and p["integrator"] == s]) for s in MODERN_SOLVERS]
    groups += [(f"{s} from sigma_max", [p for p in pts if p["kind"] == "noise" and p["integrator"] == s])
               for s in MODERN_SOLVERS]
    groups += [("schedule control (4 solvers)", [p for p in pts if p["kind"] == "schedule"]),
               ("restart control (4 solvers)", [p for p in pts if p["kind"] == "restart"])]
    toy = TOY / f"{stem}.json"
    if toy.exists():
        old = json.loads(toy.read_text())
        if (old["meta"]["sweep"]["n"], old["meta"]["sweep"]["seed"]) == (doc["meta"]["sweep"]["n"],
                                                                          doc["meta"]["sweep"]["seed"]):
            for name in sorted({p["integrator"] for p in old["points"]}):
                groups.append((f"{name} from sigma_max (paper six)",
                               [p for p in old["points"] if p["kind"] == "noise" and p["integrator"] == name]))
            groups.append(("DLG + paper six (best)", [p for p in old["points"] if p["kind"] == "dlg"]))
            groups.append(("controls, paper six (best)",
                           [p for p in old["points"] if p["kind"] in ("schedule", "restart")]))
    return groups


def k_diffusion_rows(stem: str, budget: int, floors: dict) -> list[dict]:
    path = TOY / f"peers_{stem}.json"
    if not path.exists():
        return []
    out = []
    for r in json.loads(path.read_text())["rows"]:
        if r.get("family") == "k-diffusion" and r["budget"] == budget and r.get("metrics"):
            fail = _peer_failing(r, floors)
            m = r["metrics"]
            out.append({"group": f"k-diffusion {r['sampler']}", "label": r["label"], "integrator": r["sampler"],
                        "kind": "k-diffusion", "nfe_per_independent": r["nfe"], "nfe": r["nfe"], "failing": fail,
                        "n_failing": len(fail), "w2": m["w2"], "mode_tv": m["mode_tv"],
                        "spread_dev": m.get("spread_dev"), "ess_ratio": 1.0})
    return out


def comparison(doc: dict, stem: str) -> dict:
    """Per budget: the best DLG point with any of the four solvers, and the best point of every peer group."""
    floors = doc["meta"]["floors"]
    groups = peer_groups(doc, stem)
    table = {}
    for b in BUDGETS:
        rows = []
        for name, ps in groups:
            best = _best(ps, b, floors)
            if best is not None:
                rows.append(_entry(name, best, floors))
        rows += k_diffusion_rows(stem, b, floors)
        dlg_pts = [q for q in doc["points"] if q["kind"] == "dlg"]
        per_output = _best(dlg_pts, b, floors, key="nfe")
        if per_output is not None:  # for reference only: counts a chain's correlated outputs as independent
            rows.append(dict(_entry("DLG + any solver, per output (correlated; not a peer)", per_output, floors),
                             nfe_per_independent=per_output["nfe_per_independent"]))
        first = min((q for q in dlg_pts if q.get("metrics") and not _failing(q, floors)),
                    key=lambda q: q["nfe_per_independent"], default=None)
        dlg = [r for r in rows if r["group"] in {f"DLG + {s}" for s in MODERN_SOLVERS}]
        top = min(dlg, key=lambda r: (r["n_failing"], r["w2"])) if dlg else None
        for r in rows:
            r["dlg_best_beats_it"] = None if top is None or r is top else (
                (top["n_failing"], top["w2"]) < (r["n_failing"], r["w2"]))
        table[str(b)] = {"dlg_best": top, "rows": rows,
                         "dlg_first_inside_floors": _entry("DLG first inside all floors", first, floors)
                         if first else None}
    return table


def _cell(r):
    fail = ",".join(r["failing"]) or "all in"
    nfe = (f"{r['nfe_per_independent']:.1f}" if "per output" not in r["group"] else
           f"{r['nfe']:.1f} per output ({r['nfe_per_independent']:.0f} per indep.)")
    return (f"{nfe} | {r['w2']:.4f} | {r['mode_tv']:.3f} | {r['n_failing']} ({fail}) | "
            f"{r['label']}")


def table_markdown(table: dict, meta: dict) -> str:
    lines = [f"# DLG + best modern solver against every peer: {meta['stem']}", "",
             f"Target `{meta['sweep']['target']}` (d = {meta['d']}), n = {meta['sweep']['n']} outputs per point, "
             f"seed {meta['sweep']['seed']}; NFE per independent sample (full ledger / ESS ratio; 1 for independent "
             "outputs); best = fewest metrics outside the noise floors, then the lowest W2.  Floors: "
             + ", ".join(f"{k} {v['threshold']:.3g}" for k, v in meta["floors"].items() if isinstance(v, dict)
                         and "threshold" in v) + ".", ""]
    for b, t in table.items():
        top = t["dlg_best"]
        lines += [f"## Budget {b} NFE per independent sample", ""]
        if top is None:
            lines += ["No DLG point with a modern solver fits this budget (per independent sample).", ""]
        first = t.get("dlg_first_inside_floors")
        if first:
            lines += [f"The cheapest DLG point with every metric inside its floor: {first['label']} at "
                      f"{first['nfe_per_independent']:.1f} NFE per independent sample ({first['nfe']:.1f} per "
                      f"output, ESS ratio {first['ess_ratio']:.2f}; W2 {first['w2']:.4f}).", ""]
        lines += ["| sampler (group) | NFE/indep. | W2 | mode TV | failing metrics | setting | DLG+best better? |",
                  "|---|---|---|---|---|---|---|"]
        for r in sorted(t["rows"], key=lambda r: (r["n_failing"], r["w2"])):
            mark = "**(DLG + best)**" if r is top else {True: "yes", False: "no", None: "—"}[r["dlg_best_beats_it"]]
            lines.append(f"| {r['group']} | {_cell(r)} | {mark} |")
        lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="lowrank")
    p.add_argument("--learned", action="store_true", help="the ring's learned MLP denoiser instead of the exact one")
    p.add_argument("--out", default=None,
                   help="the folder to start or resume (default: a new folder runs/modern_solvers-<UTC time>)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--fast", action="store_true", help="the ladder's small sweep (500 outputs per point)")
    p.add_argument("--progress", action="store_true")
    return p


def out_folder(args) -> Path:
    """``--out``, or a new folder ``runs/modern_solvers-<UTC time>`` (committed results are used only when named)."""
    return Path(args.out) if args.out else fresh_folder("modern_solvers")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.out = str(out_folder(args))  # the recorded command names the folder either way
    args.func = _run
    return run_handler(args)  # a refused or bad run ends with one "error: ..." line and exit status 2


def _run(args) -> int:
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ("python bench/modern_solvers.py --target " + args.target + (" --learned" if args.learned else "")
               + (" --fast" if args.fast else "") + f" --out {args.out}")
    doc = run_ladder(args.target, out, fast=args.fast, learned=args.learned, n=None if args.fast else args.n,
                     seed=args.seed, progress=args.progress, plot=False, integrators=list(MODERN_SOLVERS),
                     command=command, workers=args.workers)
    stem = target_stem(args.target, args.learned, args.fast, args.seed)
    plot_fig3(doc, out / f"{stem}_fig3.png")
    table = comparison(doc, stem)
    write_json(out / f"{stem}_table.json", _clean({"meta": {"stem": stem, "command": command,
                                                            "budgets": list(BUDGETS)}, "table": table}), indent=1)
    atomic_write(out / f"{stem}_table.md", lambda tmp: Path(tmp).write_text(table_markdown(table, doc["meta"])))
    n_err = sum(1 for q in doc["points"] if q.get("error"))
    print(json.dumps({"points": len(doc["points"]), "failed_points": n_err, "table": str(out / f"{stem}_table.md")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
