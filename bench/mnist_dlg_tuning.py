"""MNIST: which DLG settings make outputs cheap *and* diverse?  A sweep of eta x n_skip x outputs per chain.

The fast MNIST ladder (bench/results/mnist) showed the crux: with the paper's
n_skip = 1 and eta = 0.01, consecutive outputs of a chain are near copies
(MNIST-FID 130-170 with 4 outputs per chain against ~33 with one), so the
initialisation and burn-in cannot be amortised and DLG costs ~85 NFE per
output by the full ledger.  This script measures, for the denoising
integrator KAR1 (``--steps``), each combination of

* ``eta``       -- the absolute Langevin step (paper: 0.5 CIFAR10 burn-in, 0.8 CelebA-HQ);
* ``n_skip``    -- Gibbs steps per output;
* ``outputs per chain`` -- how many outputs share one initialisation and burn-in;

and writes, per point: MNIST-FID of ``--n`` outputs, the full and the paper's
NFE per output, and two decorrelation figures of *consecutive outputs of one
chain*: the class-switch rate (the MNIST feature net's predicted digit
differs; independent samples: ~0.9) and the feature-distance ratio (mean
feature distance of consecutive outputs over that of random pairs of outputs;
independent: ~1).  Vanilla KAR1 from noise at the same ``n`` is the baseline.

  python bench/mnist_dlg_tuning.py                    # CPU, ~15 minutes on 2 threads
  python bench/mnist_dlg_tuning.py --plot-only --out bench/results/mnist_tuning   # redraw into runs/

Output (``--out``; default: a new folder ``runs/mnist_dlg_tuning-<UTC time>``):
``points/*.json`` (resumable: ``--out DIR`` resumes that folder), ``results.json``,
``tuning.png``.  ``--plot-only --out DIR`` draws DIR's results.json into
``--figure`` (default: a new file under runs/) and writes nothing into DIR, so
the committed folders under bench/results are read, never rewritten.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from dmcmc_edu.runs import fresh_folder, plot_only_paths  # noqa: F401  (fresh_folder: also the tests' handle)

ROOT = Path(__file__).resolve().parents[1]


def _name(kind, **kw) -> str:
    return kind + "".join(f"__{k}{v:g}" for k, v in kw.items())


@torch.no_grad()
def chain_decorrelation(images: torch.Tensor, chain: torch.Tensor, n_chains: int, feature_net) -> dict:
    """Class-switch rate and feature-distance ratio of consecutive outputs of each chain.

    ``images`` are ordered round by round (round r, chain c -> r * C + c), as
    :class:`~dmcmc_edu.core.sampler.DMCMCResult` returns them.
    """
    from dmcmc_edu.evaluation.mnist_fid import extract_features

    n = images.shape[0] - images.shape[0] % n_chains
    rounds = n // n_chains
    if rounds < 2:
        return {"class_switch_rate": None, "feature_distance_ratio": None}
    assert bool((chain[:n].reshape(rounds, n_chains) == torch.arange(n_chains)).all()), "unexpected output order"
    feats = extract_features(feature_net, images[:n]).reshape(rounds, n_chains, -1)
    labels = feature_net.head(feats.float()).argmax(-1) if hasattr(feature_net, "head") else None
    consecutive = (feats[1:] - feats[:-1]).norm(dim=-1).mean()
    flat = feats.reshape(n, -1)
    g = torch.Generator().manual_seed(0)
    i, j = torch.randint(0, n, (4096,), generator=g), torch.randint(0, n, (4096,), generator=g)
    keep = i != j
    random_pairs = (flat[i[keep]] - flat[j[keep]]).norm(dim=-1).mean()
    out = {"feature_distance_ratio": float(consecutive / random_pairs)}
    if labels is not None:
        out["class_switch_rate"] = float((labels[1:] != labels[:-1]).double().mean())
    return out



def tuning_figure(results: dict):
    """The figure ``tuning.png`` of a ``results.json``."""
    from dmcmc_edu.experiments.mnist import plot_dlg_tuning

    return plot_dlg_tuning(results["points"], floor=results["real_data_fid_floor"],
                           title=f"MNIST DLG settings (KAR1, n={results['common']['n']} per point)")


def _plot_only(args) -> int:
    """``--plot-only``: draw ``--out``'s results.json into ``--figure`` (a new file); ``--out`` is only read."""
    try:
        results_path, figure = plot_only_paths(args.out, args.figure, "mnist_dlg_tuning")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    results = json.loads(results_path.read_text())
    figure.parent.mkdir(parents=True, exist_ok=True)
    tuning_figure(results).savefig(figure, dpi=110, bbox_inches="tight")
    print(f"{len(results['points'])} points of {results_path} -> {figure}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=512, help="outputs per point")
    p.add_argument("--steps", type=int, default=3, help="KAR1 steps of the denoising run")
    p.add_argument("--etas", default="0.01,0.05,0.2,0.5")
    p.add_argument("--n-skips", default="1,3,10")
    p.add_argument("--per-chain", default="16", help="outputs per chain (comma list)")
    p.add_argument("--vanilla-steps", default="3,5,10,18")
    p.add_argument("--sigma-update", default="classifier-argmax")
    p.add_argument("--out", default=None,
                   help="the run folder to start or resume (default: a new runs/mnist_dlg_tuning-<UTC time>)")
    p.add_argument("--figure", default=None,
                   help="--plot-only: the PNG to write (default: a new runs/mnist_dlg_tuning-<UTC time>.png)")
    p.add_argument("--weights", default=str(ROOT / "dmcmc_edu" / "weights"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--plot-only", action="store_true",
                   help="only draw --out's results.json into --figure (nothing is written into --out)")
    args = p.parse_args(argv)
    if args.plot_only:
        return _plot_only(args)
    torch.set_num_threads(args.threads)

    from dmcmc_edu.evaluation.mnist_fid import mnist_fid, real_data_fid
    from dmcmc_edu.experiments.mnist import dlg_config, dlg_samples, load_shipped_models, vanilla_samples

    out = Path(args.out) if args.out else fresh_folder("mnist_dlg_tuning")
    (out / "points").mkdir(parents=True, exist_ok=True)
    models = load_shipped_models(args.weights, device=args.device)
    fnet = models["feature_net"]
    common = {"n": args.n, "seed": args.seed, "sigma_update": args.sigma_update}

    todo = [("vanilla", {"steps": s}) for s in map(int, args.vanilla_steps.split(","))]
    todo += [("dlg", {"eta": e, "nskip": k, "perchain": c, "steps": args.steps})
             for c in map(int, args.per_chain.split(",")) for k in map(int, args.n_skips.split(","))
             for e in map(float, args.etas.split(","))]
    for kind, kw in todo:
        path = out / "points" / (_name(kind, **kw) + ("" if kind == "vanilla" else "_" + args.sigma_update) + ".json")
        if path.exists() and json.loads(path.read_text()).get("common") == common:
            continue
        t0 = time.time()
        if kind == "vanilla":
            x, info = vanilla_samples(models["score"], args.n, integrator="kar1", steps=kw["steps"], seed=args.seed,
                                      batch_size=256, device=args.device)
            extra = {}
        else:
            cfg = dlg_config(args.n, outputs_per_chain=kw["perchain"], integrator="kar1", steps=kw["steps"],
                             eta=kw["eta"], n_skip=kw["nskip"], sigma_update=args.sigma_update, seed=args.seed)
            x, res, info = dlg_samples(models["score"], models["classifier"], cfg, device=args.device,
                                       keep_trace=False)
            extra = chain_decorrelation(x, res.chain.cpu(), cfg.n_chains, fnet)
            info = {k: v for k, v in info.items() if k != "parts"} | {"parts": info["parts"]}
        rec = {"kind": kind, **kw, "fid": mnist_fid(x[: args.n], fnet, models["reference"]), **info, **extra,
               "seconds": round(time.time() - t0, 1), "common": common}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=1, default=float))
        tmp.replace(path)
        print(f"{path.stem:55s} NFE full {rec['nfe']:6.1f}" + (f" paper {rec['nfe_paper']:5.1f}" if kind == "dlg"
              else " " * 11) + f" FID {rec['fid']:7.2f}" + (f" switch {rec.get('class_switch_rate') or 0:.2f} "
              f"dist {rec.get('feature_distance_ratio') or 0:.2f} sigma {rec['chosen_sigma_median']:.2f}"
              if kind == "dlg" else "") + f" ({rec['seconds']:.0f} s)", flush=True)

    points = [json.loads(f.read_text()) for f in sorted((out / "points").glob("*.json"))]
    points = [q for q in points if q.get("common") == common]
    floor_path = out / f"real_floor_n{args.n}.json"
    if not floor_path.exists():
        floor_path.write_text(json.dumps({"n": args.n, "fid": real_data_fid(args.n, seed=args.seed,
                                          feature_net=fnet, reference=models["reference"])}))
    floor = json.loads(floor_path.read_text())["fid"]
    results = {"what": "MNIST DLG tuning: MNIST-FID, full/paper NFE per output, within-chain decorrelation",
               "common": common, "real_data_fid_floor": floor, "versions": {"python": platform.python_version(),
                                                                            "torch": torch.__version__},
               "points": points}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    import matplotlib

    matplotlib.use("Agg")
    tuning_figure(results).savefig(out / "tuning.png", dpi=110, bbox_inches="tight")
    print(f"{len(points)} points -> {out / 'results.json'}, {out / 'tuning.png'}; real-data floor FID {floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
