"""MNIST ladder: MNIST-FID against NFE for the paper's six integrators, without and with DLG (paper Figure 3 style).

For each integrator of ``dmcmc_edu.core.integrators.PAPER_INTEGRATORS`` and each
setting of its sweep, three variants:

* ``vanilla``       -- ``sample_from_noise`` from sigma_max (NFE counted);
* ``dlg-argmax``    -- DMCMCSampler with the shipped noise-level classifier, the paper's argmax sigma-update;
* ``dlg-sample``    -- the same with a draw from the classifier's softmax;
* ``dlg-argmax-1pc`` -- argmax, but one output per chain (``--outputs-per-chain`` applies to the two above):
  independent outputs, each paying the whole initialisation and burn-in.

DLG points are placed on the x axis by the **full ledger** (Gibbs steps,
denoising integrator, Tweedie step, the chains' initialisation and burn-in
amortised over the outputs, and every classifier evaluation counted as one
NFE); the paper's accounting (no burn-in, no classifier) is stored too and
drawn as hollow markers.

Every point is one JSON file under ``OUT/points`` (resumable: existing points
are skipped; ``--max-minutes`` stops cleanly between points).  When run, the
script writes ``OUT/results.json`` (all points + settings + the shipped
weights' records + the FID floor of real images at the same n) and
``OUT/fid_vs_nfe.png``.  Without ``--out`` a run goes to a new folder
``runs/mnist_ladder-<UTC time>``; ``--out DIR`` resumes (or starts) that folder,
and a folder made with other settings is refused.  ``--plot-only --out DIR``
draws DIR's results.json into ``--figure`` (default: a new file under runs/)
and writes nothing into DIR: the committed folders under bench/results are
read, never rewritten, unless named with ``--out`` for a run.

  python bench/mnist_ladder.py --fast --eta 0.01 --n-skip 1 --outputs-per-chain 4   # 256 per point (CPU, ~35 min)
  python bench/mnist_ladder.py --plot-only --out bench/results/mnist   # redraw a committed figure into runs/
  python bench/mnist_ladder.py --sweep cpu --n 2000 --variants vanilla,dlg-argmax \
      --eta 1.0 --n-skip 10 --outputs-per-chain 16 --threads 2   # CPU, ~1.5 hours (bench/results/mnist_n2000)
  python bench/mnist_ladder.py --device cuda     # full: 5,000 samples per point, the long sweep
  python bench/mnist_ladder.py --sweep cpu --n 1000 --integrators dpmpp_2m,unipc --variants vanilla,dlg-argmax \
      --out bench/results/modern_solvers/mnist   # the new few-step solvers (MODERN_SWEEPS), CPU, ~25 min

MNIST-FID is not Inception FID (see dmcmc_edu.evaluation.mnist_fid); compare only within this file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

from dmcmc_edu.runs import fresh_folder, plot_only_paths  # noqa: F401  (fresh_folder: also the tests' handle)

ROOT = Path(__file__).resolve().parents[1]

# integrator -> (vanilla settings, DLG settings); a setting is steps, or rtol(=atol) for rk45
SWEEPS = {
    "fast": {
        "kar1": ([3, 5, 10, 18], [2, 3, 5]),
        "kar2": ([3, 5, 10, 18], [2, 3, 5]),
        "pf_euler": ([10, 20, 50], [3, 10]),
        "rk45": ([1e-2, 1e-3], [1e-2]),
        "reverse_diffusion": ([10, 20, 50], [3, 10]),
        "euler_maruyama": ([10, 20, 50], [3, 10]),
    },
    # CPU-sized: the fast vanilla sweep; DLG denoising steps for chains that sit at sigma ~ 1-3 (eta ~ 1)
    "cpu": {
        "kar1": ([3, 5, 10, 18], [3, 5, 8]),
        "kar2": ([3, 5, 10, 18], [3, 5, 8]),
        "pf_euler": ([10, 20, 50, 100], [5, 10, 20]),
        "rk45": ([1e-2, 1e-3], [1e-2]),
        "reverse_diffusion": ([10, 20, 50], [5, 10, 20]),
        "euler_maruyama": ([10, 20, 50], [5, 10, 20]),
    },
    "full": {
        "kar1": ([3, 5, 10, 18, 35], [2, 3, 5, 10]),
        "kar2": ([3, 5, 10, 18, 35, 100], [2, 3, 5, 10]),
        "pf_euler": ([10, 20, 50, 100, 200], [3, 5, 10, 20, 50]),
        "rk45": ([1e-2, 1e-3, 1e-4, 1e-5], [1e-2, 1e-3, 1e-5]),
        "reverse_diffusion": ([10, 20, 50, 100, 200, 500], [3, 5, 10, 20, 50]),
        "euler_maruyama": ([10, 20, 50, 100, 200, 500], [3, 5, 10, 20, 50]),
    },
}
# The few-step solvers of issue 13 (dmcmc_edu.solvers.MODERN_SOLVERS): steps = NFE for DPM++ 2M, 2M SDE and UniPC;
# Restart costs 2 * steps - 1 + 2 (its default restart interval).  DLG: their smallest denoising runs (the chains sit
# at sigma ~ 2.6 with the rung's defaults; bench/results/modern_solvers/mnist measures whether that suffices).
MODERN_SWEEPS = {
    "fast": {"dpmpp_2m": ([5, 10, 20], [2, 3]), "dpmpp_2m_sde": ([5, 10, 20], [2, 3]),
             "unipc": ([5, 10, 20], [2, 3]), "restart": ([3, 5, 10], [2, 3])},
    "cpu": {"dpmpp_2m": ([5, 10, 20], [2, 3]), "dpmpp_2m_sde": ([5, 10, 20], [2, 3]),
            "unipc": ([5, 10, 20], [2, 3]), "restart": ([3, 5, 10], [2, 3])},
    "full": {"dpmpp_2m": ([3, 5, 10, 20, 50], [2, 3, 5, 10]), "dpmpp_2m_sde": ([3, 5, 10, 20, 50], [2, 3, 5, 10]),
             "unipc": ([3, 5, 10, 20, 50], [2, 3, 5, 10]), "restart": ([3, 5, 10, 25], [2, 3, 5])},
}
PAPER_SIX = tuple(SWEEPS["fast"])  # the default --integrators (before the new solvers join the tables)
for _mode, _table in MODERN_SWEEPS.items():
    SWEEPS[_mode].update(_table)
VARIANTS = ("vanilla", "dlg-argmax", "dlg-sample", "dlg-argmax-1pc")
"""dlg-argmax-1pc: the argmax sigma-update with one output per chain (independent outputs, no amortisation)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _point_name(variant: str, integrator: str, setting) -> str:
    return f"{variant}__{integrator}__{setting:g}"


