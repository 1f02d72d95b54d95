"""The paper's regime on MNIST: DLG chains of 250 and 500 Gibbs steps, one output per step (issue 18, item 4).

    python bench/mnist_long_chains.py --seeds 0-2 --n 1000 --out bench/results/mnist_seeds

The MNIST sweep's chains give 16 outputs each; the paper's chains run 250-500 Gibbs steps, so their start (a 37-NFE
KAR2 run and 20 burn-in steps) is spread over many more outputs. Here ``--n`` outputs (1,000: 4 chains of 250 or 2
chains of 500 Gibbs steps; 2,000: 8 or 4) come one per Gibbs step (n_skip = 1), with this rung's other DLG settings
(ULA, absolute step eta = 1, classifier argmax) and 8 KAR1 steps as the denoising run. Per seed: the NFE per output
by the full ledger and by the paper's count, MNIST-FID with a 95% bootstrap interval (blocks of 50 consecutive
outputs of a chain resampled together, since consecutive outputs are one Langevin step apart), and how often the
digit (the feature net's class) changes between consecutive outputs of a chain. Against KAR1 from noise at the
sweep's best KAR1 point (10 steps; run here with the same seeds and n) the verdict is the mean FID difference with
its interval (:func:`dmcmc_edu.evaluation.uncertainty.difference_verdict`).

Every (setting, seed) is one file ``OUT/long/<name>.json`` (resumable; other settings are refused); writes
``OUT/mnist_long.{json,md}``.
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

from dmcmc_edu.cli.common import run_handler, seed_list  # noqa: E402
from dmcmc_edu.runs import RunRefused, atomic_write, refuse_other_settings, write_json  # noqa: E402

BLOCK = 50
"""Consecutive outputs of one chain resampled together by the bootstrap."""


def run_one(models, steps_per_chain: int, seed: int, settings: dict) -> dict:
    from dmcmc_edu.evaluation.mnist_fid import extract_features, fid_interval
    from dmcmc_edu.experiments.mnist import dlg_config, dlg_samples

    n = settings["n"]
    cfg = dlg_config(n, outputs_per_chain=steps_per_chain, integrator="kar1", steps=settings["denoise_steps"],
                     n_skip=1, seed=seed)
    t0 = time.time()
    x, res, info = dlg_samples(models["score"], models["classifier"], cfg, keep_trace=False)
    seconds = time.time() - t0
    x, chain = x[:n], res.chain[:n].cpu().numpy()
    feats = extract_features(models["feature_net"], x)
    digit = models["feature_net"].head(feats.float()).argmax(1).numpy()
    # outputs are ordered round by round (round r, chain c -> r * C + c): position within its chain = index // C
    n_chains = int(chain.max()) + 1
    step = np.arange(n) // n_chains
    order = np.lexsort((step, chain))
    same_chain = chain[order][1:] == chain[order][:-1]
    changes = float(np.mean(digit[order][1:][same_chain] != digit[order][:-1][same_chain]))
    groups = chain * 10_000 + step // BLOCK
    fid = fid_interval(feats.numpy(), models["reference"], groups=groups, seed=seed)
    return {"steps_per_chain": steps_per_chain, "n_chains": n_chains, "seed": seed, "nfe": info["nfe"],
            "nfe_paper": info["nfe_paper"], "parts": info["parts"], "fid": fid, "digit_change_rate": changes,
            "seconds": round(seconds, 1), "settings": settings}


def run_baseline(models, seed: int, settings: dict) -> dict:
    """KAR1 from sigma_max at the sweep's best KAR1 step count, ``n`` samples: the comparison for the long chains."""
    from dmcmc_edu.evaluation.mnist_fid import extract_features, fid_interval
    from dmcmc_edu.experiments.mnist import vanilla_samples

    t0 = time.time()
    x, info = vanilla_samples(models["score"], settings["n"], integrator="kar1", steps=settings["baseline_steps"],
                              seed=seed, batch_size=500)
    seconds = time.time() - t0
    fid = fid_interval(extract_features(models["feature_net"], x).numpy(), models["reference"], seed=seed)
    return {"kar1_steps": settings["baseline_steps"], "seed": seed, "nfe": info["nfe"], "fid": fid,
            "seconds": round(seconds, 1), "settings": settings}


