"""The 2D demo behind ``make demo``: the six integrators and DLG on the ring of 8, with exact metrics.

Writes into ``out``: ``results.csv`` / ``results.json`` / ``results.md`` (one
row per sampler and step count: counted NFE, W2 against exact samples and its
noise floor, mode-weight TV, spread, NLL), ``samples.png`` (one panel per
sampler) and ``w2_vs_nfe.png``.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

from dmcmc_edu.core.integrators import PAPER_INTEGRATORS, sample_from_noise
from dmcmc_edu.core.sampler import DMCMCSampler
from dmcmc_edu.evaluation import metrics
from dmcmc_edu.plotting import plot_metric_vs_nfe, plot_samples, save_figure
from dmcmc_edu.runs import write_json
from dmcmc_edu.targets import dlg_config, ring

__all__ = ["run_demo", "DEMO_DLG"]

# DLG settings of the demo: targets.dlg_config (MALA with sigma-adapted steps, exact sigma-update, many chains
# with two outputs each) with the denoising steps varied
DEMO_DLG = dict(integrator="kar1", seed=1)


def run_demo(out="runs/demo", *, fast: bool = False, progress: bool = True) -> list[dict]:
    """Run the demo and write its table and figures; returns the rows."""
    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mix = ring()
    smin, smax = mix.default_sigma_min(), mix.default_sigma_max()
    n = 1000 if fast else 4000
    step_list = (4, 16) if fast else (3, 6, 12, 25, 50, 100)
    g_ref = torch.Generator().manual_seed(999)
    floor = metrics.w2_noise_floor(mix, min(n, 1000), g_ref, repeats=2)
    rows, shown = [], {}
    jobs = [(name, steps) for name in PAPER_INTEGRATORS for steps in (step_list if name != "rk45" else (1,))]
    for name, steps in tqdm(jobs, desc="integrators from sigma_max", disable=not progress):
        t0 = time.time()
        x, info = sample_from_noise(mix, (n, 2), integrator=name, steps=steps, sigma_max=smax, sigma_min=smin,
                                    generator=torch.Generator().manual_seed(steps))
        rows.append(_row(mix, x, name, "from sigma_max", steps, info.nfe, info.nfe, time.time() - t0, g_ref))
        shown[name] = (x, info.nfe)
    dlg_steps = (2, 4) if fast else (1, 2, 4, 8)
    for steps in tqdm(dlg_steps, desc="DLG", disable=not progress):
        t0 = time.time()
        cfg = dlg_config(mix, n, steps=steps, **DEMO_DLG)
        res = DMCMCSampler(mix, cfg, data_shape=(2,)).run()
        led = res.ledger.per_output()
        rows.append(_row(mix, res.samples, "kar1", "DLG", steps, led["full"], led["paper"], time.time() - t0, g_ref))
        shown[f"DLG + kar1 ({steps} steps)"] = (res.samples, led["full"])
    for r in rows:
        r["w2_floor"] = floor
    _write_tables(rows, out)
    _plot_demo(mix, rows, shown, floor, out)
    if progress:
        print((out / "results.md").read_text())
    return rows


def _plot_demo(mix, rows, shown, floor, out: Path) -> None:
    """``samples.png`` (one panel per sampler) and ``w2_vs_nfe.png`` (W2 and mode-weight TV against NFE)."""
    fig, axes = plt.subplots(2, (len(shown) + 1) // 2, figsize=(2.6 * ((len(shown) + 1) // 2), 5.4))
    for ax, (name, (x, nfe)) in zip(axes.flat, shown.items()):
        plot_samples(x[:2000], ax=ax, mix=mix, title=f"{name}\nNFE {nfe:.1f}")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    save_figure(fig, out / "samples.png")
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    plot_rows = [dict(r, method=f"{r['integrator']} {r['mode']}") for r in rows if r["integrator"] != "rk45"]
    plot_metric_vs_nfe(plot_rows, "w2", ax=axes[0], floor=floor)
    plot_metric_vs_nfe(plot_rows, "mode_tv", ax=axes[1], floor=rows[0]["mode_tv_exact"])
    axes[0].set_title("W2 to the ring (full NFE ledger for DLG)")
    axes[1].set_title("mode-weight total variation")
    save_figure(fig, out / "w2_vs_nfe.png")
    plt.close(fig)


def _row(mix, x, name, mode, steps, nfe_full, nfe_paper, seconds, g):
    """One result row: the sampler, its counted NFE and :func:`~dmcmc_edu.evaluation.metrics.summary`."""
    s = metrics.summary(mix, x, generator=g)
    return {"integrator": name, "mode": mode, "steps": steps, "nfe": round(float(nfe_full), 3),
            "nfe_paper": round(float(nfe_paper), 3), "n": s["n"], "w2": s["w2"], "mode_tv": s["mode_tv"],
            "mode_tv_exact": s["mode_tv_exact"], "spread": s["spread"], "nll": s["nll"], "nll_exact": s["nll_exact"],
            "seconds": round(seconds, 3)}


def _write_tables(rows, out: Path) -> None:
    """``results.json``, ``results.csv`` and the Markdown table ``results.md`` of the demo's rows."""
    keys = list(rows[0].keys())
    write_json(out / "results.json", rows, indent=1)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    cols = ["integrator", "mode", "steps", "nfe", "nfe_paper", "w2", "w2_floor", "mode_tv", "mode_tv_exact", "spread",
            "nll"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
