"""MNIST verdicts with intervals (issue 18, item 5): the points that decide a verdict, over seeds, with FID intervals.

    python bench/mnist_seeds.py --integrators pf_euler,rk45,kar1 --seeds 0-2 --n 1000 --out bench/results/mnist_seeds
    python bench/mnist_seeds.py --integrators kar1,kar2,pf_euler,rk45,reverse_diffusion,euler_maruyama --seeds 0-2

The MNIST rung (``bench/results/mnist_n2000``, 2,000 samples per point, one seed) compares, per integrator, its best
point from noise (the lowest MNIST-FID of the sweep) with its best point with DLG.  This script runs exactly those
points again at every seed of ``--seeds`` (at the sweep's n, seed 0 repeats the stored run; with a smaller ``--n``
every set is new and the FIDs sit higher than the sweep's, since FID is biased upwards at small n: compare the arms
of one run of this script with each other, not with the sweep), keeps the samples' features, and computes:

* per point and seed the MNIST-FID with its 95% bootstrap interval over the samples
  (:func:`dmcmc_edu.evaluation.mnist_fid.fid_interval`; DLG's outputs are resampled chain by chain, since the 16
  outputs of a chain are correlated);
* per integrator the verdict DLG vs from noise (:func:`dmcmc_edu.evaluation.uncertainty.difference_verdict`): the
  mean FID difference over the seeds with its interval, or "no measurable difference" where it holds 0.  The NFE
  of both points is stated beside it (per output, the full ledger for DLG).

Every (point, seed) is one file in ``OUT/points`` (resumable; a file made with other settings is refused), the
features in ``OUT/features`` (not committed).  Writes ``OUT/mnist_seeds.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dmcmc_edu.cli.common import run_handler, seed_list  # noqa: E402
from dmcmc_edu.runs import RunRefused, atomic_write, refuse_other_settings, write_json  # noqa: E402

LABELS = {"vanilla": "from noise", "dlg-argmax": "DLG"}
ARM_LABELS = {**LABELS, "vanilla-at-dlg-cost": "from noise, at DLG's cost"}


def _shown_path(path) -> str:
    """``path`` relative to the repository when it lies inside it (so a clone elsewhere records the same settings)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def decisive_points(results: dict, integrators: list[str]) -> list[dict]:
    """Per integrator, the stored points that decide its verdicts, each with its ``arm``:

    * ``vanilla`` / ``dlg-argmax``: the point from noise and the point with DLG with the lowest MNIST-FID;
    * ``vanilla-at-dlg-cost``: the cheapest point from noise that costs at least as many NFE as that DLG point (the
      sweep's resolution: DLG is better *at its cost* only if it beats this one), when it is not the best already.
    """
    best = {}
    for p in results["points"]:
        key = (p["integrator"], p["variant"])
        if p["integrator"] not in integrators or p["variant"] not in LABELS:
            continue
        if key not in best or p["fid"] < best[key]["fid"]:
            best[key] = p
    missing = [(i, v) for i in integrators for v in LABELS if (i, v) not in best]
    if missing:
        raise ValueError(f"no stored point for {missing} in the sweep's results.json")
    out = []
    for i in integrators:
        out += [dict(best[(i, v)], arm=v) for v in LABELS]
        dlg_nfe = best[(i, "dlg-argmax")]["nfe"]
        dearer = [p for p in results["points"] if p["integrator"] == i and p["variant"] == "vanilla"
                  and p["nfe"] >= dlg_nfe]
        if dearer:
            at = min(dearer, key=lambda p: p["nfe"])
            if at["setting"] != best[(i, "vanilla")]["setting"]:
                out.append(dict(at, arm="vanilla-at-dlg-cost"))
    return out


def _name(p: dict, seed: int) -> str:
    return f"{p['variant']}__{p['integrator']}__{p['setting']}__seed{seed}"


def run_one(models, p: dict, seed: int, settings: dict, feat_dir: Path) -> dict:
    """Sample one point at one seed with the sweep's settings; its FID with the bootstrap interval."""
    from mnist_ladder import _options

    from dmcmc_edu.evaluation.mnist_fid import extract_features, fid_interval
    from dmcmc_edu.experiments.mnist import dlg_config, dlg_samples, vanilla_samples

    steps, opts = _options(p["integrator"], p["setting"])
    n = settings["n"]
    t0 = time.time()
    groups = None
    if p["variant"] == "vanilla":
        x, info = vanilla_samples(models["score"], n, integrator=p["integrator"], steps=steps, seed=seed,
                                  batch_size=500, **opts)
    else:
        cfg = dlg_config(n, outputs_per_chain=settings["outputs_per_chain"], integrator=p["integrator"], steps=steps,
                         sigma_update="classifier-argmax", eta=settings["eta"], n_skip=settings["n_skip"], seed=seed)
        x, res, info = dlg_samples(models["score"], models["classifier"], cfg, keep_trace=False,
                                   integrator_options=opts)
        x, groups = x[:n], res.chain[:n].cpu().numpy()
    seconds = time.time() - t0
    feats = extract_features(models["feature_net"], x).numpy()
    np.savez_compressed(feat_dir / f"{_name(p, seed)}.npz", features=feats.astype(np.float32),
                        groups=np.arange(n) if groups is None else groups)
    fid = fid_interval(feats, models["reference"], groups=groups, seed=seed)
    keep = {k: info[k] for k in ("nfe", "nfe_paper", "nfe_score_evals", "parts") if k in info}
    return {"variant": p["variant"], "integrator": p["integrator"], "setting": p["setting"], "seed": seed,
            "fid": fid, "nfe": info["nfe"], **keep, "seconds": round(seconds, 1), "settings": settings}


