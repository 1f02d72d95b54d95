"""The smallest-sigma pick: the authors' rule against the toolkit's block rule, on the ring and on MNIST.

The authors' code starts each block's running minimum from the state *before* the block (``pick="authors"``):
a chain whose sigma rose during the block hands the previous block's last state to the integrator again.  The
toolkit's default (``pick="block"``) picks among the block's new states only.  For each target, n_skip and rule
this script writes: the fraction of outputs denoised from the same state as the chain's previous output, the
median chosen sigma, and the quality (ring: W2 to exact samples and mode-weight TV, with their noise floors;
MNIST: MNIST-FID).  The ring uses the paper's argmax sigma-update (an exact-posterior "classifier") and ULA; MNIST
the shipped models with ``dmcmc_edu.experiments.mnist.DLG_DEFAULTS``.

  python bench/pick_rule.py --out bench/results/pick_rule   # ~10 minutes on 2 idle CPU threads; resumable (points/)
  python bench/pick_rule.py --out bench/results/pick_rule --plot-only

Output (``--out``; default: a new folder ``runs/pick_rule-<UTC time>``): ``points/*.json``, ``results.json`` and
``pick_rule.png``.  ``--out DIR`` resumes that folder (the points already there are kept), so the committed results
(``bench/results/pick_rule``) are rewritten only when named; ``--plot-only`` needs ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler  # noqa: E402
from dmcmc_edu.evaluation import metrics  # noqa: E402
from dmcmc_edu.evaluation.mnist_fid import mnist_fid  # noqa: E402
from dmcmc_edu.experiments.mnist import dlg_config, dlg_samples, load_shipped_models  # noqa: E402
from dmcmc_edu.runs import fresh_folder, versions, write_json  # noqa: E402
from dmcmc_edu.targets import ExactLevelClassifier, ring  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RULES = ("authors", "block")


def repeat_fraction(chosen_sigma: torch.Tensor, outputs: torch.Tensor, n_chains: int) -> float:
    """Fraction of outputs (after each chain's first) equal to the same chain's previous output."""
    rounds = outputs.shape[0] // n_chains
    out = outputs[: rounds * n_chains].reshape(rounds, n_chains, -1)
    same = (out[1:] == out[:-1]).all(dim=2)
    return float(same.double().mean()) if rounds > 1 else 0.0


def ring_point(rule: str, n_skip: int, n: int, seed: int) -> dict:
    mix = ring()
    cfg = DMCMCConfig(sigma_min=mix.default_sigma_min(), sigma_max=mix.default_sigma_max(), n_levels=1000,
                      eta=0.01, n_skip=n_skip, integrator="kar1", steps=4, sigma_update="classifier-argmax",
                      n_chains=n // 4, outputs_per_chain=4, pick=rule, seed=seed, final_tweedie="always")
    t0 = time.time()
    res = DMCMCSampler(mix, cfg, data_shape=(2,), classifier=ExactLevelClassifier(mix, cfg.grid())).run()
    g = torch.Generator().manual_seed(seed + 1)
    return {"target": "ring", "rule": rule, "n_skip": n_skip, "n": n,
            "repeat_fraction": repeat_fraction(res.chosen_sigma, res.samples, cfg.n_chains),
            "median_chosen_sigma": float(res.chosen_sigma.median()),
            "w2": metrics.w2(res.samples, mix.sample(n, g)), "mode_tv": metrics.mode_weight_tv(mix, res.samples),
            "nfe_full": res.ledger.per_output()["full"], "seconds": time.time() - t0}


def mnist_point(models, rule: str, n_skip: int, n: int, seed: int) -> dict:
    cfg = dlg_config(n, n_skip=n_skip, pick=rule, seed=seed)
    t0 = time.time()
    with torch.no_grad():
        images, res, info = dlg_samples(models["score"], models["classifier"], cfg)
    return {"target": "mnist", "rule": rule, "n_skip": n_skip, "n": n,
            "repeat_fraction": repeat_fraction(res.chosen_sigma, images.reshape(images.shape[0], -1), cfg.n_chains),
            "median_chosen_sigma": float(res.chosen_sigma.median()),
            "mnist_fid": mnist_fid(images, models["feature_net"], models["reference"]),
            "nfe_full": info["nfe"], "seconds": time.time() - t0}


def floors(n: int, seed: int) -> dict:
    mix, g = ring(), torch.Generator().manual_seed(seed + 2)
    a, b = mix.sample(n, g), mix.sample(n, g)
    return {"ring_w2_floor": metrics.w2(a, b), "ring_mode_tv_floor": metrics.mode_weight_tv(mix, a)}


def plot(doc: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (target, metric, label) in zip(axes, [("ring", "w2", "ring: W2 to exact samples"),
                                                 ("mnist", "mnist_fid", "MNIST-FID"),
                                                 (None, "repeat_fraction", "outputs repeating the chain's last")]):
        for rule, marker in zip(RULES, ("o", "s")):
            for tgt, ls in (("ring", "-"), ("mnist", "--")):
                if target not in (None, tgt):
                    continue
                pts = sorted((p for p in doc["points"] if p["rule"] == rule and p["target"] == tgt),
                             key=lambda p: p["n_skip"])
                ax.plot([p["n_skip"] for p in pts], [p[metric] for p in pts], marker=marker, ls=ls,
                        label=f"{tgt}, pick={rule}" if target is None else f"pick={rule}")
        if metric == "w2":
            ax.axhline(doc["floors"]["ring_w2_floor"], color="grey", lw=1, label="exact-sample floor")
        ax.set_xscale("log")
        ax.set_xlabel("n_skip (Gibbs steps per output)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("Smallest-sigma pick: the authors' rule vs the block rule")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None,
                   help="the folder to start or resume (default: a new folder runs/pick_rule-<UTC time>)")
    p.add_argument("--n-ring", type=int, default=1000)
    p.add_argument("--n-mnist", type=int, default=256)
    p.add_argument("--n-skip", default="1,10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--plot-only", action="store_true", help="only redraw --out's results.json (needs --out)")
    return p


def out_folder(args) -> Path:
    """``--out``, or a new folder ``runs/pick_rule-<UTC time>`` (committed results are written only when named)."""
    return Path(args.out) if args.out else fresh_folder("pick_rule")


def main(argv=None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    if args.plot_only and not args.out:
        p.error("--plot-only needs --out DIR, the folder whose results.json to draw")
    out = out_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        torch.set_num_threads(args.threads)
        skips = [int(v) for v in args.n_skip.split(",")]
        models = load_shipped_models()
        jobs = [(target, rule, k) for target in ("ring", "mnist") for k in skips for rule in RULES]
        points = []
        for target, rule, k in jobs:  # one file per point: an interrupted run resumes
            path = out / "points" / f"{target}_{rule}_nskip{k}.json"
            if not path.exists():
                path.parent.mkdir(exist_ok=True)
                point = (ring_point(rule, k, args.n_ring, args.seed) if target == "ring"
                         else mnist_point(models, rule, k, args.n_mnist, args.seed))
                write_json(path, point)
            points.append(json.loads(path.read_text()))
        doc = {"command": "python bench/pick_rule.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                   vars(args).items() if k not in ("out", "plot_only")),
               "floors": floors(args.n_ring, args.seed), "points": points, "versions": versions()}
        write_json(out / "results.json", doc)
    doc = json.loads((out / "results.json").read_text())
    plot(doc, out / "pick_rule.png")
    for p_ in doc["points"]:
        q = p_.get("w2", p_.get("mnist_fid"))
        print(f"{p_['target']:5s} n_skip {p_['n_skip']:3d} pick={p_['rule']:7s} repeats {p_['repeat_fraction']:.3f} "
              f"median sigma {p_['median_chosen_sigma']:.3g} quality {q:.3f} full NFE {p_['nfe_full']:.1f}")


if __name__ == "__main__":
    main()
