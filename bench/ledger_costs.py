"""Measured prices for the cost-weighted NFE ledger (issue 18, item 4): what an oracle row and a classifier row cost.

    nice -n 5 .venv/bin/python bench/ledger_costs.py [--out bench/results/ledger_costs] [--repeats 25] [--quick]

The ledger (:class:`dmcmc_edu.core.ledger.NFELedger`) counts rows; ``per_output(prices)`` weights them by a price,
the cost of one row in units of one row of the score model the run uses.  This script measures those prices on
the CPU, one torch thread, float64 chains as the samplers run them:

1. **Oracle rows** on the ``ring`` and the 64-d ``lowrank`` mixture, evaluated as the ladder does
   (:class:`~dmcmc_edu.targets.spectral.SpectralMixture`): one ``sigma_log_posterior`` call (the 200-level grid of
   the ladder) and one ``log_prob`` call against one call of the exact denoiser, on the same batch of 2000 noisy
   states.  On the ring also against the learned MLP denoiser (the learned ladder pairs it with the exact
   posterior), and the ladder's MLP classifiers against the exact denoiser.
2. **The noise-level classifier against the score model it serves**: the MNIST classifier against the MNIST U-Net
   (the shipped weights, batch 125 = the CPU sweep's chains, 2000 outputs / 16 per chain) and the ring's MLP
   classifier against the ring's learned MLP denoiser (``bench/results/toy``, batch 1000 = the ladder's chains at
   2 outputs per chain); FLOPs (``torch.utils.flop_counter.FlopCounterMode``: matrix products, convolutions and
   attention, not element-wise operations) and wall time.
3. **What the prices do to a ledger**: small counted DLG runs on both mixtures (the exact sigma-update with MALA
   and with ULA, and the paper's classifier argmax) and the stored MNIST DLG points (``bench/results/mnist_n2000``,
   counted parts), per output by "one call = one NFE" (``full``) and cost-weighted.

Wall times: each call is timed ``--repeats`` times, the calls interleaved in a random order in every repeat; a
price is the median over repeats of the per-repeat ratio (numerator / reference, both timed in the same repeat),
with its bootstrap interval (:func:`dmcmc_edu.evaluation.uncertainty.interval`).  Writes ``OUT/ledger_costs.json``
and ``OUT/ledger_costs.png``.  About 5 minutes on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from dmcmc_edu.core.ledger import NFELedger
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.datasets import WEIGHT_FILES, default_weights_dir
from dmcmc_edu.evaluation.uncertainty import interval
from dmcmc_edu.models.classifier import NoiseLevelClassifier
from dmcmc_edu.models.learned import FrozenDenoiser, load_denoiser
from dmcmc_edu.models.unet import load_score_model
from dmcmc_edu.runs import versions
from dmcmc_edu.targets import SpectralMixture, load_target

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "bench" / "results" / "toy"
MNIST_POINTS = ROOT / "bench" / "results" / "mnist_n2000" / "points"
MIN_SECONDS = 0.02  # each timing repeats a call until it lasts at least this long (timer resolution, jitter)
N_LEVELS = 200  # the ladder's grid


def _timed(fn, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


@torch.no_grad()
def time_interleaved(calls: dict, repeats: int, seed: int = 0) -> dict:
    """Seconds per call of each callable, ``repeats`` times, interleaved in a random order per repeat."""
    inner = {}
    for name, fn in calls.items():  # warm-up and calibration of the inner loop
        fn()
        inner[name] = max(1, math.ceil(MIN_SECONDS / max(_timed(fn, 1), 1e-9)))
    names = list(calls)
    times = {name: [] for name in names}
    g = torch.Generator().manual_seed(seed)
    for _ in range(repeats):
        for i in torch.randperm(len(names), generator=g).tolist():
            times[names[i]].append(_timed(calls[names[i]], inner[names[i]]))
    return {"seconds": times, "inner": inner}


def price(times: dict, numerator: str, reference: str) -> dict:
    """The per-repeat ratio numerator / reference: median with its bootstrap interval, and the median seconds."""
    ratios = [a / b for a, b in zip(times["seconds"][numerator], times["seconds"][reference])]
    return {"numerator": numerator, "reference": reference, "ratio": interval(ratios).to_dict(),
            "seconds_numerator": interval(times["seconds"][numerator]).to_dict(),
            "seconds_reference": interval(times["seconds"][reference]).to_dict()}


@torch.no_grad()
def flops(fn) -> int:
    """FLOPs of one call counted by :class:`FlopCounterMode` (matmul, conv, attention; not element-wise ops)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def noisy_states(mix, grid: torch.Tensor, batch: int, seed: int):
    """``batch`` chain-like states: exact samples plus noise at levels drawn uniformly from the grid's indices."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, grid.numel(), (batch,), generator=g)
    sigma = grid[idx].to(torch.float64)
    x = mix.sample(batch, g) + sigma[:, None] * torch.randn(batch, mix.d, generator=g, dtype=torch.float64)
    return x, sigma


def oracle_prices(target: str, repeats: int, batch: int) -> dict:
    """Part 1: the exact posterior, the log-density (and the ladder's nets) against one exact-denoiser call."""
    mix = load_target(target)
    exact = SpectralMixture(mix)
    grid = noise_level_grid(mix.default_sigma_min(), mix.default_sigma_max(), N_LEVELS)
    x, sigma = noisy_states(mix, grid, batch, seed=1)
    clf = NoiseLevelClassifier.load(TOY / f"{target}_classifier.pt").eval()
    calls = {"denoiser_exact": lambda: exact(x, sigma),
             "sigma_log_posterior": lambda: exact.sigma_log_posterior(x, grid),
             "log_prob": lambda: exact.log_prob(x, sigma),
             "classifier_mlp": lambda: clf.log_probs(x)}
    learned_path = TOY / f"{target}_denoiser.pt"
    if learned_path.exists():
        learned = FrozenDenoiser(load_denoiser(learned_path)[0])
        calls["denoiser_learned"] = lambda: learned(x, sigma)
    times = time_interleaved(calls, repeats, seed=2)
    out = {"target": target, "d": mix.d, "batch": batch, "n_levels": N_LEVELS, "evaluator": "SpectralMixture",
           "dtype": "float64", "inner_calls_per_timing": times["inner"],
           "prices": {"oracle_posterior": price(times, "sigma_log_posterior", "denoiser_exact"),
                      "oracle_log_prob": price(times, "log_prob", "denoiser_exact"),
                      "classifier": price(times, "classifier_mlp", "denoiser_exact")}}
    if "denoiser_learned" in calls:
        out["prices_vs_learned_denoiser"] = {
            "oracle_posterior": price(times, "sigma_log_posterior", "denoiser_learned"),
            "classifier": price(times, "classifier_mlp", "denoiser_learned")}
    return out


def net_price(name: str, score, classifier, x: torch.Tensor, sigma: torch.Tensor, repeats: int) -> dict:
    """Part 2: a classifier row against a score-model row: FLOPs (per row) and wall time on the same batch."""
    calls = {"score": lambda: score(x, sigma), "classifier": lambda: classifier.log_probs(x)}
    f_score, f_clf = flops(calls["score"]), flops(calls["classifier"])
    times = time_interleaved(calls, repeats, seed=3)
    return {"name": name, "batch": int(x.shape[0]), "input_dtype": str(x.dtype).replace("torch.", ""),
            "net_dtype": str(next(classifier.parameters()).dtype).replace("torch.", ""),
            "flops_per_row": {"score": f_score / x.shape[0], "classifier": f_clf / x.shape[0]},
            "flops_ratio": f_clf / f_score,
            "params": {"score": sum(p.numel() for p in _module(score).parameters()),
                       "classifier": sum(p.numel() for p in classifier.parameters())},
            "wall": price(times, "classifier", "score"), "inner_calls_per_timing": times["inner"]}


def _module(model):
    return model.net if isinstance(model, FrozenDenoiser) else model


def classifier_prices(repeats: int) -> list[dict]:
    out = []
    wdir = default_weights_dir()
    score = load_score_model(wdir / WEIGHT_FILES["score"]).eval()
    clf = NoiseLevelClassifier.load(wdir / WEIGHT_FILES["classifier"]).eval()
    g = torch.Generator().manual_seed(4)
    batch = 125  # bench/results/mnist_n2000: 2000 outputs, 16 per chain
    idx = torch.randint(0, clf.n_levels, (batch,), generator=g)
    sigma = clf.grid[idx].to(torch.float64)
    x = torch.rand(batch, 1, 28, 28, generator=g, dtype=torch.float64) + sigma[:, None, None, None] * torch.randn(
        batch, 1, 28, 28, generator=g, dtype=torch.float64)
    out.append(net_price("mnist: SimpleCNN classifier vs ScoreUNet", score, clf, x, sigma, repeats))
    mix = load_target("ring")
    ring_clf = NoiseLevelClassifier.load(TOY / "ring_classifier.pt").eval()
    learned = FrozenDenoiser(load_denoiser(TOY / "ring_denoiser.pt")[0])
    x, sigma = noisy_states(mix, ring_clf.grid.double(), 1000, seed=5)  # the ladder: 2000 outputs, 2 per chain
    out.append(net_price("ring: MLP classifier vs learned MLP denoiser", learned, ring_clf, x, sigma, repeats))
    return out


def _summ(led: NFELedger, prices: dict) -> dict:
    p = led.per_output(prices)
    return {k: p[k] for k in ("paper", "score_evals", "full", "oracle", "cost_weighted")} | {
        "oracle_parts": p["oracle_parts"], "prices": p["prices"]}


def example_runs(target: str, prices: dict, n: int) -> list[dict]:
    """Part 3: counted DLG runs (n outputs) priced: the exact sigma-update with MALA / ULA, the paper's argmax."""
    mix = load_target(target)
    exact = SpectralMixture(mix)
    tau_min = mix.eigenvalue_range()[0]
    clf = NoiseLevelClassifier.load(TOY / f"{target}_classifier.pt").eval()
    common = dict(sigma_min=mix.default_sigma_min(), sigma_max=mix.default_sigma_max(), n_levels=N_LEVELS,
                  init_steps=19, init_kick=0.5, burn_in=[[10, None]], seed=0)
    runs = {"exact + MALA (the ladder's mixing remedy), T=5": dict(
                sigma_update="exact", x_update="mala", eta=tau_min, eta_rel=(2.0 / mix.d) ** (1 / 3), n_skip=1,
                integrator="kar1", steps=4, outputs_per_chain=5),
            "exact + ULA, T=5": dict(sigma_update="exact", x_update="ula", eta=0.08 * tau_min,
                                     eta_rel=(2.0 / mix.d) ** (1 / 3), n_skip=1, integrator="kar1", steps=4,
                                     outputs_per_chain=5),
            "classifier argmax + ULA (the paper's), T=20": dict(
                sigma_update="classifier-argmax", x_update="ula", eta=0.5 * tau_min, n_skip=1, integrator="kar2",
                steps=4, final_tweedie="always", tweedie_sigma=mix.default_sigma_min(), outputs_per_chain=20)}
    out = []
    for label, kw in runs.items():
        cfg = DMCMCConfig(n_chains=n // kw["outputs_per_chain"], **common, **kw)
        c = clf if kw["sigma_update"].startswith("classifier") else None
        res = DMCMCSampler(exact, cfg, data_shape=(mix.d,), classifier=c, keep_trace=False).run()
        out.append({"target": target, "run": label, "n_outputs": int(res.samples.shape[0]),
                    "config": {k: v for k, v in cfg.to_dict().items() if k != "integrator_options"},
                    "totals_in_rows": res.ledger.to_dict()["totals_in_rows"], **_summ(res.ledger, prices)})
    return out


def mnist_points(price_wall: float, price_flops: float) -> list[dict]:
    """Part 3 on MNIST: the stored DLG points' counted parts (rows = parts x n), priced."""
    out = []
    for path in sorted(MNIST_POINTS.glob("dlg*.json")):
        d = json.loads(path.read_text())
        n = int(d["n"])
        rows = {"n_outputs": n, "n_chains": int(d["config"]["n_chains"]),
                "init": round(d["parts"]["init_amortised"] * n), "classifier_init":
                    round(d["parts"]["classifier_init_amortised"] * n),
                **{k: round(d["parts"][k] * n) for k in ("gibbs", "denoise", "tweedie", "classifier")}}
        led = NFELedger(**rows)  # classifier-argmax + ULA: no oracle rows (the ledger's oracle fields stay 0)
        assert abs(led.per_output()["full"] - d["nfe"]) < 1e-9, path.name
        out.append({"point": path.stem, "fid": d["fid"], "full": d["nfe"], "paper": d["nfe_paper"],
                    "score_evals": d["nfe_score_evals"],
                    "cost_weighted_wall": led.per_output({"classifier": price_wall})["cost_weighted"],
                    "cost_weighted_flops": led.per_output({"classifier": price_flops})["cost_weighted"]})
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.3, 1]})
    labels, est, lo, hi = [], [], [], []
    for o in res["oracle"]:
        items = [(f"{o['target']}: exact posterior ({N_LEVELS} levels) / exact denoiser",
                  o["prices"]["oracle_posterior"]),
                 (f"{o['target']}: log-density / exact denoiser", o["prices"]["oracle_log_prob"]),
                 (f"{o['target']}: MLP classifier / exact denoiser", o["prices"]["classifier"])]
        for k, v in o.get("prices_vs_learned_denoiser", {}).items():
            what = "exact posterior" if k == "oracle_posterior" else "MLP classifier"
            items.append((f"{o['target']}: {what} / learned MLP denoiser", v))
        for lab, p in items:
            labels.append(lab)
            est.append(p["ratio"]["estimate"])
            lo.append(p["ratio"]["low"])
            hi.append(p["ratio"]["high"])
    ys = range(len(labels))[::-1]
    a.errorbar(est, list(ys), xerr=[[e - lo_ for e, lo_ in zip(est, lo)], [h - e for e, h in zip(est, hi)]],
               fmt="o", color="C0", capsize=3)
    a.axvline(1.0, color="gray", ls=":", lw=1)
    a.set_xscale("log")
    a.set_yticks(list(ys), labels, fontsize=8)
    a.set_xlabel("wall time of one call / one score-model call, same batch of 2000 (median, 95% CI)")
    a.set_title("Oracle rows on the toy targets (CPU, 1 thread)")
    names = [c["name"].split(":")[0] for c in res["classifier"]]
    xs = range(len(names))
    fl = [c["flops_ratio"] for c in res["classifier"]]
    wl = [c["wall"]["ratio"]["estimate"] for c in res["classifier"]]
    werr = [[c["wall"]["ratio"]["estimate"] - c["wall"]["ratio"]["low"] for c in res["classifier"]],
            [c["wall"]["ratio"]["high"] - c["wall"]["ratio"]["estimate"] for c in res["classifier"]]]
    b.bar([x - 0.2 for x in xs], fl, width=0.4, label="FLOPs", color="C1")
    b.bar([x + 0.2 for x in xs], wl, width=0.4, yerr=werr, capsize=3, label="CPU wall time (median, 95% CI)",
          color="C2")
    b.axhline(1.0, color="gray", ls=":", lw=1, label="one call = one NFE (the full ledger)")
    b.set_xticks(list(xs), [f"{c['name'].split(':')[0]}\n(batch {c['batch']})" for c in res["classifier"]])
    b.set_ylabel("classifier row / score-model row")
    b.set_yscale("log")
    b.set_title("The noise-level classifier against its score model")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ledger_costs"))
    ap.add_argument("--repeats", type=int, default=25, help="interleaved timings per call (>= 5)")
    ap.add_argument("--batch", type=int, default=2000, help="batch of the oracle timings")
    ap.add_argument("--quick", action="store_true", help="5 repeats, small example runs (a smoke test)")
    args = ap.parse_args(argv)
    if args.repeats < 5 or args.batch < 1:
        sys.exit("error: need --repeats >= 5 and --batch >= 1")
    repeats = 5 if args.quick else args.repeats
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = {"device": f"CPU ({platform.processor() or platform.machine()}), 1 torch thread; no GPU at hand",
           "command": "nice -n 5 .venv/bin/python bench/ledger_costs.py" + (" --quick" if args.quick else "")
           + (f" --repeats {args.repeats}" if args.repeats != 25 and not args.quick else ""),
           "repeats": repeats, "versions": versions(), "oracle": [], "classifier": [], "examples": []}
    for target in ("ring", "lowrank"):
        res["oracle"].append(oracle_prices(target, repeats, args.batch))
        print(f"[{time.perf_counter() - t0:.0f}s] oracle prices on {target} done", flush=True)
    res["classifier"] = classifier_prices(repeats)
    print(f"[{time.perf_counter() - t0:.0f}s] classifier prices done", flush=True)
    res["prices"] = {}
    for o in res["oracle"]:
        res["prices"][o["target"]] = {k: v["ratio"]["estimate"] for k, v in o["prices"].items()}
    ring_learned = {k: v["ratio"]["estimate"] for k, v in res["oracle"][0]["prices_vs_learned_denoiser"].items()}
    mnist = res["classifier"][0]
    res["prices"]["ring_learned"] = ring_learned
    res["prices"]["mnist_cpu_wall"] = {"classifier": mnist["wall"]["ratio"]["estimate"]}
    res["prices"]["mnist_flops"] = {"classifier": mnist["flops_ratio"]}
    res["prices_note"] = ("ready for NFELedger.per_output(prices): ring / lowrank priced against the exact "
                          "(SpectralMixture) denoiser; ring_learned against the learned MLP denoiser (classifier and "
                          "exact posterior); mnist against the U-Net (CPU wall time or FLOPs)")
    n = 400 if args.quick else 2000
    for target in ("ring", "lowrank"):
        res["examples"] += example_runs(target, res["prices"][target], n)
    res["mnist_points"] = mnist_points(mnist["wall"]["ratio"]["estimate"], mnist["flops_ratio"])
    res["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "ledger_costs.json").write_text(json.dumps(res, indent=1))
    plot(res, out / "ledger_costs.png")
    print(f"[{res['seconds']:.0f}s] wrote {out / 'ledger_costs.json'} and ledger_costs.png")
    for target, p in res["prices"].items():
        print(f"  {target}: " + ", ".join(f"{k} {v:.3g}" for k, v in p.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
