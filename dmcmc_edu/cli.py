"""Command-line interface: ``python -m dmcmc_edu <command> ...`` (also installed as ``dmcmc-edu``).

Commands
--------
demo                the 2D demo of ``make demo``: figures and a results table in runs/demo
sample              vanilla sampling with any integrator, or DLG with ``--dlg``; resumable
train-classifier    train a noise-level classifier (MLP) on a mixture target
inspect-checkpoint  print what a score_sde checkpoint holds
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dmcmc_edu.core.integrators import INTEGRATORS, get_integrator
from dmcmc_edu.core.random import normal
from dmcmc_edu.core.tweedie import tweedie
from dmcmc_edu.runs import atomic_write

TARGET_HELP = "ring | grid | lowrank | PATH.json (a mixture file: weights, means, covariances or factors+diagonal)"


def _versions() -> dict:
    import dmcmc_edu

    return {"python": platform.python_version(), "torch": torch.__version__,
            "dmcmc_edu": getattr(dmcmc_edu, "__version__", "0")}


def _load_target(spec: str):
    from dmcmc_edu.targets import load_target

    try:
        return load_target(spec)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: --target {spec!r}: {e}") from None


def _sigma_range(args, mix) -> tuple[float, float]:
    smin = args.sigma_min if args.sigma_min is not None else mix.default_sigma_min()
    smax = args.sigma_max if args.sigma_max is not None else mix.default_sigma_max()
    if not 0 < smin < smax:
        raise SystemExit(f"error: need 0 < --sigma-min < --sigma-max, got {smin} and {smax}")
    return smin, smax


# ----------------------------------------------------------------------------- sample


def _save_npy(path, arr) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a temporary name
        np.save(f, arr)


def _sample_vanilla(args, mix, smin, smax, out: Path) -> dict:
    """Vanilla sampling in chunks; chunk k uses seed (seed, k), so an interrupted run resumes exactly."""
    from tqdm import tqdm

    from dmcmc_edu.core.contract import CountingDenoiser

    fn = get_integrator(args.integrator)
    chunks = out / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    n_chunks = (args.n + args.batch - 1) // args.batch
    counter = CountingDenoiser(mix, n_samples=args.n)
    nfe_file = out / "chunks" / "nfe.json"
    nfe = json.loads(nfe_file.read_text()) if nfe_file.exists() else {}
    for k in tqdm(range(n_chunks), desc=f"{args.integrator} chunks", disable=args.quiet):
        path = chunks / f"chunk_{k:05d}.npy"
        if path.exists() and str(k) in nfe:
            continue
        b = min(args.batch, args.n - k * args.batch)
        g = torch.Generator().manual_seed(args.seed * 100003 + k)
        c = CountingDenoiser(counter, n_samples=b)
        x = normal((b, mix.d), g, torch.float64, "cpu") * smax
        x, info = fn(c, x, smax, smin, args.steps, generator=g)
        if info.sigma_end > 0 or args.extra_tweedie:
            x = tweedie(c, x, smin)
        arr = x.numpy()
        atomic_write(path, lambda tmp, arr=arr: _save_npy(tmp, arr))
        nfe[str(k)] = c.nfe
        atomic_write(nfe_file, lambda tmp: Path(tmp).write_text(json.dumps(nfe)))
    samples = np.concatenate([np.load(chunks / f"chunk_{k:05d}.npy") for k in range(n_chunks)])
    np.save(out / "samples.npy", samples.astype(np.float64))
    return {"nfe_per_sample": float(np.mean([nfe[str(k)] for k in range(n_chunks)]))}


def _sample_dlg(args, mix, smin, smax, out: Path) -> dict:
    from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
    from dmcmc_edu.runs import run_to_directory

    classifier = None
    if args.sigma_update.startswith("classifier"):
        if not args.classifier:
            raise SystemExit(f"error: --sigma-update {args.sigma_update} needs --classifier PATH "
                             "(train one with: python -m dmcmc_edu train-classifier --target ... --out PATH)")
        from dmcmc_edu.models.classifier import NoiseLevelClassifier

        classifier = NoiseLevelClassifier.load(args.classifier)
    outputs_per_chain = args.outputs_per_chain or max(1, -(-args.n // args.chains))
    cfg = DMCMCConfig(sigma_min=smin, sigma_max=smax, n_levels=args.n_levels, eta=args.eta, eta_rel=args.eta_rel,
                      n_skip=args.n_skip, integrator=args.integrator, steps=args.steps,
                      sigma_update=args.sigma_update, x_update=args.x_update, n_chains=args.chains,
                      outputs_per_chain=outputs_per_chain, seed=args.seed,
                      final_tweedie="always" if args.extra_tweedie else "auto")
    if classifier is not None:
        from dmcmc_edu.core.schedules import noise_level_grid

        cfg.n_levels = classifier.n_levels
        if not torch.allclose(classifier.grid.double(), noise_level_grid(smin, smax, cfg.n_levels), rtol=1e-6):
            raise SystemExit("error: the classifier was trained on another noise-level grid; pass the "
                             f"--sigma-min/--sigma-max it was trained with (its grid: {classifier.grid[0]:.4g} .. "
                             f"{classifier.grid[-1]:.4g}, {classifier.n_levels} levels)")
    sampler = DMCMCSampler(mix, cfg, data_shape=(mix.d,), classifier=classifier)
    res = run_to_directory(sampler, out, checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                           run_info={"target": args.target})
    led = res.ledger.per_output()
    return {"nfe_per_output_paper": led["paper"], "nfe_per_output_full": led["full"],
            "n_outputs": int(res.samples.shape[0])}


def cmd_sample(args) -> int:
    mix = _load_target(args.target)
    smin, smax = _sigma_range(args, mix)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result = _sample_dlg(args, mix, smin, smax, out) if args.dlg else _sample_vanilla(args, mix, smin, smax, out)
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    settings.update(sigma_min=smin, sigma_max=smax)
    run = {"command": "sample", "settings": settings, "result": result, "target": mix.to_dict() | {"spec": args.target},
           "versions": _versions(), "wall_seconds_this_call": time.time() - t0}
    if args.dlg:  # run_to_directory keeps its own run.json (settings + config); add ours beside it
        prev = json.loads((out / "run.json").read_text())
        run = prev | run
    atomic_write(out / "run.json", lambda tmp: Path(tmp).write_text(json.dumps(run, indent=2, default=str)))
    samples = np.load(out / "samples.npy")
    if not args.quiet:
        from dmcmc_edu.evaluation import metrics

        summ = metrics.summary(mix, torch.from_numpy(samples))
        print(json.dumps({"samples": list(samples.shape), **result, **{k: round(v, 4) for k, v in summ.items()}},
                         indent=1))
    return 0


# ----------------------------------------------------------------------------- train-classifier


def cmd_train_classifier(args) -> int:
    from dmcmc_edu.evaluation.calibration import kl_to_exact
    from dmcmc_edu.models.classifier import MLPClassifier, NoiseLevelClassifier
    from dmcmc_edu.training.classifier import train_noise_level_classifier
    from dmcmc_edu.core.schedules import noise_level_grid

    mix = _load_target(args.target)
    smin, smax = _sigma_range(args, mix)
    grid = noise_level_grid(smin, smax, args.n_levels)
    torch.manual_seed(args.seed)  # network initialisation
    clf = NoiseLevelClassifier(MLPClassifier(mix.d, args.n_levels, hidden=args.hidden), grid,
                               config={"target": args.target, "steps": args.steps, "seed": args.seed})
    g = torch.Generator().manual_seed(args.seed)
    train_noise_level_classifier(clf, mix.sample, steps=args.steps, batch_size=args.batch, generator=g,
                                 lr_schedule="cosine", progress=not args.quiet)
    clf.save(args.out)
    kl = kl_to_exact(clf, mix, n=2000, generator=torch.Generator().manual_seed(1))
    kl = {k: float(v) for k, v in kl.items() if not (isinstance(v, torch.Tensor) and v.numel() > 1)}
    print(json.dumps({"saved": args.out, "kl_to_exact": kl}, indent=1))
    return 0


# ----------------------------------------------------------------------------- inspect-checkpoint


def cmd_inspect_checkpoint(args) -> int:
    from dmcmc_edu.models.score_sde import format_inspection, inspect_checkpoint

    print(format_inspection(inspect_checkpoint(args.path, args.config)))
    return 0


# ----------------------------------------------------------------------------- demo


def cmd_demo(args) -> int:
    from dmcmc_edu.experiments.demo import run_demo

    run_demo(args.out, fast=args.fast, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dmcmc_edu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the 2D demo: figures and a results table into runs/demo")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--fast", action="store_true", help="fewer samples (for CI)")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("sample", help="sample a mixture target with an integrator, or with DLG (--dlg)",
                       description="Writes OUT/samples.npy (float64, [n, d]) and OUT/run.json (every setting and "
                                   "the counted NFE); with --dlg also OUT/ledger.json.  Re-running the same "
                                   "command resumes an interrupted run; existing outputs are never overwritten.")
    s.add_argument("--target", default="ring", help=TARGET_HELP)
    s.add_argument("--integrator", default="kar1", choices=list(INTEGRATORS))
    s.add_argument("--steps", type=int, default=18, help="integrator steps (KAR: 2*steps-1 NFE; others: steps)")
    s.add_argument("--n", type=int, default=1000, help="number of samples (outputs)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--sigma-min", type=float, default=None,
                   help="default: the target's default_sigma_min() = min(0.01, 0.1 * smallest component std)")
    s.add_argument("--sigma-max", type=float, default=None,
                   help="default: the target's default_sigma_max() ~ largest pairwise distance of the data")
    s.add_argument("--batch", type=int, default=4096, help="vanilla: samples per chunk (a chunk is the unit of resume)")
    s.add_argument("--extra-tweedie", action="store_true",
                   help="apply the final Tweedie step even after KAR1/KAR2 (the authors' code does)")
    s.add_argument("--quiet", action="store_true")
    g = s.add_argument_group("DLG (with --dlg)")
    g.add_argument("--dlg", action="store_true", help="Denoising Langevin Gibbs chains instead of sampling from noise")
    g.add_argument("--sigma-update", default="exact", choices=["exact", "classifier-argmax", "classifier-sample"])
    g.add_argument("--classifier", default=None, help="a saved noise-level classifier (train-classifier)")
    g.add_argument("--eta", type=float, default=0.005, help="absolute Langevin step size")
    g.add_argument("--eta-rel", type=float, default=1.0, help="sigma-adapted step: eta + eta_rel * sigma^2 (paper: 0)")
    g.add_argument("--n-skip", type=int, default=1, help="Gibbs steps per output")
    g.add_argument("--chains", type=int, default=512)
    g.add_argument("--outputs-per-chain", type=int, default=None, help="default: ceil(n / chains)")
    g.add_argument("--n-levels", type=int, default=1000, help="size of the noise-level grid")
    g.add_argument("--x-update", default="ula", choices=["ula", "mala"])
    g.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint every K output rounds")
    s.set_defaults(func=cmd_sample)

    t = sub.add_parser("train-classifier", help="train an MLP noise-level classifier on a mixture target")
    t.add_argument("--target", default="ring", help=TARGET_HELP)
    t.add_argument("--out", required=True, help="output file (.pt)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch", type=int, default=512)
    t.add_argument("--hidden", type=int, default=256)
    t.add_argument("--n-levels", type=int, default=1000)
    t.add_argument("--sigma-min", type=float, default=None)
    t.add_argument("--sigma-max", type=float, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train_classifier)

    c = sub.add_parser("inspect-checkpoint", help="print what a score_sde NCSN++ checkpoint holds")
    c.add_argument("path")
    c.add_argument("--config", required=True,
                   help="cifar10_ncsnpp_continuous | celebahq_256_ncsnpp_continuous | PATH to a config.json")
    c.set_defaults(func=cmd_inspect_checkpoint)

    # commands of the other rungs live in their own modules, each with add_parsers(subparsers)
    import importlib

    for mod in EXTRA_COMMAND_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        module.add_parsers(sub)
    return p


EXTRA_COMMAND_MODULES = ("dmcmc_edu.cli_ladder", "dmcmc_edu.cli_mnist", "dmcmc_edu.cli_gpu")
"""Modules that add sub-commands (ladder; MNIST training; GPU rung: fid, distributed sampling)."""


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sample" and (args.n < 1 or args.steps < 1):
        raise SystemExit("error: --n and --steps must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
