"""How long an explorer takes to redraw after a slider release, without a browser (issue 22, item 7).

    OMP_NUM_THREADS=1 .venv/bin/python bench/explorer_redraw.py --out bench/results/explorers [--repeats 3]
        [--baseline-commit 178f7c1]

Without ``--out`` a run goes to a new folder ``runs/explorer_redraw-<UTC time>``, so the committed results
(``bench/results/explorers``, written by the command above with ``--repeats 2``) are only rewritten when named.

Builds notebook 08's explorers (:func:`dmcmc_edu.explorers.dlg_explorer`, :func:`~dmcmc_edu.explorers.
integrator_explorer`, the default :class:`~dmcmc_edu.explorers.ExplorerSettings`) headless (ipywidgets without a
frontend) and moves their controls through a fixed list of values, ``--repeats`` times; each move runs the
explorer's ``update`` (compute, draw, PNG) as a slider release in JupyterLab does.  Per update: the wall time of
the ``value`` assignment and the explorer's own split (``last_timings``: compute, draw, png).  What the browser
adds (the comm round trip, the image decode) is measured by ``tests/browser`` (``runs/browser/redraw_timings.json``).

Modes, interleaved in every repeat (same slider values, same process):

* ``dlg`` -- the DLG explorer as shipped: one :class:`~dmcmc_edu.explorers.DLGFigure`, updated in place;
* ``dlg_fresh_figure`` -- the same runs drawn into a new figure per update (:func:`~dmcmc_edu.explorers.draw_dlg`
  + :func:`~dmcmc_edu.explorers.figure_png`), what re-creating the figure costs at today's size and fonts;
* ``dlg_baseline`` -- the explorer of ``--baseline-commit`` (its ``dmcmc_edu/explorers.py`` read with ``git show``
  and imported beside today's package; default: the commit before the figure was reused), if git can read it;
* ``integrator`` -- the integrator explorer as shipped (one :class:`~dmcmc_edu.explorers.IntegratorFigure`, updated).

The explorers' cache of updates seen before is switched off (``cache_size = 0``): every update here computes,
draws and encodes (with the cache, going back to seen controls takes milliseconds).

Writes ``OUT/explorer_redraw.json`` (every update, the load average before and after, the machine) and
``OUT/explorer_redraw.png``: per mode, every update's seconds (strip) with the median and its 95 % bootstrap
interval (seaborn), the 1 s target drawn.  Timings on a shared machine are inflated by its load: the JSON records
``/proc/loadavg``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dmcmc_edu import explorers as ex  # noqa: E402
from dmcmc_edu.runs import fresh_folder  # noqa: E402

#: slider moves of the DLG explorer (each one update), ending where they began
DLG_MOVES = [("steps", 16), ("eta", 0.02), ("outputs_per_chain", 8), ("n_skip", 10), ("eta_rel", 2.0),
             ("n_skip", 3), ("eta_rel", 0.3),
             ("sigma_update", "classifier-sample"), ("x_update", "ula"), ("eta", 0.1), ("steps", 4),
             ("eta", 0.005), ("eta_rel", 1.0), ("n_skip", 1), ("outputs_per_chain", 4), ("sigma_update", "exact"),
             ("x_update", "mala"), ("steps", 8)]
INTEGRATOR_MOVES = [("steps", 32), ("steps", 128), ("integrator", "kar2"), ("sigma_start", 1.0),
                    ("integrator", "rk45"), ("integrator", "kar1"), ("steps", 8)]


def _loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _baseline_module(commit: str):
    """``dmcmc_edu/explorers.py`` of ``commit`` as a module (None if git cannot read it)."""
    try:
        src = subprocess.run(["git", "show", f"{commit}:dmcmc_edu/explorers.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "explorers_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("explorers_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _move(explorer, name, value) -> dict:
    t0 = time.perf_counter()
    explorer.controls[name].value = value
    wall = time.perf_counter() - t0
    split = {k: round(v, 4) for k, v in getattr(explorer, "last_timings", {}).items() if k != "cached"}
    return {"control": name, "value": value, "seconds": round(wall, 4), **{f"{k}_s": v for k, v in split.items()}}


def _fresh(settings, controls: dict) -> dict:
    t0 = time.perf_counter()
    run = ex.compute_dlg(settings, **controls)
    t1 = time.perf_counter()
    fig = ex.draw_dlg(run, settings)
    t2 = time.perf_counter()
    ex.figure_png(fig, settings.dpi)
    t3 = time.perf_counter()
    return {"seconds": round(t3 - t0, 4), "compute_s": round(t1 - t0, 4), "draw_s": round(t2 - t1, 4),
            "png_s": round(t3 - t2, 4)}


def measure(repeats: int, baseline_commit: str | None) -> dict:
    torch.set_num_threads(1)
    s = ex.ExplorerSettings()
    base = _baseline_module(baseline_commit) if baseline_commit else None
    t0 = time.perf_counter()
    dlg, integ = ex.dlg_explorer(s), ex.integrator_explorer(s)
    dlg.cache_size = integ.cache_size = 0  # every update computed (the moves return to values seen before)
    old = base.dlg_explorer(base.ExplorerSettings()) if base else None
    integrator_moves = INTEGRATOR_MOVES + [("sigma_start", integ.controls["sigma_start"].value)]  # back to start
    build_s = time.perf_counter() - t0
    rows = []
    load_before = _loadavg()
    for rep in range(repeats):
        for name, value in DLG_MOVES:
            rows.append({"mode": "dlg", "repeat": rep, **_move(dlg, name, value)})
            rows.append({"mode": "dlg_fresh_figure", "repeat": rep, "control": name, "value": value,
                         **_fresh(s, dlg.values())})
            if old is not None:
                rows.append({"mode": "dlg_baseline", "repeat": rep, **_move(old, name, value)})
        for name, value in integrator_moves:
            rows.append({"mode": "integrator", "repeat": rep, **_move(integ, name, value)})
    summary = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        sec = np.array([r["seconds"] for r in rows if r["mode"] == mode])
        summary[mode] = {"n": int(sec.size), "median_s": round(float(np.median(sec)), 3),
                         "q90_s": round(float(np.quantile(sec, 0.9)), 3), "max_s": round(float(sec.max()), 3),
                         "share_under_1s": round(float((sec < 1.0).mean()), 3)}
        for part in ("compute_s", "draw_s", "png_s"):
            v = [r[part] for r in rows if r["mode"] == mode and part in r]
            if v:
                summary[mode][f"median_{part}"] = round(float(np.median(v)), 3)
    return {"settings": {"repeats": repeats, "dpi": s.dpi, "n_chains": s.n_chains, "n_samples": s.n_samples,
                         "baseline_commit": baseline_commit if base else None,
                         "dlg_moves": DLG_MOVES, "integrator_moves": integrator_moves},
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
                        "matplotlib": matplotlib.__version__, "loadavg_before": load_before,
                        "loadavg_after": _loadavg(),
                        "note": "shared machine: other benchmarks ran meanwhile; the load inflates every time"},
            "build_s": round(build_s, 3), "summary": summary, "updates": rows}


def plot(result: dict, path: Path) -> None:
    df = pd.DataFrame(result["updates"])
    order = [m for m in ("dlg", "dlg_fresh_figure", "dlg_baseline", "integrator") if m in set(df["mode"])]
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    sns.stripplot(data=df, x="mode", y="seconds", order=order, ax=ax, color="0.45", size=3.5, alpha=0.6,
                  jitter=0.25)
    sns.pointplot(data=df, x="mode", y="seconds", order=order, ax=ax, estimator="median",
                  errorbar=("ci", 95), seed=0, color="C3", markers="D", linestyles="none", capsize=0.15)
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label="target: 1 s")
    ax.set_ylabel("seconds per update (slider release to new image)")
    ax.set_xlabel("")
    la = result["machine"]["loadavg_before"]
    counts = ", ".join(f"{m} {int((df['mode'] == m).sum())}" for m in order)
    ax.set_title(f"explorer updates, no browser ({counts})\nmedian and 95 % interval; "
                 f"load average {la[0] if la else float('nan'):.1f} on {result['machine']['cpus']} CPUs "
                 f"(shared machine)", fontsize=10)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="the folder to write (default: a new folder runs/explorer_redraw-<UTC time>)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-commit", default="178f7c1",
                    help="commit whose explorers.py is timed beside today's ('' to skip)")
    return ap


def out_folder(args) -> Path:
    """``--out``, or a new folder ``runs/explorer_redraw-<UTC time>`` (committed results: only when named)."""
    return Path(args.out) if args.out else fresh_folder("explorer_redraw")


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    args.out = out_folder(args)
    args.out.mkdir(parents=True, exist_ok=True)
    result = measure(args.repeats, args.baseline_commit or None)
    (args.out / "explorer_redraw.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / "explorer_redraw.png")
    for mode, s in result["summary"].items():
        print(f"{mode:18s} median {s['median_s']:.3f} s, q90 {s['q90_s']:.3f} s, max {s['max_s']:.3f} s, "
              f"{100 * s['share_under_1s']:.0f} % under 1 s")
    print("load average before/after:", result["machine"]["loadavg_before"], result["machine"]["loadavg_after"])


if __name__ == "__main__":
    main()
