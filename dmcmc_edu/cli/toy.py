"""Commands of the 2D mixture rung.

demo                the 2D demo of ``make demo``: figures and a results table in runs/demo
sample              vanilla sampling with any integrator, or DLG with ``--dlg``; resumable
train-classifier    train a noise-level classifier (MLP) on a mixture target
inspect-checkpoint  print what a score_sde checkpoint holds
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from dmcmc_edu.cli.common import TARGET_HELP, add_command, chunk_seed, load_target, settings, sigma_range
from dmcmc_edu.core.integrators import INTEGRATORS, sample_from_noise
from dmcmc_edu.core.langevin import X_UPDATES
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import SIGMA_UPDATES
from dmcmc_edu.evaluation import metrics
from dmcmc_edu.evaluation.calibration import kl_to_exact
from dmcmc_edu.experiments.demo import run_demo
from dmcmc_edu.models.classifier import MLPClassifier, NoiseLevelClassifier
from dmcmc_edu.models.score_sde import format_inspection, inspect_checkpoint
from dmcmc_edu.runs import atomic_write, run_chunks, run_to_directory, save_npy, versions, write_json
from dmcmc_edu.training.classifier import train_noise_level_classifier

__all__ = ["add_parsers", "cmd_demo", "cmd_sample", "cmd_train_classifier", "cmd_inspect_checkpoint"]


# ----------------------------------------------------------------------------- demo


def cmd_demo(args) -> int:
    """the 2D demo: figures and a results table into runs/demo"""
    run_demo(args.out, fast=args.fast, progress=not args.quiet)
    return 0


# ----------------------------------------------------------------------------- sample


def _sample_vanilla(args, mix, smin, smax, out: Path) -> dict:
    """Vanilla sampling in chunks of ``--batch``; chunk k is seeded with ``chunk_seed(seed, k)``, so a rerun resumes."""

    def make_chunk(k: int, rows: int):
        """Chunk k: ``rows`` samples from noise and their NFE per sample."""
        g = torch.Generator().manual_seed(chunk_seed(args.seed, k))
        x, info = sample_from_noise(mix, (rows, mix.d), integrator=args.integrator, steps=args.steps,
                                    sigma_max=smax, sigma_min=smin, generator=g, tweedie_sigma=smin,
                                    final_tweedie=True if args.extra_tweedie else None)
        return x.numpy(), info.nfe

    samples, nfe = run_chunks(out / "chunks", args.n, args.batch, make_chunk, desc=f"{args.integrator} chunks",
                              progress=not args.quiet)
    atomic_write(out / "samples.npy", lambda tmp: save_npy(tmp, samples.astype(np.float64)))
    return {"nfe_per_sample": float(nfe)}


def _load_classifier(args, smin: float, smax: float):
    """The ``--classifier`` of a classifier sigma-update, checked against the run's noise-level grid."""
    if not args.classifier:
        raise SystemExit(f"error: --sigma-update {args.sigma_update} needs --classifier PATH "
                         "(train one with: python -m dmcmc_edu train-classifier --target ... --out PATH)")
    classifier = NoiseLevelClassifier.load(args.classifier)
    if not torch.allclose(classifier.grid.double(), noise_level_grid(smin, smax, classifier.n_levels), rtol=1e-6):
        raise SystemExit("error: the classifier was trained on another noise-level grid; pass the "
                         f"--sigma-min/--sigma-max it was trained with (its grid: {classifier.grid[0]:.4g} .. "
                         f"{classifier.grid[-1]:.4g}, {classifier.n_levels} levels)")
    return classifier


