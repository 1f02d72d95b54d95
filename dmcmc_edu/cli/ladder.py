"""The ``ladder`` command.

ladder   NFE-quality sweep of the six integrators from noise, the two controls and DLG on a mixture target
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from dmcmc_edu.cli.choices import INTEGRATORS
from dmcmc_edu.cli.common import CommandError, add_command, name_list, positive_int, seed

__all__ = ["add_parsers", "cmd_ladder", "ladder_command"]

_TARGET_HELP = "ring | grid | lowrank | PATH.json (see `sample --help` for the JSON layout)"

N_MULTIPLE = 20
"""``--n`` must be a multiple of this: the DLG points use 1, 2, 5, 10 and 20 outputs per chain, n / T chains each."""


def _check_ladder(args) -> None:
    """The rules between ``ladder``'s options (each option's own range is checked by its argparse type)."""
    if args.n is not None and args.n % N_MULTIPLE:
        lower = args.n - args.n % N_MULTIPLE
        near = f"{lower} or {lower + N_MULTIPLE}" if lower else f"{N_MULTIPLE} or a larger multiple"
        raise CommandError(f"--n {args.n} is not a multiple of {N_MULTIPLE}: the DLG points split n outputs into "
                           f"chains of 1, 2, 5, 10 or 20 outputs each; use --n {near}")


def ladder_command(args) -> str:
    """The canonical command line of a sweep (recorded in its results; options at their defaults left out)."""
    parts = ["python -m dmcmc_edu ladder", "--target", str(args.target)]
    for flag in ("fast", "learned"):
        if getattr(args, flag):
            parts.append(f"--{flag}")
    for opt in ("n", "seed", "integrators"):
        v = getattr(args, opt)
        if v not in (None, 0):
            parts += [f"--{opt}", str(v)]
    parts += ["--out", str(args.out)]
    return " ".join(shlex.quote(p) if i else p for i, p in enumerate(parts))


def cmd_ladder(args) -> int:
    """NFE-quality sweep: six integrators from noise, controls, DLG (exact / classifier)

    Sweeps NFE (about 5 to 1000) for the six integrators from sigma_max, two controls (a re-allocated schedule;
    a restart from a small sigma without MCMC) and DLG with each integrator (exact posterior, classifier argmax,
    classifier sample) over a grid of settings.  Writes OUT/<stem>.json and .csv (every point with its seed,
    settings, NFE ledger and metrics), OUT/<stem>_fig3.png and OUT/<stem>_findings.{json,md}; <stem> is the
    target name plus _learned / _fast.  Re-running the same command resumes (points already in the JSON are
    skipped).  The noise-level classifier (and with --learned the denoiser) is trained once and cached in OUT.
    """
    from dmcmc_edu.experiments.ladder import run_ladder, target_stem

    _check_ladder(args)
    doc = run_ladder(args.target, args.out, fast=args.fast, learned=args.learned, n=args.n, seed=args.seed,
                     progress=not args.quiet, plot=not args.no_plot, command=ladder_command(args),
                     integrators=args.integrators.split(",") if args.integrators else None,
                     workers=args.workers)
    stem = target_stem(args.target, args.learned, args.fast, args.seed)
    if not args.quiet:
        print((Path(args.out) / f"{stem}_findings.md").read_text())
    n_err = sum(1 for p in doc["points"] if p.get("error"))
    print(json.dumps({"points": len(doc["points"]), "failed_points": n_err, "results": f"{args.out}/{stem}.json"}))
    return 0


def add_parsers(sub) -> None:
    """Add ``ladder`` to the sub-command parsers."""
    p = add_command(sub, "ladder", cmd_ladder, example="--target ring --fast --out runs/ladder")
    p.add_argument("--target", default="ring", help=_TARGET_HELP)
    p.add_argument("--out", default="runs/ladder")
    p.add_argument("--fast", action="store_true", help="a small sweep (500 outputs per point; < 60 s on the ring)")
    p.add_argument("--learned", action="store_true",
                   help="sample with an MLP denoiser trained by denoising score matching instead of the exact one")
    p.add_argument("--n", type=positive_int, default=None,
                   help=f"outputs per point, a multiple of {N_MULTIPLE} (default 2000; --fast: 500)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--integrators", type=name_list(INTEGRATORS, "integrator"), default=None,
                   help=f"comma-separated subset of {', '.join(INTEGRATORS)}, e.g. kar1,kar2 "
                        "(default: the paper's six)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="processes running points in parallel (one thread each)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quiet", action="store_true")
