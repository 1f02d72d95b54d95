"""Read finished one-seed ladder sweeps against the exact noise floors of their target and size (issue 18, item 2).

    python bench/refloor_sweeps.py --floors bench/results/seeds/ring_floors_n2000.json \
        bench/results/toy/ring bench/results/toy/ring_learned bench/results/modern_solvers/ring \
        bench/results/modern_solvers/ring_learned
    python bench/refloor_sweeps.py --floors bench/results/seeds/lowrank_floors_n2000.json \
        bench/results/toy/lowrank bench/results/modern_solvers/lowrank

The one-seed sweeps were first read against floors of their own (the mean + 3 sd of 40 exact sets, 10 for W2), while
the analyses over seeds read the 0.995 quantile of 200 exact pairs.  Each argument ``FOLDER/STEM`` names a finished
sweep; :func:`dmcmc_edu.experiments.ladder.refloor_sweep` re-marks its points and rewrites its reports against
``--floors`` (nothing is sampled; the old floors stay in ``meta.floors_before``), and the floors file is copied
beside the sweep as ``<target>_floors_n<n>.json``, where a later sweep of that folder reads it.  A sweep already
read against these floors is left as it is.  Prints one JSON line per sweep: how many points were inside every floor
before and after.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dmcmc_edu.cli.common import run_handler  # noqa: E402
from dmcmc_edu.experiments.ladder import refloor_sweep, target_stem  # noqa: E402
from dmcmc_edu.runs import RunRefused, refuse_other_settings, write_json  # noqa: E402


def _one(sweep: Path, floors_file: Path) -> dict:
    folder, stem = sweep.parent, sweep.name
    path = folder / f"{stem}.json"
    if not path.is_file():
        raise RunRefused(f"{path}: no such sweep")
    doc = json.loads(path.read_text())
    saved = json.loads(floors_file.read_text())
    inside = lambda d: sum(bool((p.get("within_floor") or {}).get("all")) for p in d["points"])  # noqa: E731
    if doc["meta"].get("floors_file") == floors_file.name and doc["meta"]["floors"] == saved["floors"]:
        return {"sweep": str(sweep), "done": "already", "inside_every_floor": inside(doc)}
    before = inside(doc)
    n = doc["meta"]["sweep"]["n"]
    sweep_settings = doc["meta"]["sweep"]
    beside = folder / f"{target_stem(sweep_settings['target'], fast=sweep_settings['fast'])}_floors_n{n}.json"
    refuse_other_settings(beside, saved["settings"])  # a file there made for other settings stops us before
    new = refloor_sweep(folder, stem, floors_file)
    if not beside.exists():  # the folder keeps the floors its sweeps read (a later sweep there reads them too)
        write_json(beside, saved, indent=1)
    return {"sweep": str(sweep), "points": len(new["points"]), "inside_every_floor_before": before,
            "inside_every_floor_now": inside(new)}


def _run(args) -> None:
    for s in args.sweeps:
        print(json.dumps(_one(s, args.floors)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--floors", required=True, type=Path, help="a floors file of sweep_floors (settings + floors)")
    p.add_argument("sweeps", nargs="+", type=Path, help="FOLDER/STEM of each finished sweep")
    args = p.parse_args(argv)
    args.func = _run
    return run_handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