def analyse(points: list[dict], decisive: list[dict], seeds: list[int]) -> dict:
    """Per integrator: both points over the seeds and the verdict DLG vs from noise."""
    from dmcmc_edu.evaluation.uncertainty import difference_verdict

    out = {}
    for integ in dict.fromkeys(p["integrator"] for p in decisive):
        arms = {}
        for d in (q for q in decisive if q["integrator"] == integ):
            runs = sorted((q for q in points if (q["integrator"], q["variant"], q["setting"]) ==
                           (integ, d["variant"], d["setting"]) and q["seed"] in seeds), key=lambda q: q["seed"])
            arms[d["arm"]] = {"setting": d["setting"], "nfe": float(np.mean([r["nfe"] for r in runs])),
                                  "stored_seed0_fid": d["fid"], "seeds": [r["seed"] for r in runs],
                                  "fid": [r["fid"]["fid"] for r in runs],
                                  "interval": [[r["fid"]["low"], r["fid"]["high"]] for r in runs],
                                  "replicates": [r["fid"]["replicates"] for r in runs]}
        a, b = arms["dlg-argmax"], arms["vanilla"]
        if len(a["fid"]) < len(seeds) or len(b["fid"]) < len(seeds):
            continue
        v = difference_verdict(a["fid"], b["fid"], a["replicates"], b["replicates"],
                               f"DLG ({a['nfe']:.1f} NFE)", f"from noise ({b['nfe']:.0f} NFE)", what="MNIST-FID")
        out[integ] = {"arms": arms, "verdict": v.to_dict(), "sentence": v.sentence()}
        c = arms.get("vanilla-at-dlg-cost")
        if c is not None and len(c["fid"]) == len(seeds):
            vc = difference_verdict(a["fid"], c["fid"], a["replicates"], c["replicates"],
                                    f"DLG ({a['nfe']:.1f} NFE)", f"from noise at DLG's cost ({c['nfe']:.0f} NFE)",
                                    what="MNIST-FID")
            out[integ] |= {"verdict_at_cost": vc.to_dict(), "sentence_at_cost": vc.sentence()}
        elif c is not None:
            arms.pop("vanilla-at-dlg-cost")
        for arm in arms.values():
            arm.pop("replicates")
    return out


def markdown(found: dict, settings: dict, seeds: list[int], seconds: float) -> str:
    lines = [f"# MNIST verdicts over seeds (n = {settings['n']} per set, seeds {', '.join(map(str, seeds))})", "",
             "Per integrator, the sweep's best point from noise and its best point with DLG "
             "(`bench/results/mnist_n2000`), each re-run at every seed. MNIST-FID with its 95% bootstrap interval "
             "over the samples (DLG: whole chains resampled); the verdict is the mean FID difference over the "
             "seeds with its interval (`uncertainty.difference_verdict`).", "",
             f"| integrator | arm | NFE per output | MNIST-FID per seed (95% CI) | the sweep's FID (n = "
             f"{settings['sweep_n']}) |",
             "|---|---|---|---|---|"]
    for integ, e in found.items():
        for var, arm in e["arms"].items():
            cells = "; ".join(f"{f:.1f} ({lo:.1f}-{hi:.1f})" for f, (lo, hi) in zip(arm["fid"], arm["interval"]))
            lines.append(f"| {integ} | {ARM_LABELS[var]} ({arm['setting']}) | {arm['nfe']:.1f} | {cells} | "
                         f"{arm['stored_seed0_fid']:.1f} |")
    lines += ["", "## Verdicts", ""]
    for integ, e in found.items():
        lines.append(f"* **{integ}**, the best of each: {e['sentence']}")
        if "sentence_at_cost" in e:
            lines.append(f"* **{integ}**, DLG against the cheapest run from noise that costs at least as much: "
                         f"{e['sentence_at_cost']}")
    spread = []
    for integ, e in found.items():
        for var, arm in e["arms"].items():
            if len(arm["fid"]) > 1:
                half = float(np.mean([(hi - lo) / 2 for lo, hi in arm["interval"]]))
                spread.append(f"{integ} {ARM_LABELS[var]}: seed-to-seed SD {np.std(arm['fid'], ddof=1):.1f}, "
                              f"mean half-width of the bootstrap interval {half:.1f}")
    if spread:
        lines += ["", "How wide the intervals are against the seeds' own spread (a bootstrap over samples repeats "
                  "samples, which moves FID unevenly, so its interval can be wider than the spread of fresh sets):",
                  ""] + [f"* {x}" for x in spread]
    lines += ["", f"Sampling and scoring time: {seconds / 60:.0f} min in all (one torch thread, shared 2-core CPU)."]
    return "\n".join(lines) + "\n"