def _options(integrator: str, setting):
    """(steps, options) of an integrator for one sweep setting."""
    if integrator == "rk45":
        return 1, {"rtol": float(setting), "atol": float(setting)}
    return int(setting), {}


def run_point(models, variant, integrator, setting, args) -> dict:
    from dmcmc_edu.evaluation.mnist_fid import mnist_fid
    from dmcmc_edu.experiments.mnist import dlg_config, dlg_samples, vanilla_samples

    steps, opts = _options(integrator, setting)
    t0 = time.time()
    if variant == "vanilla":
        x, info = vanilla_samples(models["score"], args.n, integrator=integrator, steps=steps, seed=args.seed,
                                  batch_size=args.batch, device=args.device, **opts)
    else:
        per_chain = 1 if variant.endswith("-1pc") else args.outputs_per_chain
        cfg = dlg_config(args.n, outputs_per_chain=per_chain, integrator=integrator, steps=steps,
                         sigma_update="classifier-" + variant.split("-")[1], eta=args.eta, n_skip=args.n_skip,
                         seed=args.seed)
        x, _, info = dlg_samples(models["score"], models["classifier"], cfg, device=args.device, keep_trace=False,
                                 integrator_options=opts)
        info["config"] = cfg.to_dict()
        x = x[: args.n]
    fid = mnist_fid(x, models["feature_net"], models["reference"])
    return {"variant": variant, "integrator": integrator, "setting": setting, "steps": steps, **opts,
            "fid": fid, "seconds": round(time.time() - t0, 2), **info}


