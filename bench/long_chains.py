"""The paper's regime: DLG chains of 250 and 500 Gibbs steps, over seeds (issue 18, item 4).

    python bench/long_chains.py --target ring --seeds 0-7 --out bench/results/seeds
    python bench/long_chains.py --target lowrank --seeds 0-7 --out bench/results/seeds

The ladder's DLG chains give at most 20 outputs each; the paper's chains run 250-500 Gibbs steps, so their
initialisation and burn-in are spread over many more outputs.  This bench runs, with KAR1 as the denoiser and one
Gibbs step per output, chains of 250 and 500 steps (8 or 4 chains for 2,000 outputs) with

* the paper's settings (classifier argmax, unadjusted Langevin with the absolute step, the extra Tweedie step) and
* the ladder's mixing remedy (exact sigma-posterior, MALA with sigma-adapted steps, more steps at large sigma),

once per replicate seed of ``bench/ladder_seeds.py`` (each point measured against that replicate's exact
reference set, so it joins the replicate as one more DLG setting).  Writes ``OUT/<stem>_long_seedS.json`` (one per
seed, resumable point by point) and ``OUT/<stem>_long.{json,md,png}``: per setting, the NFE per output (full
ledger), ESS ratio, NFE per independent sample, mode-weight TV and whether it reaches the integrator's reference
in at least 7 of 8 seeds, and the verdict against KAR1 from noise.  A report made with other settings is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dmcmc_edu.cli.common import run_handler, seed_list  # noqa: E402
from dmcmc_edu.core.schedules import noise_level_grid  # noqa: E402
from dmcmc_edu.evaluation.uncertainty import verdict  # noqa: E402
from dmcmc_edu.experiments.ladder import (  # noqa: E402
    LadderContext,
    _clean,
    point_id,
    point_label,
    run_point,
    target_stem,  # noqa: E402
)
from dmcmc_edu.experiments.ladder.plan import _dlg_bases, _short_steps  # noqa: E402
from dmcmc_edu.experiments.ladder.run import _load_or_train_classifier  # noqa: E402
from dmcmc_edu.experiments.ladder.seeds import analyse_seeds, load_replicates, per_seed_costs  # noqa: E402
from dmcmc_edu.runs import RunRefused, atomic_write, refuse_other_settings, write_json  # noqa: E402
from dmcmc_edu.targets import load_target  # noqa: E402

LENGTHS = (250, 500)
INTEGRATOR = "kar1"


def long_settings(ctx) -> list[dict]:
    """The four long-chain settings: the paper's and the mixing remedy, 250 and 500 Gibbs steps per chain."""
    short = _short_steps(INTEGRATOR, False)
    paper, _, mix_remedy = _dlg_bases(ctx, INTEGRATOR, short)
    s_lo, o_lo = short[0]
    out = []
    for T in LENGTHS:
        out.append(dict(paper, n_skip=1, steps=s_lo, integrator_options=o_lo, outputs_per_chain=T,
                        tags=["paper", "long"]))
        out.append(dict(mix_remedy, outputs_per_chain=T, tags=["remedy", "long"]))
    return out


def _run_seed(args, out: Path, doc: dict, mix, clf) -> dict:
    meta = doc["meta"]
    s = meta["sweep"]["seed"]
    path = out / f"{target_stem(args.target, fast=args.fast)}_long_seed{s}.json"
    saved = json.loads(path.read_text()) if path.exists() else {"meta": {"seed": s, "n": meta["sweep"]["n"]},
                                                                 "points": []}
    if saved["meta"] != {"seed": s, "n": meta["sweep"]["n"]}:
        raise RunRefused(f"{path} holds other settings ({saved['meta']}); it is not replaced -- choose another --out")
    ctx = LadderContext(mix, n=meta["sweep"]["n"], seed=s, classifier=clf, n_levels=meta["n_levels"],
                        floors=meta["floors"], ref_values=meta["ref_values"])
    done = {p["id"] for p in saved["points"]}
    for st in long_settings(ctx):
        if point_id(st) not in done:
            saved["points"].append(_clean(run_point(ctx, st)))
            write_json(path, saved, indent=1)
    return saved


