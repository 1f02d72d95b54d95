"""The 2D demo behind ``make demo``: the six integrators and DLG on the ring of 8, with exact metrics.

Writes into ``out``: ``results.csv`` / ``results.json`` / ``results.md`` (one
row per sampler and step count: counted NFE, W2 against exact samples and its
noise floor, mode-weight TV, spread, NLL), ``samples.png`` (one panel per
sampler) and ``w2_vs_nfe.png`` (W2 and mode-weight TV against NFE, log axes).
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

__all__ = ["run_demo", "DEMO_DLG", "plot_demo_metrics"]

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
    """``samples.png`` (one panel per sampler) and ``w2_vs_nfe.png`` (:func:`plot_demo_metrics`)."""
    fig, axes = plt.subplots(2, (len(shown) + 1) // 2, figsize=(2.6 * ((len(shown) + 1) // 2), 5.4))
    for ax, (name, (x, nfe)) in zip(axes.flat, shown.items()):
        plot_samples(x[:2000], ax=ax, mix=mix, title=f"{name}\nNFE {nfe:.1f}")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    save_figure(fig, out / "samples.png")
    plt.close(fig)
    fig = plot_demo_metrics(rows, floor)
    save_figure(fig, out / "w2_vs_nfe.png")
    plt.close(fig)


def plot_demo_metrics(rows: list[dict], floor: float):
    """W2 and mode-weight TV against NFE for the demo's rows, both axes logarithmic; returns the figure.

    The values span decades (a few coarse Euler-Maruyama steps from sigma_max
    leave W2 in the thousands, good samplers sit near the floor of about 1),
    so a linear axis would flatten every other curve.  One line per sampler
    (the integrators from sigma_max, and DLG by the full ledger), RK45 as a
    single point (it chooses its own steps), the exact-sample floors as dashed
    lines (for mode TV the mean over the rows of ``mode_tv_exact``), and one legend for both panels.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    label = {"from sigma_max": "{} from sigma_max", "DLG": "DLG + {} (full ledger)"}
    plot_rows = [dict(r, method=label[r["mode"]].format(r["integrator"])) for r in rows]
    # the mode-TV floor: the mean over the rows of the TV that an exact sample of each row's size scores
    floors = {"w2": floor, "mode_tv": sum(r["mode_tv_exact"] for r in rows) / len(rows)}
    for ax, metric in zip(axes, ("w2", "mode_tv")):
        plot_metric_vs_nfe(plot_rows, metric, ax=ax, floor=floors[metric])
        ax.get_legend().remove()
        if all(r[metric] > 0 for r in plot_rows):
            ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    for line in axes[0].get_lines() + axes[1].get_lines():
        if line.get_label() == "exact samples":
            line.set_label("exact samples (the noise floor)")
    axes[0].set_ylabel("W2 to the ring (log scale)")
    axes[1].set_ylabel("mode-weight total variation (log scale)")
    axes[0].set_title("W2 distance to the ring")
    axes[1].set_title("error of the mode weights")
    for ax in axes:
        ax.set_xlabel("NFE per sample (DLG: full ledger; log scale)")
    handles = {h.get_label(): h for h in axes[0].get_lines()}  # one entry per label, both panels share them
    fig.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False)
    fig.tight_layout()
    return fig


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
