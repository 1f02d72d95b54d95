"""The 2D demo behind ``make demo``: the six integrators and DLG on the ring of 8, with exact metrics.

Writes into the run folder ``out``: ``results.csv`` / ``results.json`` / ``results.md`` (one
row per sampler and step count: counted NFE, W2 against exact samples and its
noise floor, mode-weight TV, spread, NLL), ``samples.png`` (one panel per
sampler) and ``w2_vs_nfe.png`` (W2 and mode-weight TV against NFE, log axes).

The folder follows the toolkit's run-folder rules (:class:`dmcmc_edu.runs.RunDirectory`): a record
``run.json`` with the demo's fingerprint, every output written once, a finished demo with the same settings
reported and nothing written, a folder holding another command's run or files that are not a run refused
before anything is computed.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

from dmcmc_edu.core.integrators import PAPER_INTEGRATORS, sample_from_noise
from dmcmc_edu.core.sampler import DMCMCSampler
from dmcmc_edu.evaluation import metrics
from dmcmc_edu.plotting import plot_metric_vs_nfe, plot_samples
from dmcmc_edu.runs import RunDirectory, fingerprint, versions, write_once
from dmcmc_edu.targets import dlg_config, ring

__all__ = ["run_demo", "demo_run_directory", "demo_settings", "DEMO_DLG", "DEMO_OUTPUTS", "plot_demo_metrics"]

# DLG settings of the demo: targets.dlg_config (MALA with sigma-adapted steps, exact sigma-update, many chains
# with two outputs each) with the denoising steps varied
DEMO_DLG = dict(integrator="kar1", seed=1)

DEMO_OUTPUTS = ("results.json", "results.csv", "results.md", "samples.png", "w2_vs_nfe.png")
"""The files a finished demo records the sha256 of (in ``run.json``)."""


def demo_settings(*, fast: bool = False, n: int | None = None, steps=None, dlg_steps=None) -> dict:
    """The settings of a demo run (what its fingerprint records): sample size and step counts.

    ``fast`` picks the small defaults (1000 samples, steps 4 and 16, DLG 2 and 4); ``n``, ``steps`` and
    ``dlg_steps`` override them (integers >= 1; a smaller demo for tests and slow machines).
    """
    chosen = {"n": 1000 if fast else 4000, "steps": [4, 16] if fast else [3, 6, 12, 25, 50, 100],
              "dlg_steps": [2, 4] if fast else [1, 2, 4, 8]}
    for name, value in (("n", n), ("steps", steps), ("dlg_steps", dlg_steps)):
        if value is None:
            continue
        values = [value] if name == "n" else list(value)
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise ValueError(f"{name} must be {'an integer' if name == 'n' else 'a list of integers'} >= 1, "
                             f"got {value!r}")
        chosen[name] = values[0] if name == "n" else values
    return {"fast": fast, **chosen, "integrators": list(PAPER_INTEGRATORS), "dlg": DEMO_DLG}


def demo_run_directory(out, settings: dict) -> RunDirectory:
    """The run folder of a demo with ``settings`` (:func:`demo_settings`): kind ``"demo"``, the ring's hash."""
    return RunDirectory(out, fingerprint("demo", settings, target=ring().to_dict()), outputs=DEMO_OUTPUTS,
                        labels={"target": "ring"})


def run_demo(out="runs/demo", *, fast: bool = False, progress: bool = True, n: int | None = None, steps=None,
             dlg_steps=None) -> list[dict]:
    """Run the demo into the run folder ``out`` and write its table and figures; returns the rows.

    A folder that holds this very demo, finished, is only read back (its rows returned, nothing written); one
    that holds another run, a demo with other settings or files that are not a run is refused
    (:class:`dmcmc_edu.runs.RunRefused`, one line) before anything is computed.  Outputs are never replaced.
    """
    settings = demo_settings(fast=fast, n=n, steps=steps, dlg_steps=dlg_steps)
    run = demo_run_directory(out, settings)
    out = Path(out)
    if run.check() == "finished":
        if progress:
            print(f"{out} holds this demo, finished earlier with the same settings; nothing was written")
            print((out / "results.md").read_text())
        return json.loads((out / "results.json").read_text())
    matplotlib.use("Agg")
    run.start({"command": "demo", "settings": settings, "versions": versions()})
    t_start = time.time()
    mix = ring()
    smin, smax = mix.default_sigma_min(), mix.default_sigma_max()
    n = settings["n"]
    g_ref = torch.Generator().manual_seed(999)
    floor = metrics.w2_noise_floor(mix, min(n, 1000), g_ref, repeats=2)
    rows, shown = [], {}
    jobs = [(name, k) for name in PAPER_INTEGRATORS for k in (settings["steps"] if name != "rk45" else (1,))]
    for name, k in tqdm(jobs, desc="integrators from sigma_max", disable=not progress):
        t0 = time.time()
        x, info = sample_from_noise(mix, (n, 2), integrator=name, steps=k, sigma_max=smax, sigma_min=smin,
                                    generator=torch.Generator().manual_seed(k))
        rows.append(_row(mix, x, name, "from sigma_max", k, info.nfe, info.nfe, time.time() - t0, g_ref))
        shown[name] = (x, info.nfe)
    for k in tqdm(settings["dlg_steps"], desc="DLG", disable=not progress):
        t0 = time.time()
        cfg = dlg_config(mix, n, steps=k, **DEMO_DLG)
        res = DMCMCSampler(mix, cfg, data_shape=(2,)).run()
        led = res.ledger.per_output()
        rows.append(_row(mix, res.samples, "kar1", "DLG", k, led["full"], led["paper"], time.time() - t0, g_ref))
        shown[f"DLG + kar1 ({k} steps)"] = (res.samples, led["full"])
    for r in rows:
        r["w2_floor"] = floor
    _write_tables(rows, out)
    _plot_demo(mix, rows, shown, floor, out)
    run.finish({"result": {"rows": len(rows)}, "wall_seconds_this_call": round(time.time() - t_start, 2)})
    if progress:
        print((out / "results.md").read_text())
    return rows


def _png(fig) -> bytes:
    """The figure as PNG bytes (130 dpi, tight), made in memory so that it can be written once."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)
    return buf.getvalue()


def _plot_demo(mix, rows, shown, floor, out: Path) -> None:
    """``samples.png`` (one panel per sampler) and ``w2_vs_nfe.png`` (:func:`plot_demo_metrics`)."""
    fig, axes = plt.subplots(2, (len(shown) + 1) // 2, figsize=(2.6 * ((len(shown) + 1) // 2), 5.4))
    for ax, (name, (x, nfe)) in zip(axes.flat, shown.items()):
        plot_samples(x[:2000], ax=ax, mix=mix, title=f"{name}\nNFE {nfe:.1f}")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    write_once(out / "samples.png", _png(fig))
    write_once(out / "w2_vs_nfe.png", _png(plot_demo_metrics(rows, floor)))


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
    write_once(out / "results.json", json.dumps(rows, indent=1, default=float).encode())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_once(out / "results.csv", buf.getvalue().encode())
    cols = ["integrator", "mode", "steps", "nfe", "nfe_paper", "w2", "w2_floor", "mode_tv", "mode_tv_exact", "spread",
            "nll"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    write_once(out / "results.md", ("\n".join(lines) + "\n").encode())
