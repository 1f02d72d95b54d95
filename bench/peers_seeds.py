"""The peers comparison over seeds (issue 18): k-diffusion's samplers, ours from sigma_max and DLG at each budget.

    python bench/peers_seeds.py --target ring --seeds 0-7 --out bench/results/seeds
    python bench/peers_seeds.py --target lowrank --seeds 0-7 --out bench/results/seeds

1. Per seed S, ``bench/peers.py --target T --seed S`` (its samplers' noise seeded by S and the budget), read against
   the exact floors ``OUT/<T>_floors_n<n>.json`` and with the DLG rows of the ladder replicate of the same seed
   (``OUT/<T>.json`` for seed 0, ``OUT/<T>_seedS.json`` otherwise: ``bench/ladder_seeds.py`` writes them), into
   ``OUT/peers_<T>[_seedS].{json,md,png}``.  A seed whose file exists with the same settings is read back, not
   re-run; one made with other settings is refused in one line.
2. ``experiments.ladder.peers.analyse_peers``: per budget, each family's best setting over the seeds (seeds inside
   every floor, median W2 with its interval) and the verdicts DLG vs the best other sampler ->
   ``OUT/peers_<T>_seeds.{json,md,png}``.

Without ``--out`` the report goes to a new folder ``runs/peers_seeds-<UTC time>``, which holds no ladder
replicates: name the folder that holds them with ``--ladder-dir``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dmcmc_edu.cli.common import run_handler, seed_list  # noqa: E402
from dmcmc_edu.experiments.ladder import _clean, target_stem  # noqa: E402
from dmcmc_edu.experiments.ladder.peers import analyse_peers, peers_seeds_markdown, plot_peers_seeds  # noqa: E402
from dmcmc_edu.runs import RunRefused, atomic_write, refuse_other_settings, write_json  # noqa: E402


def _peers_module():
    spec = importlib.util.spec_from_file_location("bench_peers", Path(__file__).with_name("peers.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(args) -> int:
    peers = _peers_module()
    ladder_dir = Path(args.ladder_dir or args.out)
    out = Path(args.out) if args.out else None
    if out is None:
        from dmcmc_edu.runs import fresh_folder

        out = fresh_folder("peers_seeds")
    out.mkdir(parents=True, exist_ok=True)
    stem = target_stem(args.target)
    floors_file = ladder_dir / f"{stem}_floors_n{args.n}.json"
    if not floors_file.exists():
        raise RunRefused(f"{floors_file}: no floors file (bench/ladder_seeds.py --target {args.target} --out "
                         f"{ladder_dir} writes it)")
    settings = {"target": args.target, "seeds": args.seeds, "n": args.n, "budgets": args.budgets,
                "floors_file": floors_file.name}
    report = out / f"peers_{stem}_seeds.json"
    refuse_other_settings(report, settings, extendable=("seeds",))
    # the sampling time of each seed, kept from an earlier report when that seed is read back rather than run
    earlier = json.loads(report.read_text())["findings"] if report.exists() else {}
    seconds = {int(k): v for k, v in (earlier.get("run_seconds_per_seed")
                                      or earlier.get("run_seconds_this_call") or {}).items()}
    peer_docs, ladder_docs, commands = [], [], []
    for s in args.seeds:
        ladder = ladder_dir / f"{target_stem(args.target, seed=s)}.json"
        if not ladder.exists():
            raise RunRefused(f"{ladder}: no ladder replicate for seed {s} (bench/ladder_seeds.py --target "
                             f"{args.target} --seeds {s} --out {ladder_dir})")
        path = out / f"{peers.peers_stem(args.target, s)}.json"
        argv = ["--target", args.target, "--seed", str(s), "--n", str(args.n), "--out", str(out),
                "--ladder", str(ladder), "--floors", str(floors_file), "--budgets", ",".join(map(str, args.budgets))]
        if path.exists():
            doc = json.loads(path.read_text())
            m = doc["meta"]
            if (m.get("n"), m.get("seed"), m.get("budgets"), Path(m.get("floors_file") or "").name) != \
                    (args.n, s, args.budgets, floors_file.name):
                raise RunRefused(f"{path}: made with other settings (n {m.get('n')}, seed {m.get('seed')}, budgets "
                                 f"{m.get('budgets')}, floors {m.get('floors_file')}); move it away or name another "
                                 "--out")
        else:
            if args.report_only:
                raise RunRefused(f"{path}: seed {s} has not been run (drop --report-only)")
            t0 = time.perf_counter()
            peers.main(argv)
            seconds[s] = time.perf_counter() - t0
            doc = json.loads(path.read_text())
        peer_docs.append(doc)
        ladder_docs.append(json.loads(ladder.read_text()))
        commands.append(doc["meta"]["command"])
    floors = peers.read_floors(floors_file)
    found = analyse_peers(peer_docs, ladder_docs, floors, args.budgets)
    found["commands"] = commands
    found["run_seconds_per_seed"] = {s: seconds[s] for s in args.seeds if s in seconds}
    write_json(report, _clean({"settings": settings, "findings": found}), indent=1)
    cmd = "python bench/peers_seeds.py " + " ".join(a for a in args.argv if a != "--report-only")  # what makes it
    text = peers_seeds_markdown(found, [cmd], title=f"Peers on `{args.target}` over {len(args.seeds)} seeds")
    atomic_write(out / f"peers_{stem}_seeds.md", lambda tmp: Path(tmp).write_text(text))
    fig = plot_peers_seeds(found, title=f"{args.target}: the best setting of each family per NFE budget, "
                                        f"{len(args.seeds)} seeds")
    atomic_write(out / f"peers_{stem}_seeds.png",
                 lambda tmp: fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png"))
    plt.close(fig)
    print(text)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="ring")
    p.add_argument("--seeds", type=seed_list, default=seed_list("0-7"), help="e.g. 0-7 (default)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--budgets", type=lambda v: [int(x) for x in v.split(",")], default=[5, 10, 20, 50])
    p.add_argument("--out", default=None, help="default: a new folder runs/peers_seeds-<UTC time>")
    p.add_argument("--ladder-dir", default=None,
                   help="the folder of the ladder replicates and their floors file (default: --out)")
    p.add_argument("--report-only", action="store_true", help="refuse to run a missing seed")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.func = _run
    return run_handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
