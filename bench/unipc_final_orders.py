"""UniPC's two last-step order conventions compared: the authors' (the default) and diffusers'.

    python bench/unipc_final_orders.py --out bench/results/unipc_final_orders.json

From sigma = 80 to 0.01 on Karras levels (then 0), 256 samples (seed 0), the error of ``unipc`` with
``lower_order_final="authors"`` and ``"diffusers"`` against an accurate reference: on a Gaussian N(mu, 0.5 I) the
closed-form probability-flow map then the Tweedie step; on the ring mixture KAR1 with 800 steps.  Orders 2-4, both
B(h) variants, 4-20 steps: 84 configurations.  Prints and stores the mean absolute error of each and how often each
convention is the more accurate.  Without ``--out`` the JSON goes to a new folder
(``runs/unipc_final_orders-<UTC time>/unipc_final_orders.json``); the committed file
(``bench/results/unipc_final_orders.json``) is rewritten only when named, as above.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from dmcmc_edu.core.integrators import kar1
from dmcmc_edu.runs import fresh_folder
from dmcmc_edu.solvers import unipc
from dmcmc_edu.targets import ring

MU, TAU, SIGMA_MAX, SIGMA_MIN = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.5, 80.0, 0.01


def gaussian(x, sigma):
    return MU + TAU / (TAU + sigma[:, None] ** 2) * (x - MU)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None,
                   help="the JSON file to write (default: unipc_final_orders.json in a new folder "
                        "runs/unipc_final_orders-<UTC time>)")
    return p


def out_folder(args) -> Path:
    """The file ``--out``, or ``unipc_final_orders.json`` in a new folder ``runs/unipc_final_orders-<UTC time>``."""
    return Path(args.out) if args.out else fresh_folder("unipc_final_orders") / "unipc_final_orders.json"


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    out = out_folder(args)
    torch.set_num_threads(1)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    end = MU + ((TAU + SIGMA_MIN**2) / (TAU + SIGMA_MAX**2)) ** 0.5 * (x - MU)
    targets = {"gaussian": (gaussian, gaussian(end, torch.full((256,), SIGMA_MIN, dtype=torch.float64))),
               "ring": (ring(), kar1(ring(), x, SIGMA_MAX, SIGMA_MIN, 800)[0])}
    rows = []
    for tname, (model, ref) in targets.items():
        for order in (2, 3, 4):
            for variant in ("bh1", "bh2"):
                for steps in (4, 5, 6, 8, 10, 15, 20):
                    err = {conv: (unipc(model, x, SIGMA_MAX, SIGMA_MIN, steps, order=order, variant=variant,
                                        lower_order_final=conv)[0] - ref).abs().mean().item()
                           for conv in ("authors", "diffusers")}
                    rows.append({"target": tname, "order": order, "variant": variant, "steps": steps, **err})
    wins = sum(r["authors"] < r["diffusers"] for r in rows)
    ratio = statistics.median(r["authors"] / r["diffusers"] for r in rows)
    print(f"the authors' convention has the smaller mean absolute error in {wins} of {len(rows)} configurations; "
          f"median error ratio authors / diffusers {ratio:.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"authors_better": wins, "configurations": len(rows),
                                          "median_ratio": ratio, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