def _run(args) -> int:
    from dmcmc_edu.evaluation.uncertainty import difference_verdict
    from dmcmc_edu.experiments.mnist import load_shipped_models

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    settings = {"n": args.n, "denoise_steps": 8, "n_skip": 1, "block": BLOCK, "baseline_steps": args.baseline_steps}
    refuse_other_settings(out / "mnist_long.json", settings | {"seeds": args.seeds, "lengths": args.lengths},
                          extendable=("seeds", "lengths"))  # more seeds or chain lengths may be added later
    (out / "long").mkdir(parents=True, exist_ok=True)
    models = None
    rows = []
    for length in args.lengths:
        for seed in args.seeds:
            path = out / "long" / f"dlg-long{length}__kar1__seed{seed}.json"
            if path.exists():
                saved = json.loads(path.read_text())
                if saved.get("settings") != settings:
                    raise RunRefused(f"{path}: made with other settings; use another --out")
                rows.append(saved)
                continue
            models = models or load_shipped_models(str(ROOT / "dmcmc_edu" / "weights"))
            r = run_one(models, length, seed, settings)
            write_json(path, r, indent=1)
            rows.append(r)
            print(f"chains of {length}: seed {seed}  NFE {r['nfe']:.2f} (paper {r['nfe_paper']:.1f})  FID "
                  f"{r['fid']['fid']:.2f} ({r['fid']['low']:.2f}-{r['fid']['high']:.2f})  digit changes "
                  f"{r['digit_change_rate']:.3f}  {r['seconds']:.0f} s", flush=True)
    base = {}
    for seed in args.seeds:  # KAR1 from noise, the same seeds and n
        path = out / "long" / f"vanilla__kar1__{args.baseline_steps}__seed{seed}.json"
        if path.exists() and json.loads(path.read_text()).get("settings") == settings:
            base[seed] = json.loads(path.read_text())
            continue
        if path.exists():
            raise RunRefused(f"{path}: made with other settings; use another --out")
        models = models or load_shipped_models(str(ROOT / "dmcmc_edu" / "weights"))
        base[seed] = run_baseline(models, seed, settings)
        write_json(path, base[seed], indent=1)
        print(f"KAR1 from noise, {args.baseline_steps} steps: seed {seed}  NFE {base[seed]['nfe']:.0f}  FID "
              f"{base[seed]['fid']['fid']:.2f}", flush=True)
    noise = base
    lines = [f"# MNIST, the paper's regime: DLG chains of {' and '.join(map(str, args.lengths))} Gibbs steps", "",
             f"{args.n} outputs per run, one per Gibbs step, KAR1 (8 steps) as the denoising run; MNIST-FID with its "
             f"95% bootstrap interval (blocks of {BLOCK} consecutive outputs of a chain); seeds "
             f"{', '.join(map(str, args.seeds))}.", "",
             "| chain length | chains | NFE per output (full) | paper's count | MNIST-FID per seed (95% CI) | "
             "digit changes between consecutive outputs |", "|---|---|---|---|---|---|"]
    summary = {}
    for length in args.lengths:
        rs = [r for r in rows if r["steps_per_chain"] == length]
        lines.append(f"| {length} | {rs[0]['n_chains']} | {np.mean([r['nfe'] for r in rs]):.2f} | "
                     f"{np.mean([r['nfe_paper'] for r in rs]):.1f} | "
                     + "; ".join(f"{r['fid']['fid']:.1f} ({r['fid']['low']:.1f}-{r['fid']['high']:.1f})" for r in rs)
                     + f" | {np.mean([r['digit_change_rate'] for r in rs]):.3f} |")
        entry = {"nfe": float(np.mean([r["nfe"] for r in rs])), "fids": [r["fid"]["fid"] for r in rs],
                 "digit_change_rate": float(np.mean([r["digit_change_rate"] for r in rs]))}
        nz = [noise[s] for s in args.seeds]
        v = difference_verdict([r["fid"]["fid"] for r in rs], [p["fid"]["fid"] for p in nz],
                               [r["fid"]["replicates"] for r in rs], [p["fid"]["replicates"] for p in nz],
                               f"DLG chains of {length} ({entry['nfe']:.1f} NFE)",
                               f"KAR1 from noise ({nz[0]['nfe']:.0f} NFE)", what="MNIST-FID")
        entry |= {"verdict": v.to_dict(), "sentence": v.sentence()}
        summary[str(length)] = entry
    lines += ["", "## Against KAR1 from noise", ""]
    nz = [noise[s] for s in args.seeds]
    lines += [f"KAR1 from noise, {args.baseline_steps} steps ({nz[0]['nfe']:.0f} NFE; the sweep's best KAR1 point), "
              "MNIST-FID per seed: " + "; ".join(f"{p['fid']['fid']:.1f} ({p['fid']['low']:.1f}-{p['fid']['high']:.1f})"
                                                 for p in nz), ""]
    lines += [f"* {e['sentence']}" for e in summary.values()]
    seconds = sum(r["seconds"] for r in rows)
    lines += ["", f"Sampling time: {seconds / 60:.0f} min in all (one torch thread, shared 2-core CPU)."]
    write_json(out / "mnist_long.json", {"settings": settings | {"seeds": args.seeds, "lengths": args.lengths},
                                         "summary": summary, "rows": [{k: v for k, v in r.items() if k != "fid"}
                                                                      | {"fid": {k: v for k, v in r["fid"].items()
                                                                                 if k != "replicates"}}
                                                                      for r in rows]}, indent=1)
    text = "\n".join(lines) + "\n"
    atomic_write(out / "mnist_long.md", lambda tmp: Path(tmp).write_text(text))
    print(text)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=seed_list, default=seed_list("0-2"))
    p.add_argument("--lengths", type=lambda v: [int(x) for x in v.split(",")], default=[250, 500])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--baseline-steps", type=int, default=10,
                   help="KAR1 steps of the comparison from noise (10: the 2,000-sample sweep's best KAR1 point)")
    p.add_argument("--out", default="runs/mnist_seeds")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    args.func = _run
    return run_handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
