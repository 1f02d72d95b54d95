"""Measured prices for the cost-weighted NFE ledger (issue 18, item 4): what an oracle row and a classifier row cost.

    nice -n 5 .venv/bin/python bench/ledger_costs.py --out bench/results/ledger_costs [--repeats 25] [--quick]

Without ``--out`` a run goes to a new folder ``runs/ledger_costs-<UTC time>``; the committed results
(``bench/results/ledger_costs``) are rewritten only when named, as above.

The ledger (:class:`dmcmc_edu.core.ledger.NFELedger`) counts rows; ``per_output(prices)`` weights them by a price,
the cost of one row in units of one row of the score model the run uses.  This script measures those prices on
the CPU, one torch thread, float64 chains as the samplers run them:

1. **Oracle rows** on the ``ring`` and the 64-d ``lowrank`` mixture, evaluated as the ladder does
   (:class:`~dmcmc_edu.targets.spectral.SpectralMixture`): one ``sigma_log_posterior`` call (the 200-level grid of
   the ladder) and one ``log_prob`` call against one call of the exact denoiser, on the same batch of 2000 noisy
   states.  On the ring also against the learned MLP denoiser (the learned ladder pairs it with the exact
   posterior), and the ladder's MLP classifiers against the exact denoiser.
2. **The noise-level classifier against the score model it serves**: the MNIST classifier against the MNIST U-Net
   (the shipped weights; batch 125 and 313 = the chains of 2000 and 5000 outputs at 16 per chain) and the ring's
   MLP classifier against the ring's learned MLP denoiser (``bench/results/toy``; batch 1000 and 100 = the
   ladder's chains for 2000 outputs at 2 and 20 outputs per chain); FLOPs
   (``torch.utils.flop_counter.FlopCounterMode``: matrix products, convolutions and attention, not element-wise
   operations) and wall time.
3. **What the prices do to a ledger**: small counted DLG runs on both mixtures (the exact sigma-update with MALA
   and with ULA, and the paper's classifier argmax) and the stored MNIST DLG points (``bench/results/mnist_n2000``,
   counted parts), per output by "one call = one NFE" (``full``) and cost-weighted.

Wall times: each call is timed ``--repeats`` times, the calls interleaved in a random order in every repeat; a
price is the median over repeats of the per-repeat ratio (numerator / reference, both timed in the same repeat),
with its bootstrap interval (:func:`dmcmc_edu.evaluation.uncertainty.interval`).  Writes ``OUT/ledger_costs.json``
``OUT/ledger_costs.png`` and ``OUT/README.md`` (its numbers read from the JSON).  About 3 minutes on a loaded
2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
from dmcmc_edu.runs import fresh_folder, versions
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
                      "classifier": price(times, "classifier_mlp", "denoiser_exact")},
           # the posterior evaluates one log-density per level: its cost in log-density calls (divide by n_levels)
           "posterior_vs_log_prob": price(times, "sigma_log_posterior", "log_prob")}
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
    # the MNIST DLG's chains: 2000 outputs / 16 per chain (bench/results/mnist_n2000), 5000 / 16 (the full sweep)
    for batch in (125, 313):
        idx = torch.randint(0, clf.n_levels, (batch,), generator=g)
        sigma = clf.grid[idx].to(torch.float64)
        x = torch.rand(batch, 1, 28, 28, generator=g, dtype=torch.float64) + sigma[:, None, None, None] * torch.randn(
            batch, 1, 28, 28, generator=g, dtype=torch.float64)
        out.append(net_price("mnist: SimpleCNN classifier vs ScoreUNet", score, clf, x, sigma, repeats))
    mix = load_target("ring")
    ring_clf = NoiseLevelClassifier.load(TOY / "ring_classifier.pt").eval()
    learned = FrozenDenoiser(load_denoiser(TOY / "ring_denoiser.pt")[0])
    for batch in (1000, 100):  # the ladder's chains: 2000 outputs at 2 per chain (remedies), 20 per chain (paper)
        x, sigma = noisy_states(mix, ring_clf.grid.double(), batch, seed=5)
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
                    "classifier_rows_per_output": d["parts"]["classifier"] + d["parts"]["classifier_init_amortised"],
                    "cost_weighted_wall": led.per_output({"classifier": price_wall})["cost_weighted"],
                    "cost_weighted_flops": led.per_output({"classifier": price_flops})["cost_weighted"]})
    return out


def mnist_vanilla_points() -> list[dict]:
    """The stored MNIST points from noise beside them (same folder, same n): FID and NFE per sample."""
    return [{"point": p.stem, "fid": json.loads(p.read_text())["fid"], "nfe": json.loads(p.read_text())["nfe"]}
            for p in sorted(MNIST_POINTS.glob("vanilla*.json"))]


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
    a.set_xlabel(f"wall time of one call / one score-model call, same batch of {res['oracle'][0]['batch']} "
                 "(median, 95% CI)")
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
    b.set_ylim(top=6.0)  # room for the legend above the bars
    b.set_title("The noise-level classifier against its score model")
    b.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ci(p: dict, fmt: str = ".3g") -> str:
    return f"{p['estimate']:{fmt}} ({p['low']:{fmt}}-{p['high']:{fmt}})"


def _ms(p: dict) -> str:
    ms = 1e3 * p["estimate"]
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _device() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"CPU ({model}, {os.cpu_count()} cores), 1 torch thread; no GPU at hand"


def _shown(path) -> str:
    """``path`` relative to the repository when it lies inside it (as a command line names it)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def readme(res: dict, out=None) -> str:
    """The README of the results folder ``out``, every number read from ``res`` (the JSON this script wrote).

    Its command names ``--out``: a run without it writes a new folder under ``runs/``, so a command recorded
    before ``--out`` was recorded gets ``--out <out>`` added (the folder it wrote then, by the old default)."""
    ring, low = res["oracle"][0], res["oracle"][1]
    pr = res["prices"]
    L = ring["n_levels"]
    lines = [
        "# Measured prices for the cost-weighted NFE ledger (issue 18, item 4)",
        "",
        "```bash",
        res["command"] + (f" --out {_shown(out)}" if out is not None and "--out" not in res["command"] else ""),
        "```",
        "",
        f"Run time {res['seconds']:.0f} s on the {res['device']} (load average "
        f"{res['load_average_start'][0]:.1f} at the start, {res['load_average_end'][0]:.1f} at the end: the 2 cores "
        "were shared with other benchmarks; every "
        "price is a ratio of two calls timed in the same repeat, so the load moves both).  Files: "
        "`ledger_costs.json` (every timing's median and interval, FLOPs, the example ledgers, and `prices`, ready "
        "for `NFELedger.per_output(prices)`), `ledger_costs.png`; this README is written from the JSON "
        "(`--from-json` rewrites it and the figure without measuring).",
        "",
        "A **price** is the cost of one row of a kind (an exact-posterior row, a log-density row, a classifier row) in "
        "units of one row of the score model the run uses, measured on the same batch.  "
        "`NFELedger.per_output(prices)` returns `cost_weighted = score_evals + sum(price x rows) / outputs` beside "
        "`full` (\"one call = one NFE\"), `score_evals`, the paper's count and the new `oracle` column (rows through "
        "the exact sigma-posterior and MALA's log-density, counted by the sampler as it calls them, never in `full`).",
        "",
        f"Wall times: {res['repeats']} repeats of each call, interleaved in a random order per repeat; the price is "
        "the median of the per-repeat ratios with its 95% bootstrap interval (BCa, "
        "`dmcmc_edu.evaluation.uncertainty.interval`).  The intervals cover the timing noise within one run; on "
        "a shared machine the prices also move between runs by more than that (the load of the other processes "
        "changes), so read them to about two significant figures.  FLOPs: "
        "`torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions, attention; element-wise "
        "operations not counted).",
        "",
        "Use: `prices = json.load(open(\"bench/results/ledger_costs/ledger_costs.json\"))[\"prices\"][\"ring\"]`, "
        "then `result.ledger.per_output(prices)[\"cost_weighted\"]` (keys: `ring`, `lowrank` against the exact "
        "denoiser; `ring_learned` against the learned MLP denoiser; `mnist_cpu_wall`, `mnist_flops` against the "
        "U-Net).  A price may be left out only for rows the run did not make; a ledger written before the oracle "
        "rows were counted gives `cost_weighted = None` unless its oracle prices are 0.",
        "",
        f"## 1. Oracle rows on the toy targets (batch {ring['batch']}, float64, `SpectralMixture` as the ladder uses "
        f"it, {L}-level grid)",
        "",
        "| target | one call of | against one call of | price: median (95% CI) | ms per call (call / reference) |",
        "|---|---|---|---|---|",
    ]
    names = {"oracle_posterior": f"exact sigma-posterior (`sigma_log_posterior`, {L} levels)",
             "oracle_log_prob": "log-density (`log_prob`, MALA)", "classifier": "the ladder's MLP classifier"}
    for o in res["oracle"]:
        for key, p in o["prices"].items():
            lines.append(f"| {o['target']} (d = {o['d']}) | {names[key]} | exact denoiser | {_ci(p['ratio'])} | "
                         f"{_ms(p['seconds_numerator'])} / {_ms(p['seconds_reference'])} |")
        for key, p in o.get("prices_vs_learned_denoiser", {}).items():
            lines.append(f"| {o['target']} (d = {o['d']}) | {names[key]} | learned MLP denoiser | "
                         f"{_ci(p['ratio'])} | {_ms(p['seconds_numerator'])} / {_ms(p['seconds_reference'])} |")
    rp, lp = ring["posterior_vs_log_prob"]["ratio"], low["posterior_vs_log_prob"]["ratio"]
    lines += [
        "",
        f"The exact posterior evaluates one log-density per level: it costs {rp['estimate']:.0f} log-density calls "
        f"on the ring and {lp['estimate']:.0f} on the 64-d mixture for {L} levels (the evaluator vectorises over the "
        "levels better in 64-d: one level costs less than a separate `log_prob` call there); its price grows with "
        "the number of levels.",
        "",
        "## 2. The noise-level classifier against the score model it serves",
        "",
        "| pair | batch | FLOPs per row (score model / classifier) | FLOPs ratio | "
        "CPU wall-time ratio: median (95% CI) | ms per call (classifier / score model) |",
        "|---|---|---|---|---|---|",
    ]
    for c in res["classifier"]:
        f = c["flops_per_row"]
        lines.append(f"| {c['name']} | {c['batch']} | {f['score'] / 1e6:.3g} M / {f['classifier'] / 1e6:.3g} M | "
                     f"{c['flops_ratio']:.3f} | {_ci(c['wall']['ratio'])} | {_ms(c['wall']['seconds_numerator'])} / "
                     f"{_ms(c['wall']['seconds_reference'])} |")
    mn = [c for c in res["classifier"] if c["name"].startswith("mnist")]
    rg = [c for c in res["classifier"] if c["name"].startswith("ring")]
    lines += [
        "",
        f"Nets: the shipped MNIST weights (`dmcmc_edu/weights`: U-Net {mn[0]['params']['score']:,} parameters, "
        f"SimpleCNN classifier {mn[0]['params']['classifier']:,}); the ring ladder's learned denoiser and classifier "
        f"(`bench/results/toy/ring_denoiser.pt`, `ring_classifier.pt`: {rg[0]['params']['score']:,} and "
        f"{rg[0]['params']['classifier']:,} parameters).  Chains are float64 (as the samplers run them), the nets "
        "float32.",
        "",
        "## 3. What the prices do to a ledger",
        "",
        "Counted DLG runs (2000 outputs each; settings in the JSON), priced with the target's prices of section 1 "
        "(the exact denoiser is the score model):",
        "",
        "| target | run | paper | score_evals | full (one call = one NFE) | oracle rows | cost-weighted |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in res["examples"]:
        lines.append(f"| {e['target']} | {e['run']} | {e['paper']:.2f} | {e['score_evals']:.2f} | {e['full']:.2f} | "
                     f"{e['oracle']:.2f} | {e['cost_weighted']:.1f} |")
    ex = {(e["target"], e["run"].split(",")[0].split(" (")[0]): e for e in res["examples"]}
    mala_r, ula_r = ex[("ring", "exact + MALA")], ex[("ring", "exact + ULA")]
    ula_l = ex[("lowrank", "exact + ULA")]
    paper_r = ex[("ring", "classifier argmax + ULA")]
    post_rows = ula_r["oracle_parts"]["oracle_posterior"] + ula_r["oracle_parts"]["oracle_posterior_init_amortised"]
    lp_rows = mala_r["oracle_parts"]["oracle_log_prob"] + mala_r["oracle_parts"]["oracle_log_prob_init_amortised"]
    pts = {m["point"]: m for m in res["mnist_points"]}
    shown = [k for k in ("dlg-argmax__kar1__8", "dlg-argmax__kar2__8", "dlg-argmax__pf_euler__20",
                         "dlg-argmax__rk45__0.01") if k in pts]
    drop = [m["full"] - m["cost_weighted_wall"] for m in res["mnist_points"]]
    drop_text = f"{min(drop):.1f}" if max(drop) - min(drop) < 0.05 else f"{min(drop):.1f}-{max(drop):.1f}"
    crows = sorted({round(m["classifier_rows_per_output"], 4) for m in res["mnist_points"]})
    van = {m["point"]: m for m in res["mnist_vanilla_points"]}
    kar1 = sorted((m for k, m in van.items() if k.startswith("vanilla__kar1__")), key=lambda m: m["nfe"])
    dk = pts["dlg-argmax__kar1__8"]
    lines += [
        "",
        "Stored MNIST DLG points (`bench/results/mnist_n2000`, classifier argmax + ULA, 125 chains, counted parts; "
        "one seed each), priced at the classifier's measured price (CPU wall time at batch 125, and FLOPs):",
        "",
        "| point | MNIST-FID | paper | score_evals | full | cost-weighted (wall) | cost-weighted (FLOPs) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in shown:
        m = pts[k]
        lines.append(f"| {k} | {m['fid']:.1f} | {m['paper']:.1f} | {m['score_evals']:.2f} | {m['full']:.2f} | "
                     f"{m['cost_weighted_wall']:.2f} | {m['cost_weighted_flops']:.2f} |")
    lines += [
        "",
        "## What this means for the paper's claim",
        "",
        f"* **The exact sigma-posterior is not free: in the example runs it costs more than everything else.**  "
        f"On the ring it "
        f"costs {_ci(ring['prices']['oracle_posterior']['ratio'], '.0f')} exact-denoiser calls "
        f"({_ci(ring['prices_vs_learned_denoiser']['oracle_posterior']['ratio'], '.1f')} calls of the learned MLP "
        f"denoiser), on the 64-d mixture {_ci(low['prices']['oracle_posterior']['ratio'], '.0f')}.  A DLG run with "
        f"the exact sigma-update makes {post_rows:.1f} posterior rows per output in the examples (one per output "
        "round plus the initialisation's and burn-in's, amortised over 5 outputs per chain), so it would pay "
        f"{post_rows * pr['ring']['oracle_posterior']:.0f} more per output on the ring "
        f"(full {ula_r['full']:.1f} -> cost-weighted {ula_r['cost_weighted']:.1f}) and "
        f"{post_rows * pr['lowrank']['oracle_posterior']:.0f} more on the 64-d mixture "
        f"({ula_l['full']:.1f} -> {ula_l['cost_weighted']:.1f}); with the learned ring model "
        f"{post_rows * pr['ring_learned']['oracle_posterior']:.0f} more.  A toy-ladder DLG point with the exact "
        "sigma-update is as cheap as the full ledger says only because its sigma-update is free there; whether any "
        "such point still reaches the reference at a competitive cost once priced is for the re-run ladders (which "
        "now carry the oracle column) to say, not this table.  The exact posterior is a teaching oracle "
        "(a sampler of the joint that is correct by construction), not an option a user of a trained model has: "
        "the comparison that carries over to real models is the classifier's.",
        f"* **MALA's log-density** costs {_ci(ring['prices']['oracle_log_prob']['ratio'], '.2f')} (ring) and "
        f"{_ci(low['prices']['oracle_log_prob']['ratio'], '.2f')} (64-d) denoiser calls per row, two rows per "
        f"Gibbs step: +{lp_rows * pr['ring']['oracle_log_prob']:.1f} per output on the ring example "
        f"(+{lp_rows * pr['lowrank']['oracle_log_prob']:.1f} on the 64-d one), small beside the posterior.  A "
        "trained model has no log-density at all.",
        f"* **The classifier, against DLG**: on MNIST it costs {mn[0]['flops_ratio']:.3f} of a U-Net call in FLOPs "
        f"and {_ci(mn[0]['wall']['ratio'], '.3f')} in CPU wall time at the sweep's 125 chains "
        f"({_ci(mn[1]['wall']['ratio'], '.3f')} at 313): \"one call = one NFE\" overcharges DLG by "
        f"{drop_text} NFE per output on every stored MNIST DLG point (their classifier rows, "
        f"{', '.join(f'{c:.2f}' for c in crows)} per output with n_skip = 10 and 16 outputs per chain, priced at "
        f"{pr['mnist_cpu_wall']['classifier']:.3f} instead of 1).  Priced, DLG + KAR1 (8 steps) reaches FID "
        f"{dk['fid']:.1f} at {dk['cost_weighted_wall']:.1f} per output (full ledger {dk['full']:.1f}); KAR1 from "
        "noise in the same folder (FID at NFE): " + ", ".join(f"{m['fid']:.1f} at {m['nfe']:.0f}" for m in kar1)
        + ": the classifier's price is not what keeps DLG above sampling from noise there, the "
        "score model's own rows (initialisation, burn-in, 10 Gibbs steps per output) are.  One seed per point: the "
        "verdicts with intervals are issue 18's item 5, not this table's.",
        f"* **The classifier on the toys** is an MLP about as large as the learned denoiser: "
        f"{rg[0]['flops_ratio']:.2f} of its FLOPs and {_ci(rg[0]['wall']['ratio'], '.2f')} of its wall time at "
        "1000 chains, so \"one call = one NFE\" is close to fair on the learned ring.  Against the *analytic* "
        f"denoiser of the ring and the 64-d mixture it costs {pr['ring']['classifier']:.1f} and "
        f"{pr['lowrank']['classifier']:.1f} calls (a small mixture's exact denoiser is cheap), so on the analytic "
        f"targets the full ledger favours DLG's classifier runs (the paper's setting on the ring: full "
        f"{paper_r['full']:.1f}, cost-weighted {paper_r['cost_weighted']:.1f}).",
        "",
        "## What was not measured",
        "",
        "* **GPU** (none at hand): the classifier's wall-time price on a GPU was not measured; the FLOPs ratio is "
        "the device-independent part, and small nets usually use a GPU less well than large ones, so the GPU "
        "wall-time price may be higher than the FLOPs ratio.",
        "* More than one CPU thread, float32 chains, batches other than those listed, grids other than 200 levels "
        "(the posterior's price grows with the number of levels), the plain `GaussianMixture` evaluator (slower "
        "than `SpectralMixture`), and FLOPs of the analytic calls (their cost is element-wise work that "
        "`FlopCounterMode` does not count).",
        "* The paper's own nets (the CIFAR10 / CelebA-HQ score models and classifiers): their classifier-to-score "
        "ratio is not measured here.",
        "* The stored ladder results are not re-priced: their ledgers were written before oracle rows were counted "
        "and read back with the oracle column \"not counted\" (`None`); the re-runs over seeds carry the new "
        "columns.  The example runs above are ours, close to the ladder's remedy and paper settings, not its "
        "points.",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None,
                    help="the folder to write (default: a new folder runs/ledger_costs-<UTC time>)")
    ap.add_argument("--repeats", type=int, default=40, help="interleaved timings per call (>= 5)")
    ap.add_argument("--batch", type=int, default=2000, help="batch of the oracle timings")
    ap.add_argument("--quick", action="store_true", help="5 repeats, small example runs (a smoke test)")
    ap.add_argument("--from-json", action="store_true",
                    help="rewrite OUT/README.md and the figure from OUT/ledger_costs.json, measuring nothing "
                         "(needs --out)")
    return ap


def out_folder(args) -> Path:
    """``--out``, or a new folder ``runs/ledger_costs-<UTC time>`` (committed results are written only when named)."""
    return Path(args.out) if args.out else fresh_folder("ledger_costs")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_json:
        if not args.out:
            sys.exit("error: --from-json needs --out DIR, the folder that holds ledger_costs.json")
        path = Path(args.out) / "ledger_costs.json"
        if not path.exists():
            sys.exit(f"error: {path} does not exist; run the measurement first")
        res = json.loads(path.read_text())
        plot(res, path.with_suffix(".png"))
        (path.parent / "README.md").write_text(readme(res, path.parent))
        print(f"wrote {path.parent / 'README.md'} and {path.with_suffix('.png').name}")
        return 0
    if args.repeats < 5 or args.batch < 1:
        sys.exit("error: need --repeats >= 5 and --batch >= 1")
    repeats = 5 if args.quick else args.repeats
    torch.set_num_threads(1)
    out = out_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = {"device": _device(),
           "command": "nice -n 5 .venv/bin/python bench/ledger_costs.py" + (" --quick" if args.quick else "")
           + (f" --repeats {args.repeats}" if args.repeats != 40 and not args.quick else "")
           + (f" --batch {args.batch}" if args.batch != 2000 else "") + f" --out {_shown(out)}",
           "repeats": repeats, "versions": versions(), "load_average_start": list(os.getloadavg()),
           "oracle": [], "classifier": [], "examples": []}
    for target in ("ring", "lowrank"):
        res["oracle"].append(oracle_prices(target, repeats, args.batch))
        print(f"[{time.perf_counter() - t0:.0f}s] oracle prices on {target} done", flush=True)
    res["classifier"] = classifier_prices(repeats)
    print(f"[{time.perf_counter() - t0:.0f}s] classifier prices done", flush=True)
    res["prices"] = {}
    for o in res["oracle"]:
        res["prices"][o["target"]] = {k: v["ratio"]["estimate"] for k, v in o["prices"].items()}
    ring_learned = {k: v["ratio"]["estimate"] for k, v in res["oracle"][0]["prices_vs_learned_denoiser"].items()}
    mnist = res["classifier"][0]  # batch 125, the chains of bench/results/mnist_n2000
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
    res["mnist_vanilla_points"] = mnist_vanilla_points()
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["load_average_end"] = list(os.getloadavg())  # 1, 5, 15 min: the 2 cores were shared with other benchmarks
    (out / "ledger_costs.json").write_text(json.dumps(res, indent=1))
    plot(res, out / "ledger_costs.png")
    (out / "README.md").write_text(readme(res, out))
    print(f"[{res['seconds']:.0f}s] wrote {out / 'ledger_costs.json'} and ledger_costs.png")
    for target, p in res["prices"].items():
        print(f"  {target}: " + ", ".join(f"{k} {v:.3g}" for k, v in p.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