def markdown_table(points: list) -> str:
    """The points as a Markdown table: one row per integrator, one column per variant, entries FID@NFE.

    DLG entries are placed at the full ledger, with the paper's count in parentheses.
    """
    from dmcmc_edu.core.integrators import PAPER_INTEGRATORS

    variants = [v for v in VARIANTS if any(p["variant"] == v for p in points)]
    lines = ["| integrator | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    names = list(PAPER_INTEGRATORS) + sorted({p["integrator"] for p in points} - set(PAPER_INTEGRATORS))
    for name in names:
        cells = []
        for v in variants:
            pts = sorted((p for p in points if p["integrator"] == name and p["variant"] == v), key=lambda p: p["nfe"])
            cells.append(", ".join(f"{p['fid']:.1f}@{p['nfe']:.1f}" + (f" ({p['nfe_paper']:.0f})" if "nfe_paper" in p
                                                                       else "") for p in pts) or "--")
        if any(c != "--" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)



def ladder_panels(points: list, mode: str) -> list[str]:
    """The integrators to draw, each once: the paper's six first, then the other solvers in sweep order."""
    from dmcmc_edu.core.integrators import PAPER_INTEGRATORS

    present = {q["integrator"] for q in points}
    order = dict.fromkeys([*PAPER_INTEGRATORS, *SWEEPS[mode]])  # SWEEPS[mode] repeats the paper's six
    panels = [i for i in order if i in present]
    return panels + sorted(present - set(panels))


def ladder_figure(results: dict):
    """The figure ``fid_vs_nfe.png`` of a ``results.json`` (one panel per integrator)."""
    from dmcmc_edu.experiments.mnist import plot_ladder

    settings, points = results["settings"], results["points"]
    return plot_ladder(points, floor=results["real_data_fid_floor"],
                       title=f"MNIST-FID vs NFE ({settings['mode']}, n={settings['n']} per point)",
                       integrators=ladder_panels(points, settings["mode"]))


def _other_settings(out: Path, settings: dict) -> str | None:
    """Why ``out`` must not be written: it holds results or points made with other settings (None: it may)."""
    for f in [out / "results.json", *sorted((out / "points").glob("*.json"))]:
        saved = json.loads(f.read_text()).get("settings") if f.is_file() else settings
        if saved != settings:
            keys = sorted(k for k in set(saved or {}) | set(settings) if (saved or {}).get(k) != settings.get(k))
            return (f"{f} was made with other settings ({', '.join(keys)} differ); nothing was written -- choose "
                    "another --out, or re-run with the saved settings")
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="few hundred samples per point and a short sweep")
    p.add_argument("--sweep", choices=sorted(SWEEPS), default=None, help="default: fast with --fast, else full")
    p.add_argument("--n", type=int, default=None, help="samples per point (default: 256 fast, 5000 full)")
    p.add_argument("--out", default=None,
                   help="the run folder to start or resume (default: a new runs/mnist_ladder-<UTC time>)")
    p.add_argument("--figure", default=None,
                   help="--plot-only: the PNG to write (default: a new runs/mnist_ladder-<UTC time>.png)")
    p.add_argument("--weights", default=str(ROOT / "dmcmc_edu" / "weights"))
    p.add_argument("--integrators", default=",".join(PAPER_SIX),
                   help="comma-separated; the paper's six and the new solvers " + ",".join(MODERN_SWEEPS["fast"]))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--eta", type=float, default=None,
                   help="DLG Langevin step (default: dmcmc_edu.experiments.mnist.DLG_DEFAULTS)")
    p.add_argument("--n-skip", type=int, default=None, help="Gibbs steps per output (default: DLG_DEFAULTS)")
    p.add_argument("--outputs-per-chain", type=int, default=16, help="DLG: n / this = number of chains")
    p.add_argument("--batch", type=int, default=500, help="vanilla: samples per batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (cleanly, between points) after this")
    p.add_argument("--plot-only", action="store_true",
                   help="only draw --out's results.json into --figure (nothing is written into --out)")
    p.add_argument("--table", action="store_true", help="also print the points as a Markdown table")
    args = p.parse_args(argv)

    if args.plot_only:
        return _plot_only(args)

    from dmcmc_edu.evaluation.mnist_fid import real_data_fid
    from dmcmc_edu.experiments.mnist import DLG_DEFAULTS, load_shipped_models

    torch.set_num_threads(args.threads)
    mode = args.sweep or ("fast" if args.fast else "full")
    args.n = args.n or (256 if args.fast else 5000)
    args.eta = args.eta if args.eta is not None else DLG_DEFAULTS["eta"]
    args.n_skip = args.n_skip if args.n_skip is not None else DLG_DEFAULTS["n_skip"]
    out = Path(args.out) if args.out else fresh_folder("mnist_ladder")
    weights = {k: {"file": v, "sha256_16": _sha256(Path(args.weights) / v)}
               for k, v in {"score": "mnist_score_unet.pt", "classifier": "mnist_noise_classifier.pt",
                            "features": "mnist_feature_net.pt"}.items()}
    settings = {"mode": mode, "n": args.n, "eta": args.eta, "n_skip": args.n_skip,
                "outputs_per_chain": args.outputs_per_chain, "seed": args.seed, "device": args.device,
                "threads": args.threads, "weights": weights}
    refusal = _other_settings(out, settings)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    (out / "points").mkdir(parents=True, exist_ok=True)
    models = load_shipped_models(args.weights, device=args.device)

    t_start = time.time()
    todo = [(v, i, s) for i in args.integrators.split(",") for v in args.variants.split(",")
            for s in SWEEPS[mode][i][0 if v == "vanilla" else 1]]
    stopped = False
    for variant, integrator, setting in todo:
        path = out / "points" / (_point_name(variant, integrator, setting) + ".json")
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("settings") == settings:
                continue
        if args.max_minutes is not None and time.time() - t_start > 60 * args.max_minutes:
            stopped = True
            break
        res = run_point(models, variant, integrator, setting, args)
        res["settings"] = settings
        path.write_text(json.dumps(res, indent=1, default=float))
        print(f"{variant:11s} {integrator:18s} {setting:<8g} NFE full {res['nfe']:7.1f}"
              + (f" paper {res['nfe_paper']:6.1f}" if "nfe_paper" in res else " " * 13)
              + f"  FID {res['fid']:8.3f}  ({res['seconds']:.0f} s)", flush=True)

    points = [json.loads(f.read_text()) for f in sorted((out / "points").glob("*.json"))]
    points = [q for q in points if q.get("settings") == settings]
    floor_path = out / f"real_floor_n{args.n}.json"
    if floor_path.exists():
        floor = json.loads(floor_path.read_text())["fid"]
    else:
        floor = real_data_fid(args.n, seed=args.seed, feature_net=models["feature_net"],
                              reference=models["reference"])
        floor_path.write_text(json.dumps({"n": args.n, "fid": floor, "what": "n random training images"}))
    done = {(q["variant"], q["integrator"], q["setting"]) for q in points}
    complete = all(t in done for t in todo)
    results = {"what": "MNIST-FID (not Inception FID) vs NFE; x = full ledger for DLG", "settings": settings,
               "complete": complete, "real_data_fid_floor": floor,
               "weights_info": {k: models["info"][k] for k in models["info"]},
               "versions": {"python": platform.python_version(), "torch": torch.__version__},
               "points": points}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    import matplotlib

    matplotlib.use("Agg")
    fig = ladder_figure(results)
    fig.savefig(out / "fid_vs_nfe.png", dpi=110, bbox_inches="tight")
    if args.table:
        print(markdown_table(points))
    print(f"{len(points)} points ({'complete' if complete else 'incomplete'}{', stopped by budget' if stopped else ''})"
          f" -> {out / 'results.json'}, {out / 'fid_vs_nfe.png'}; real-data floor FID {floor:.3f}")
    return 0


def _plot_only(args) -> int:
    """``--plot-only``: draw ``--out``'s results.json into ``--figure`` (a new file); ``--out`` is only read."""
    try:
        results_path, figure = plot_only_paths(args.out, args.figure, "mnist_ladder")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    results = json.loads(results_path.read_text())
    if args.table:
        print(markdown_table(results["points"]))
    figure.parent.mkdir(parents=True, exist_ok=True)
    ladder_figure(results).savefig(figure, dpi=110, bbox_inches="tight")
    print(f"{len(results['points'])} points of {results_path} -> {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