def _sample_dlg(args, mix, smin, smax, out: Path) -> dict:
    """DLG chains into ``out`` with :func:`dmcmc_edu.runs.run_to_directory` (checkpointed, resumable)."""
    classifier = _load_classifier(args, smin, smax) if args.sigma_update.startswith("classifier") else None
    outputs_per_chain = args.outputs_per_chain or max(1, -(-args.n // args.chains))
    cfg = DMCMCConfig(sigma_min=smin, sigma_max=smax, n_levels=args.n_levels, eta=args.eta, eta_rel=args.eta_rel,
                      n_skip=args.n_skip, integrator=args.integrator, steps=args.steps,
                      sigma_update=args.sigma_update, x_update=args.x_update, n_chains=args.chains,
                      outputs_per_chain=outputs_per_chain, seed=args.seed,
                      final_tweedie="always" if args.extra_tweedie else "auto")
    if classifier is not None:
        cfg.n_levels = classifier.n_levels
    sampler = DMCMCSampler(mix, cfg, data_shape=(mix.d,), classifier=classifier)
    res = run_to_directory(sampler, out, checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                           run_info={"target": args.target})
    led = res.ledger.per_output()
    return {"nfe_per_output_paper": led["paper"], "nfe_per_output_full": led["full"],
            "n_outputs": int(res.samples.shape[0])}


def cmd_sample(args) -> int:
    """sample a mixture target with an integrator, or with DLG (--dlg)

    Writes OUT/samples.npy (float64, [n, d]) and OUT/run.json (every setting and the counted NFE); with --dlg
    also OUT/ledger.json.  Re-running the same command resumes an interrupted run; existing outputs are never
    overwritten.
    """
    if args.n < 1 or args.steps < 1:
        raise SystemExit("error: --n and --steps must be >= 1")
    mix = load_target(args.target)
    smin, smax = sigma_range(args, mix)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result = _sample_dlg(args, mix, smin, smax, out) if args.dlg else _sample_vanilla(args, mix, smin, smax, out)
    run = {"command": "sample", "settings": settings(args) | {"sigma_min": smin, "sigma_max": smax},
           "result": result, "target": mix.to_dict() | {"spec": args.target}, "versions": versions(),
           "wall_seconds_this_call": time.time() - t0}
    if args.dlg:  # run_to_directory keeps its own run.json (settings + config); add ours beside it
        run = json.loads((out / "run.json").read_text()) | run
    write_json(out / "run.json", run)
    if not args.quiet:
        samples = np.load(out / "samples.npy")
        summ = metrics.summary(mix, torch.from_numpy(samples))
        print(json.dumps({"samples": list(samples.shape), **result, **{k: round(v, 4) for k, v in summ.items()}},
                         indent=1))
    return 0


# ----------------------------------------------------------------------------- train-classifier


def cmd_train_classifier(args) -> int:
    """train an MLP noise-level classifier on a mixture target"""
    mix = load_target(args.target)
    smin, smax = sigma_range(args, mix)
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
    """print what a score_sde NCSN++ checkpoint holds"""
    print(format_inspection(inspect_checkpoint(args.path, args.config)))
    return 0


# ----------------------------------------------------------------------------- parsers


def _add_sample(sub) -> None:
    s = add_command(sub, "sample", cmd_sample)
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
    g.add_argument("--sigma-update", default="exact", choices=list(SIGMA_UPDATES))
    g.add_argument("--classifier", default=None, help="a saved noise-level classifier (train-classifier)")
    g.add_argument("--eta", type=float, default=0.005, help="absolute Langevin step size")
    g.add_argument("--eta-rel", type=float, default=1.0, help="sigma-adapted step: eta + eta_rel * sigma^2 (paper: 0)")
    g.add_argument("--n-skip", type=int, default=1, help="Gibbs steps per output")
    g.add_argument("--chains", type=int, default=512)
    g.add_argument("--outputs-per-chain", type=int, default=None, help="default: ceil(n / chains)")
    g.add_argument("--n-levels", type=int, default=1000, help="size of the noise-level grid")
    g.add_argument("--x-update", default="ula", choices=list(X_UPDATES))
    g.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint every K output rounds")


def _add_train_classifier(sub) -> None:
    t = add_command(sub, "train-classifier", cmd_train_classifier)
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


def add_parsers(sub) -> None:
    """Add ``demo``, ``sample``, ``train-classifier`` and ``inspect-checkpoint`` to the sub-command parsers."""
    d = add_command(sub, "demo", cmd_demo)
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--fast", action="store_true", help="fewer samples (for CI)")
    d.add_argument("--quiet", action="store_true")
    _add_sample(sub)
    _add_train_classifier(sub)
    c = add_command(sub, "inspect-checkpoint", cmd_inspect_checkpoint)
    c.add_argument("path")
    c.add_argument("--config", required=True,
                   help="cifar10_ncsnpp_continuous | celebahq_256_ncsnpp_continuous | PATH to a config.json")