def plot(found: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(found)
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 3.2), squeeze=False)
    for ax, (integ, e) in zip(axes[0], found.items()):
        for j, (var, arm) in enumerate(e["arms"].items()):
            for i, (f, (lo, hi)) in enumerate(zip(arm["fid"], arm["interval"])):
                ax.errorbar(arm["nfe"] * (1 + 0.02 * (i - 1)), f, yerr=[[f - lo], [hi - f]], fmt="osd"[j],
                            color=f"C{j}", capsize=2, label=ARM_LABELS[var] if i == 0 else None)
        ax.set_title(f"{integ}\n{e['verdict']['outcome'].replace('_', ' ')}", fontsize=9)
        ax.set_xlabel("NFE per output (full ledger)")
        ax.set_ylabel("MNIST-FID")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _run(args) -> int:
    from dmcmc_edu.experiments.mnist import load_shipped_models

    torch.set_num_threads(args.threads)
    sweep = json.loads(Path(args.sweep).read_text())
    base = sweep["settings"]
    if args.n is not None and not 2 <= args.n <= base["n"]:
        raise ValueError(f"--n must lie in [2, {base['n']}] (the sweep's samples per point), got {args.n}")
    settings = {"n": args.n or base["n"], "sweep_n": base["n"], "eta": base["eta"], "n_skip": base["n_skip"],
                "outputs_per_chain": base["outputs_per_chain"], "weights": base["weights"],
                "sweep": _shown_path(args.sweep)}
    integrators = [s for s in args.integrators.split(",") if s]
    decisive = decisive_points(sweep, integrators)
    out = Path(args.out)
    refuse_other_settings(out / "mnist_seeds.json", settings | {"seeds": args.seeds, "integrators": integrators},
                          extendable=("seeds", "integrators"))  # more seeds or integrators may be added later
    (out / "points").mkdir(parents=True, exist_ok=True)
    (out / "features").mkdir(parents=True, exist_ok=True)
    models = load_shipped_models(str(ROOT / "dmcmc_edu" / "weights"))
    points = []
    for seed in args.seeds:
        for p in decisive:
            path = out / "points" / f"{_name(p, seed)}.json"
            if path.exists():
                saved = json.loads(path.read_text())
                if saved.get("settings") != settings:
                    raise RunRefused(f"{path}: made with other settings; use another --out")
                points.append(saved)
                continue
            r = run_one(models, p, seed, settings, out / "features")
            write_json(path, r, indent=1)
            points.append(r)
            print(f"{p['variant']:10s} {p['integrator']:18s} {p['setting']!s:6s} seed {seed}: NFE {r['nfe']:6.1f}  "
                  f"FID {r['fid']['fid']:6.2f} ({r['fid']['low']:.2f}-{r['fid']['high']:.2f})  {r['seconds']:.0f} s",
                  flush=True)
    found = analyse(points, decisive, args.seeds)
    seconds = sum(p["seconds"] for p in points)
    write_json(out / "mnist_seeds.json", {"settings": settings | {"seeds": args.seeds, "integrators": integrators},
                                          "findings": found, "run_seconds": seconds}, indent=1)
    text = markdown(found, settings, args.seeds, seconds)
    atomic_write(out / "mnist_seeds.md", lambda tmp: Path(tmp).write_text(text))
    fig = plot(found)
    atomic_write(out / "mnist_seeds.png", lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    print(text)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--integrators", default="pf_euler,rk45")
    p.add_argument("--seeds", type=seed_list, default=seed_list("0-2"))
    p.add_argument("--sweep", default=str(ROOT / "bench" / "results" / "mnist_n2000" / "results.json"),
                   help="the sweep whose best points are re-run")
    p.add_argument("--out", default="runs/mnist_seeds")
    p.add_argument("--n", type=int, default=None,
                   help="samples per set (default: the sweep's; fewer to fit a CPU budget: FID is biased upwards "
                        "at small n, so compare only within one run of this script)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    args.func = _run
    return run_handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
