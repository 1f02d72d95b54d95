"""Noise floors of one sample size, computed once (issue 18): what an exact sampler scores on every metric.

    python bench/floors.py --target ring --n 1000 --out bench/results/floors
    python bench/floors.py --target ring --n 2000 --out bench/results/floors

``metrics.exact_floors``: 200 pairs of fresh exact sets of n samples; per metric the 0.995 quantile (the
threshold), its bootstrap interval, mean, sd and the pass rate of the exact sets.  Writes
``OUT/<target>_n<n>.json`` and ``OUT/<target>_n<n>.png`` (the threshold and its interval per metric against the
exact scores).  The walkthroughs read these files, so two notebooks asking for the floor of one size print the same
number.  A file made with other settings is refused in one line, never replaced; the same settings re-write nothing.
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

from dmcmc_edu.cli.common import run_handler  # noqa: E402
from dmcmc_edu.evaluation import metrics  # noqa: E402
from dmcmc_edu.experiments.ladder import _clean  # noqa: E402
from dmcmc_edu.runs import atomic_write, refuse_other_settings, target_sha256, write_json  # noqa: E402
from dmcmc_edu.targets import load_target  # noqa: E402


def plot_floors(floors: dict, title: str):
    """One panel per metric: the threshold (the quantile) with its 95% interval and the mean of exact sets."""
    keys = list(metrics.FLOOR_METRICS)
    fig, axes = plt.subplots(1, len(keys), figsize=(2.1 * len(keys), 2.8))
    for ax, k in zip(axes, keys):
        f = floors[k]
        lo, hi = f["threshold_ci"]
        ax.errorbar([0], [f["threshold"]], yerr=[[f["threshold"] - lo], [hi - f["threshold"]]], fmt="o", color="C3",
                    capsize=3, label=f"threshold ({f['quantile']:g} quantile, 95% CI)")
        ax.plot([0], [f["mean"]], "k_", ms=14, label="mean of exact sets")
        ax.set(xticks=[], title=k + (" |dev|" if f["read_as"] == "abs_dev" else ""), ylim=(0, None))
    axes[0].set_ylabel("score of an exact sample set")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    return fig


def _run(args) -> int:
    torch.set_num_threads(1)
    out = Path(args.out)
    mix = load_target(args.target)
    path = out / f"{Path(args.target).stem}_n{args.n}.json"
    settings = {"target": args.target, "target_sha256": target_sha256(mix.to_dict()), "n": args.n,
                "repeats": args.repeats, "seed": args.seed, "quantile": metrics.FLOOR_QUANTILE}
    if refuse_other_settings(path, settings) is not None:
        print(json.dumps({"floors": str(path), "written": False}))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    floors = metrics.exact_floors(mix, args.n, repeats=args.repeats, seed=args.seed)
    seconds = time.perf_counter() - t0
    command = f"python bench/floors.py --target {args.target} --n {args.n} --out {args.out}"
    write_json(path, _clean({"settings": settings, "command": command, "seconds": seconds, "floors": floors}),
               indent=1)
    fig = plot_floors(floors, f"{args.target}, n = {args.n}: {args.repeats} exact pairs")
    atomic_write(path.with_suffix(".png"), lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)
    print(json.dumps({"floors": str(path), "written": True, "seconds": round(seconds, 1)}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="ring")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=metrics.EXACT_FLOOR_REPEATS)
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--out", default="runs/floors")
    args = p.parse_args(argv)
    args.func = _run
    return run_handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
