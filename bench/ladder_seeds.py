"""The toy ladders over seeds (issue 18): every point of a sweep at 8 seeds, the verdicts with their intervals.

    python bench/ladder_seeds.py --target ring --seeds 0-7 --out bench/results/seeds
    python bench/ladder_seeds.py --target lowrank --seeds 0-7 --out bench/results/seeds
    python bench/ladder_seeds.py --target ring --seeds 0-7 --recheck-seeds 100-107 --out bench/results/seeds

1. Runs (or resumes) one replicate of the ladder sweep per seed (``python -m dmcmc_edu ladder --seed S``: the
   same plan, every point seeded by its id and S, a fresh exact reference set per seed; the classifier is
   trained once, seed 0).  Finished replicates are read back, not re-run.
2. The noise floors of the sweep's n (``metrics.exact_floors``: the 0.995 quantile of 200 pairs of fresh exact
   sets, the sweep's MMD kernel), computed once into ``OUT/<stem>_floors_n<n>.json``.
3. ``experiments.ladder.seeds.analyse_seeds``: per integrator, the median NFE per independent sample to reach the
   reference with its 95% interval and the seeds that reach (a setting counts from 7 of 8), and the verdicts DLG
   vs from noise and DLG vs the best control -> ``OUT/<stem>_seeds.{json,md,png}``; the same with "every metric
   inside the noise floors" as the quality to reach (``findings_floors`` in the JSON); with ``--prices`` also the
   cost-weighted one (every classifier, exact-posterior and log-density row at its measured price,
   ``bench/results/ledger_costs``; ``findings_cost_weighted``).
4. With ``--recheck-seeds``: the settings chosen in 3 (and every run from noise: the reference and the grid of step
   counts) on seeds that took no part in the choice; the verdicts recomputed from them and compared ->
   ``OUT/<stem>_recheck.{json,md}``.

A report file made with other settings (seeds, floors) is refused in one line, never replaced.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dmcmc_edu.cli.common import run_handler, seed_list  # noqa: E402
from dmcmc_edu.core.schedules import noise_level_grid  # noqa: E402
from dmcmc_edu.evaluation import metrics  # noqa: E402
from dmcmc_edu.experiments.ladder import (  # noqa: E402
    LadderContext,
    _clean,
    run_ladder,
    run_point,
    sweep_floors,
    target_stem,
)
from dmcmc_edu.experiments.ladder.run import _load_or_train_classifier  # noqa: E402
from dmcmc_edu.experiments.ladder.seeds import (  # noqa: E402
    analyse_seeds,
    load_replicates,
    plot_seeds,
    recheck_verdicts,
    seeds_markdown,
)
from dmcmc_edu.runs import RunRefused, atomic_write, refuse_other_settings, write_json  # noqa: E402
from dmcmc_edu.targets import load_target  # noqa: E402
from dmcmc_edu.training.denoiser import load_or_train_denoiser  # noqa: E402


def _floors(out: Path, stem: str, mix, n: int, bandwidth: float, ref_values: dict, repeats: int) -> dict:
    """The sweep's exact floors, computed once and kept in ``OUT/<stem>_floors_n<n>.json`` (the same file a sweep
    of that folder reads, :func:`dmcmc_edu.experiments.ladder.sweep_floors`)."""
    return sweep_floors(mix, n, bandwidth, ref_values, repeats=repeats, path=out / f"{stem}_floors_n{n}.json")


def _replicates(args, out: Path) -> list[dict]:
    for s in args.seeds:
        stem = target_stem(args.target, args.learned, args.fast, s)
        cmd = (f"python -m dmcmc_edu ladder --target {args.target}" + (" --fast" if args.fast else "")
               + (" --learned" if args.learned else "")
               + (f" --integrators {','.join(args.integrators)}" if args.integrators else "")
               + (f" --seed {s}" if s else "") + f" --out {args.out}")
        if args.report_only and not (out / f"{stem}.json").exists():
            raise RunRefused(f"{out / (stem + '.json')}: replicate seed {s} has not been run (drop --report-only)")
        run_ladder(args.target, out, fast=args.fast, learned=args.learned, seed=s, progress=args.progress,
                   plot=False, command=cmd, workers=args.workers, integrators=args.integrators)
    stems = [target_stem(args.target, args.learned, args.fast, s) for s in args.seeds]
    return load_replicates([out / f"{stem}.json" for stem in stems])


def _chosen(found: dict) -> dict[str, set]:
    """Per integrator, the point ids a recheck runs: the chosen settings of every kind."""
    return {name: {b["id"] for b in e["best"].values() if b} for name, e in found["per_integrator"].items()}


def _recheck(args, out: Path, stem: str, docs: list[dict], found: dict, floors: dict) -> list[dict]:
    """Run the chosen settings (and each integrator's reference point) on the fresh seeds; returns pseudo-docs."""
    mix = load_target(args.target)
    meta = docs[0]["meta"]
    grid = noise_level_grid(mix.default_sigma_min(), mix.default_sigma_max(), meta["n_levels"])
    base = target_stem(args.target, fast=args.fast)
    clf, _, _ = _load_or_train_classifier(mix, grid, out / f"{base}_classifier.pt", meta["classifier"]["steps"], 0,
                                          False)
    model = None
    if args.learned:
        model, _ = load_or_train_denoiser(mix, out / f"{base}_denoiser.pt", fast=args.fast, seed=0)
    by_id = {p["id"]: p for p in docs[0]["points"]}
    wanted = set().union(*_chosen(found).values())
    for name in found["per_integrator"]:  # every run from noise: the reference (the largest NFE) and the grid that
        # brackets the integrator's own NFE to reach (a chosen run that misses on fresh seeds hands over to the next)
        wanted |= {p["id"] for p in docs[0]["points"] if p["integrator"] == name and p["kind"] == "noise"
                   and "extra_tweedie" not in p.get("tags", []) and p.get("metrics")}
    fresh = []
    for s in args.recheck_seeds:
        path = out / f"{stem}_recheck_seed{s}.json"
        doc = json.loads(path.read_text()) if path.exists() else {
            "meta": {"sweep": dict(meta["sweep"], seed=s), "recheck_of": [d["meta"]["sweep"]["seed"] for d in docs]},
            "points": []}
        done = {p["id"] for p in doc["points"]}
        todo = [by_id[i]["settings"] for i in sorted(wanted - done)]
        if todo:
            ctx = LadderContext(mix, n=meta["sweep"]["n"], seed=s, model=model, classifier=clf,
                                learned=args.learned, n_levels=meta["n_levels"], floors=floors,
                                ref_values=meta["ref_values"])
            for st in todo:
                doc["points"].append(_clean(run_point(ctx, st)))
                write_json(path, doc, indent=1)
        fresh.append(doc)
    return fresh


def _run(args) -> int:
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = target_stem(args.target, args.learned, args.fast)
    mix = load_target(args.target)
    settings = {"seeds": args.seeds, "floor_repeats": args.floor_repeats, "quantile": metrics.FLOOR_QUANTILE,
                "prices": args.prices}
    if args.integrators:  # (absent from the paper-six reports written before the option existed)
        settings["integrators"] = args.integrators
    refuse_other_settings(out / f"{stem}_seeds.json", settings, extendable=("seeds",))
    if args.recheck_seeds:
        overlap = set(args.seeds) & set(args.recheck_seeds)
        if overlap:
            raise ValueError(f"--recheck-seeds must be seeds not used for the choice; {sorted(overlap)} are in --seeds")
        refuse_other_settings(out / f"{stem}_recheck.json", settings | {"recheck_seeds": args.recheck_seeds},
                              extendable=("seeds",))
    docs = _replicates(args, out)
    meta = docs[0]["meta"]
    floors = _floors(out, stem, mix, meta["sweep"]["n"], meta["floors"]["mmd_bandwidth"], meta["ref_values"],
                     args.floor_repeats)
    found = analyse_seeds(docs, floors)
    inside = analyse_seeds(docs, floors, rule="floors")  # every metric inside the noise floors (notebook 02)
    priced = None
    if args.prices:  # every row at its measured price (bench/ledger_costs.py) instead of one call = one NFE
        table = json.loads(Path(args.prices).read_text()).get("prices", {})
        if stem.removesuffix("_fast") not in table:
            raise ValueError(f"{args.prices}: no prices for {stem.removesuffix('_fast')!r} (has: {sorted(table)})")
        priced = analyse_seeds(docs, floors, prices=table[stem.removesuffix("_fast")])
    commands = [d["meta"]["command"] for d in docs]
    seconds = {d["meta"]["sweep"]["seed"]: sum(p.get("seconds") or 0 for p in d["points"]) for d in docs}
    found["run_seconds_per_seed"] = seconds
    write_json(out / f"{stem}_seeds.json", _clean({"settings": settings, "findings": found,
                                                   "findings_floors": inside, "findings_cost_weighted": priced,
                                                   "prices_file": args.prices, "commands": commands}), indent=1)
    text = seeds_markdown(found, commands)
    if priced is not None:
        text += ("\n## The same, cost-weighted\n\nEvery classifier, exact-posterior and log-density row priced at its "
                 f"measured cost in score-model calls (`{args.prices}`: {priced['prices']}); samplers without a chain "
                 "make score-model calls only.\n\n" + seeds_markdown(priced).split("\n", 2)[2])
    atomic_write(out / f"{stem}_seeds.md", lambda tmp: Path(tmp).write_text(text))
    fig = plot_seeds({stem: found})
    atomic_write(out / f"{stem}_seeds.png", lambda tmp: fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png"))
    plt.close(fig)
    result = {"seeds": args.seeds, "report": str(out / f"{stem}_seeds.md")}
    if args.recheck_seeds:
        fresh_docs = _recheck(args, out, stem, docs, found, floors)
        fresh = analyse_seeds(fresh_docs, floors)
        rows = recheck_verdicts(found, fresh)
        write_json(out / f"{stem}_recheck.json", _clean({"settings": settings | {"recheck_seeds": args.recheck_seeds},
                                                         "rows": rows, "fresh": fresh}), indent=1)
        lines = [f"# Verdicts re-checked on seeds {args.recheck_seeds[0]}-{args.recheck_seeds[-1]} ({stem})", "",
                 "The settings chosen on seeds " + ", ".join(map(str, args.seeds)) + " run again on seeds that took "
                 "no part in the choice; each verdict recomputed from them.", "",
                 "| integrator | comparison | status | found | fresh seeds |", "|---|---|---|---|---|"]
        lines += [f"| {r['integrator']} | {r['comparison']} | {r['status']} | {r['found']} | {r['fresh']} |"
                  for r in rows]
        atomic_write(out / f"{stem}_recheck.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
        result["recheck"] = {k: sum(r["status"] == k for r in rows) for k in ("holds", "weakened", "contradicted")}
    print(json.dumps(result))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="ring")
    p.add_argument("--learned", action="store_true", help="the ring's learned MLP denoiser instead of the exact one")
    p.add_argument("--seeds", type=seed_list, default=seed_list("0-7"), help="replicates, e.g. 0-7 (default)")
    p.add_argument("--recheck-seeds", type=seed_list, default=None,
                   help="fresh seeds on which the chosen settings are re-run and the verdicts re-checked")
    p.add_argument("--integrators", type=lambda v: [x.strip() for x in v.split(",") if x.strip()], default=None,
                   help="comma-separated integrators of the sweep (default: the paper's six), e.g. "
                        "dpmpp_2m,dpmpp_2m_sde,unipc,restart for the modern-solver sweep")
    p.add_argument("--out", default="runs/ladder_seeds")
    p.add_argument("--floor-repeats", type=int, default=metrics.EXACT_FLOOR_REPEATS)
    p.add_argument("--prices", default=None,
                   help="bench/results/ledger_costs/ledger_costs.json: add the cost-weighted analysis")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--fast", action="store_true", help="the ladder's small sweep (500 outputs per point)")
    p.add_argument("--report-only", action="store_true", help="refuse to run a missing replicate")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    args.func = _run
    return run_handler(args)  # a refused or bad run ends with one "error: ..." line and exit status 2


if __name__ == "__main__":
    raise SystemExit(main())