def _plot(rows: list[dict], title: str):
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, r in enumerate(rows):
        x = [c for c in r["nfe_per_independent"] if c is not None]
        y = [t for c, t in zip(r["nfe_per_independent"], r["mode_tv"]) if c is not None]
        ax.scatter(x, y, s=18, color=f"C{i}", label=r["label"])
    ax.axhline(rows[0]["mode_tv_floor"], color="k", ls=":", lw=1, label="mode-TV noise floor")
    ax.set(xscale="log", xlabel="NFE per independent sample (full ledger), one point per seed",
           ylabel="mode-weight TV", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _run(args) -> int:
    torch.set_num_threads(1)
    out = Path(args.out)
    stem = target_stem(args.target, fast=args.fast)
    report = out / f"{stem}_long.json"
    settings = {"seeds": args.seeds, "lengths": list(LENGTHS), "integrator": INTEGRATOR}
    refuse_other_settings(report, settings, extendable=("seeds",))
    docs = load_replicates([out / f"{target_stem(args.target, fast=args.fast, seed=s)}.json" for s in args.seeds])
    floors = json.loads((out / f"{stem}_floors_n{docs[0]['meta']['sweep']['n']}.json").read_text())["floors"]
    mix = load_target(args.target)
    meta = docs[0]["meta"]
    grid = noise_level_grid(mix.default_sigma_min(), mix.default_sigma_max(), meta["n_levels"])
    clf, _, _ = _load_or_train_classifier(mix, grid, out / f"{stem}_classifier.pt", meta["classifier"]["steps"], 0,
                                          False)
    longs = [_run_seed(args, out, d, mix, clf) for d in docs]
    merged = [dict(d, points=d["points"] + lg["points"]) for d, lg in zip(docs, longs)]
    costs = per_seed_costs(merged, floors, INTEGRATOR)
    base = analyse_seeds(merged, floors)["per_integrator"][INTEGRATOR]
    noise = base["best"]["noise"]
    rows = []
    for p0 in longs[0]["points"]:
        pid = p0["id"]
        per = [next((q for q in lg["points"] if q["id"] == pid), None) for lg in longs]
        v = verdict(costs[pid]["costs"], noise["values"], f"DLG ({point_label(p0['settings'])})",
                    f"KAR1 from noise ({noise['label']})", what="NFE per independent sample")
        rows.append({"id": pid, "label": point_label(p0["settings"]), "tags": p0["settings"].get("tags", []),
                     "outputs_per_chain": p0["settings"]["outputs_per_chain"],
                     "nfe": [q.get("nfe") if q else None for q in per],
                     "nfe_paper": [q.get("nfe_paper") if q else None for q in per],
                     "ess_ratio": [q.get("ess_ratio") if q else None for q in per],
                     "nfe_per_independent": [q.get("nfe_per_independent") if q else None for q in per],
                     "mode_tv": [(q.get("metrics") or {}).get("mode_tv") if q else None for q in per],
                     "mode_tv_floor": floors["mode_tv"]["threshold"],
                     "reaches": [c == c for c in costs[pid]["costs"]], "verdict": v.to_dict()})
    write_json(report, _clean({"settings": settings, "rows": rows, "best_dlg_with_long": base["best"]["dlg"]}),
               indent=1)
    lines = [f"# Chains of {LENGTHS[0]} and {LENGTHS[1]} Gibbs steps ({args.target}, KAR1, seeds "
             f"{args.seeds[0]}-{args.seeds[-1]})", "",
             "| setting | NFE/output (full, median) | paper count | ESS ratio | NFE per indep. (median) | "
             "mode TV (median) | seeds outside the mode-TV floor | reaches | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        med = {k: float(np.nanmedian([np.nan if v is None else v for v in r[k]]))
               for k in ("nfe", "nfe_paper", "ess_ratio", "nfe_per_independent", "mode_tv")}
        outside = sum(1 for t in r["mode_tv"] if t is not None and t > r["mode_tv_floor"])
        lines.append(f"| {r['label']} | {med['nfe']:.1f} | {med['nfe_paper']:.1f} | {med['ess_ratio']:.3f} | "
                     f"{med['nfe_per_independent']:.0f} | {med['mode_tv']:.3f} | {outside}/{len(r['mode_tv'])} | "
                     f"{sum(r['reaches'])}/{len(r['reaches'])} | {r['verdict']['text']} |")
    lines += ["", f"Command: `python bench/long_chains.py --target {args.target}{' --fast' if args.fast else ''} "
              f"--seeds {args.seeds[0]}-{args.seeds[-1]} --out {args.out}`"]
    atomic_write(out / f"{stem}_long.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    fig = _plot(rows, f"{args.target}: chains of {LENGTHS[0]} / {LENGTHS[1]} Gibbs steps, {len(docs)} seeds")
    atomic_write(out / f"{stem}_long.png", lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)
    print(json.dumps({"report": str(out / f"{stem}_long.md"), "settings": len(rows)}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="ring")
    p.add_argument("--seeds", type=seed_list, default=seed_list("0-7"))
    p.add_argument("--out", default="runs/ladder_seeds")
    p.add_argument("--fast", action="store_true", help="the replicates of the ladder's small sweep (n = 500)")
    args = p.parse_args(argv)
    args.func = _run
    return run_handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
