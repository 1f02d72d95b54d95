"""How long ``--help`` takes: the root's and every command's, each in a fresh Python process.

    python bench/cli_help_times.py --out bench/results/cli_help [--repeats 3] [--compare DIR]

Each screen is timed as a user meets it: ``python -m dmcmc_edu [COMMAND ...] --help`` in a new process (wall
clock, interpreter start included), ``--repeats`` times, interleaved over the commands; reported: every time, the
median and the largest per command, and the modules ``-X importtime`` says the root's ``--help`` spent most time
in.  ``--compare DIR`` also times the same screens of another copy of the package (a checkout of an earlier
commit, e.g. ``git worktree add /tmp/before <commit>``), run from that folder, once per screen for the root and
``--compare-commands``.  The machine's load average is recorded beside the times: on a shared machine they are
inflated by it.  Writes ``OUT/cli_help_times.json`` and ``OUT/cli_help_times.png`` (a bar per screen and the 2 s
bound); OUT is new or empty (default: a new folder under runs/cli_help/), files are never overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOUND_SECONDS = 2.0
"""The bound of issue 22: every --help under 2 s on 2 cores."""


def commands(source: Path) -> list[list[str]]:
    """Every command path of the parser of the package in ``source`` (asked in a subprocess, as it is built)."""
    script = r"""
import argparse, json
from dmcmc_edu.cli import build_parser
def walk(p, prefix):
    out = []
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += walk(sub, prefix + [name]) or [prefix + [name]]
    return out
print(json.dumps(walk(build_parser("python -m dmcmc_edu"), [])))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=source, env=_env(source),
                          check=True)
    return json.loads(proc.stdout)


def _env(source: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(source))
    env.pop("RANK", None)
    env.pop("LOCAL_RANK", None)
    return env


def time_help(source: Path, argv: list[str]) -> float:
    """Wall seconds of ``python -m dmcmc_edu *argv --help`` in a new process (it must exit 0)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dmcmc_edu", *argv, "--help"], capture_output=True, text=True,
                          cwd=source, env=_env(source), timeout=600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or "usage:" not in proc.stdout:
        raise RuntimeError(f"{' '.join(argv) or 'root'} --help failed: {proc.stderr[-500:]}")
    return seconds


def import_profile(source: Path, top: int = 12) -> dict:
    """``python -X importtime -m dmcmc_edu --help``: the total and the modules with the largest cumulative time."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dmcmc_edu", "--help"], capture_output=True,
                          text=True, cwd=source, env=_env(source), timeout=600)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append({"module": m.group(4), "self_us": int(m.group(1)), "cumulative_us": int(m.group(2)),
                         "depth": (len(m.group(3)) - 1) // 2})
    top_level = [r for r in rows if r["depth"] == 0]
    return {"total_import_seconds": round(sum(r["cumulative_us"] for r in top_level) / 1e6, 3),
            "modules": len(rows), "torch_imported": any(r["module"] == "torch" for r in rows),
            "numpy_imported": any(r["module"] == "numpy" for r in rows),
            "largest_top_level": sorted(top_level, key=lambda r: -r["cumulative_us"])[:top]}


def machine() -> dict:
    return {"load_average_1_5_15": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(), "platform": platform.platform(),
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _label(argv) -> str:
    return " ".join(argv) or "(root)"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["screens"]
    labels = [r["screen"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.6))
    y = range(len(rows))
    ax.barh(list(y), [r["median_seconds"] for r in rows], color="tab:blue", label="this tree: median")
    ax.scatter([r["max_seconds"] for r in rows], list(y), marker="|", color="k", s=80, label="largest of the repeats")
    before = {r["screen"]: r["seconds"][0] for r in doc.get("compare", {}).get("screens", [])}
    if before:
        ax.scatter([before.get(lab, float("nan")) for lab in labels], list(y), marker="x", color="tab:red",
                   label=f"before ({doc['compare']['label']})")
    ax.axvline(BOUND_SECONDS, color="tab:red", ls="--", lw=1, label=f"{BOUND_SECONDS:g} s bound")
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds of --help in a new process")
    if before:
        ax.set_xscale("log")
    load = doc["machine"]["load_average_1_5_15"]
    ax.set_title(f"--help of every command ({doc['repeats']} runs each; load average {load[0]:g} on "
                 f"{doc['machine']['affinity_cpus']} CPUs)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def _write_new(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:  # never replaces a file
        f.write(data)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="a new or empty folder (default: runs/cli_help/<UTC time>)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", default=None, help="another copy of the repository to time (e.g. an earlier commit)")
    ap.add_argument("--compare-label", default="earlier commit")
    ap.add_argument("--compare-commands", default="sample,sample-mnist,assignments release",
                    help="the commands timed in --compare besides the root (comma list)")
    args = ap.parse_args(argv)
    out = Path(args.out or ROOT / "runs" / "cli_help" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    if out.exists() and any(out.iterdir()):
        sys.exit(f"error: --out {out} is not empty; choose a new folder (results are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    load_before = machine()
    screens = [[]] + commands(ROOT)
    times = {_label(s): [] for s in screens}
    for _ in range(args.repeats):  # interleaved, so a burst of load spreads over the commands
        for s in screens:
            times[_label(s)].append(round(time_help(ROOT, s), 3))
    doc = {"command": "python bench/cli_help_times.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "repeats": args.repeats, "bound_seconds": BOUND_SECONDS, "machine_before": load_before,
           "screens": [{"screen": lab, "seconds": t, "median_seconds": statistics.median(t), "max_seconds": max(t)}
                       for lab, t in times.items()],
           "import_profile_root_help": import_profile(ROOT)}
    doc["all_under_bound"] = all(r["max_seconds"] < BOUND_SECONDS for r in doc["screens"])
    if args.compare:
        src = Path(args.compare).resolve()
        chosen = [[]] + [c.split() for c in args.compare_commands.split(",") if c.strip()]
        doc["compare"] = {"label": args.compare_label, "source": str(src),
                          "screens": [{"screen": _label(s), "seconds": [round(time_help(src, s), 3)]}
                                      for s in chosen],
                          "import_profile_root_help": import_profile(src)}
    doc["machine"] = machine()  # after: the load average over the run
    _write_new(out / "cli_help_times.json", (json.dumps(doc, indent=1) + "\n").encode())
    plot(doc, out / "cli_help_times.png")  # OUT was new or empty
    worst = max(doc["screens"], key=lambda r: r["max_seconds"])
    print(f"{len(screens)} screens x {args.repeats}: slowest {worst['screen']} {worst['max_seconds']:.2f} s; "
          f"all under {BOUND_SECONDS:g} s: {doc['all_under_bound']}; "
          f"load average {doc['machine']['load_average_1_5_15']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
