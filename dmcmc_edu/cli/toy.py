"""Commands of the 2D mixture rung.

demo                the 2D demo of ``make demo``: figures and a results table in runs/demo
sample              vanilla sampling with any integrator, or DLG with ``--dlg``; resumable
train-classifier    train a noise-level classifier (MLP) on a mixture target
inspect-checkpoint  print what a score_sde checkpoint holds
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from dmcmc_edu.cli.choices import INTEGRATORS, SIGMA_UPDATES, X_UPDATES
from dmcmc_edu.cli.common import (
    TARGET_HELP,
    CommandError,
    add_command,
    add_yes,
    check_run_size,
    check_sigma_order,
    check_torch_files,
    chunk_seed,
    dlg_estimate,
    int_at_least,
    load_target,
    nonnegative_float,
    pilot_cost,
    positive_float,
    positive_int,
    refuse_existing,
    seed,
    settings,
    sigma_range,
)

# torch and the library are imported by the handlers, so that --help stays fast (dmcmc_edu.cli.common)

__all__ = ["add_parsers", "cmd_demo", "cmd_sample", "cmd_train_classifier", "cmd_inspect_checkpoint"]

N_LEVELS = 1000
"""The size of the noise-level grid of ``sample --dlg`` without a classifier (with one: the classifier's)."""

MAX_DEFAULT_CHAINS = 512
"""``sample --dlg`` without ``--chains`` runs at most this many chains (see :func:`dlg_shape`)."""


def dlg_shape(n: int, chains: int | None = None, outputs_per_chain: int | None = None) -> tuple[int, int]:
    """``(chains, outputs_per_chain)`` of a DLG run that gives ``n`` outputs, for the options given (None: not given).

    Without either: the fewest rounds with at most :data:`MAX_DEFAULT_CHAINS` chains, ``ceil(n / 512)``, and
    ``ceil(n / rounds)`` chains, so ``chains x rounds`` exceeds ``n`` by less than one round's worth of chains
    per round (``--n 2000``: 500 chains x 4, exactly 2000; ``--n 200``: 200 chains x 1).  With one of them the other
    is ``ceil(n / given)``.  The outputs beyond ``n`` (the rest of the last round) are discarded.
    """
    if chains is None:
        rounds = outputs_per_chain or -(-n // MAX_DEFAULT_CHAINS)
        chains = -(-n // rounds)
    return chains, outputs_per_chain or -(-n // chains)


# ----------------------------------------------------------------------------- demo


def cmd_demo(args) -> int:
    """the 2D demo: figures and a results table into runs/demo

    Writes OUT/results.csv, .json, .md, samples.png, w2_vs_nfe.png and the run record OUT/run.json.  OUT is a run
    folder: the same command again reports the finished demo and writes nothing; a folder that holds another
    command's run, a demo with other settings, or files that are not a run is refused, and no file is replaced.
    """
    from dmcmc_edu.experiments.demo import run_demo

    run_demo(args.out, fast=args.fast, progress=not args.quiet)
    return 0


# ----------------------------------------------------------------------------- sample


def _sample_vanilla(args, mix, smin, smax, out: Path) -> dict:
    """Vanilla sampling in chunks of ``--batch``; chunk k is seeded with ``chunk_seed(seed, k)``, so a rerun resumes."""
    import numpy as np
    import torch

    from dmcmc_edu.core.integrators import sample_from_noise
    from dmcmc_edu.registry import get_integrator
    from dmcmc_edu.runs import run_chunks, save_once

    integrator = get_integrator(args.integrator)  # the core's six and the solvers (dmcmc_edu.registry)

    def make_chunk(k: int, rows: int):
        """Chunk k: ``rows`` samples from noise and their NFE per sample."""
        g = torch.Generator().manual_seed(chunk_seed(args.seed, k))
        x, info = sample_from_noise(mix, (rows, mix.d), integrator=integrator, steps=args.steps,
                                    sigma_max=smax, sigma_min=smin, generator=g, tweedie_sigma=smin,
                                    final_tweedie=True if args.extra_tweedie else None)
        return x.numpy(), info.nfe

    samples, nfe = run_chunks(out / "chunks", args.n, args.batch, make_chunk, desc=f"{args.integrator} chunks",
                              progress=not args.quiet)
    save_once(out / "samples.npy", samples.astype(np.float64))
    return {"nfe_per_sample": float(nfe)}


_VANILLA_SETTINGS = ("integrator", "steps", "n", "seed", "batch", "extra_tweedie")
"""The options that change the outputs of vanilla ``sample`` (with the sigma range); --dlg's are its config's."""


def _check_classifier_target(args, classifier, mix) -> None:
    """Refuse a classifier trained on another target than ``--target`` (by content); warn if it records none."""
    from dmcmc_edu.runs import target_sha256

    trained_on = classifier.config.get("target_sha256")
    if trained_on is None:
        print(f"warning: the classifier {args.classifier} does not record the target it was trained on; "
              f"it is used as it is (retrain it with train-classifier to have it checked)", file=sys.stderr)
    elif trained_on != target_sha256(mix.to_dict()):
        raise CommandError(f"the classifier {args.classifier} was trained on another target "
                           f"({classifier.config.get('target')!r}, sha256 {trained_on[:12]}) than --target "
                           f"{args.target} (sha256 {target_sha256(mix.to_dict())[:12]}); train one on this target "
                           "with: python -m dmcmc_edu train-classifier --target ... --out PATH")


PILOT_ROWS = 256
"""Samples of the pilot run that measures the cost of one denoiser evaluation for the size check."""


def estimate_sample(args, mix, smin: float, smax: float, sampler) -> tuple[float, float, str]:
    """``(seconds, bytes, how)``: the estimated time and disk use of a ``sample`` run, and how they were made.

    A pilot of at most :data:`PILOT_ROWS` samples with the run's integrator measures the NFE and the seconds per
    denoiser evaluation per sample (``s_eval``; :func:`~dmcmc_edu.cli.common.pilot_cost`).  Vanilla: ``n x NFE x
    s_eval``; disk: the chunks and samples.npy, float64 (``16 n d`` bytes).  DLG:
    :func:`~dmcmc_edu.cli.common.dlg_estimate` (the chains' start, ``n_skip`` Gibbs steps and the denoising run per
    output); disk: the rounds and samples.npy.
    """
    rows = min(args.n, PILOT_ROWS)
    nfe, per_eval = pilot_cost(mix, (rows, mix.d), args.integrator, args.steps, smin, smax,
                               final_tweedie=True if args.extra_tweedie else None)
    d = mix.d
    if sampler is None:
        total, disk = args.n * nfe * per_eval, 16.0 * args.n * d
        how = (f"{args.n:,} samples x {nfe:,.0f} NFE x {per_eval * 1e6:.2g} us per evaluation, measured on "
               f"{rows} samples; disk: chunks + samples.npy, float64")
        return total, disk, how
    return dlg_estimate(sampler.config, nfe, per_eval, elements=d, kept=args.n, pilot=f"{rows} samples")


def _run_directory(args, mix, smin: float, smax: float, sampler):
    """The run folder ``--out`` with the fingerprint of this call (vanilla: its settings; DLG: its sampler's)."""
    from dmcmc_edu.runs import DLG_OUTPUTS, RunDirectory, fingerprint, sampler_fingerprint

    labels = {"target": args.target, "classifier": args.classifier}
    if sampler is not None:
        fp = sampler_fingerprint(sampler, "sample-dlg", settings={"n": args.n})
        return RunDirectory(args.out, fp, outputs=DLG_OUTPUTS, labels=labels)
    s = {k: getattr(args, k) for k in _VANILLA_SETTINGS} | {"sigma_min": smin, "sigma_max": smax}
    return RunDirectory(args.out, fingerprint("sample", s, target=mix.to_dict()), outputs=("samples.npy",),
                        labels=labels)


def _print_summary(args, mix, out: Path, result: dict) -> None:
    """The printed summary of a run: the samples' shape, the result and the metrics against the target."""
    import numpy as np
    import torch

    from dmcmc_edu.evaluation import metrics

    if args.quiet:
        return
    samples = np.load(out / "samples.npy")
    summ = metrics.summary(mix, torch.from_numpy(samples))
    print(json.dumps({"samples": list(samples.shape), **result, **{k: round(v, 4) for k, v in summ.items()}},
                     indent=1))


def _load_classifier(args, smin: float, smax: float):
    """The ``--classifier`` of a classifier sigma-update, checked against the run's noise-level grid."""
    import torch

    from dmcmc_edu.core.schedules import noise_level_grid
    from dmcmc_edu.models.classifier import NoiseLevelClassifier

    if not args.classifier:
        raise CommandError(f"--sigma-update {args.sigma_update} needs --classifier PATH "
                           "(train one with: python -m dmcmc_edu train-classifier --target ... --out PATH)")
    classifier = NoiseLevelClassifier.load(args.classifier)
    if not torch.allclose(classifier.grid.double(), noise_level_grid(smin, smax, classifier.n_levels), rtol=1e-6):
        raise CommandError(f"the classifier {args.classifier} was trained on another noise-level grid; pass the "
                           f"--sigma-min/--sigma-max it was trained with (its grid: {classifier.grid[0]:.4g} .. "
                           f"{classifier.grid[-1]:.4g}, {classifier.n_levels} levels)")
    return classifier


def _check_sample(args, smin: float, smax: float) -> None:
    """The rules between ``sample``'s options (each option's own range is checked by its argparse type).

    A classifier is used only by the classifier sigma-updates of ``--dlg``; it must fit the run's sigma range, and
    ``--n-levels`` beside it must equal its number of levels (``args.n_levels`` is set to it, so run.json records
    the grid that is used).  DLG makes ``chains x outputs-per-chain`` outputs, at least one per chain, and keeps the
    first ``--n``: ``--chains`` above ``--n`` is refused, and so is an ``--outputs-per-chain`` that gives fewer
    than ``--n``.  Without ``--chains`` the number of chains follows ``--n`` (:func:`dlg_shape`).
    """
    uses_classifier = args.dlg and args.sigma_update.startswith("classifier")
    if args.classifier and not uses_classifier:
        here = f"--sigma-update {args.sigma_update}" if args.dlg else "no --dlg"
        raise CommandError(f"--classifier is used only by --dlg with --sigma-update classifier-argmax or "
                           f"classifier-sample (here: {here}); leave it out or change those options")
    if uses_classifier:
        levels = _load_classifier(args, smin, smax).n_levels
        if args.n_levels is not None and args.n_levels != levels:
            raise CommandError(f"--n-levels {args.n_levels} differs from the {levels} levels of the classifier "
                               f"{args.classifier}; leave --n-levels out (the classifier's grid is used)")
        args.n_levels = levels
    elif args.n_levels is None:
        args.n_levels = N_LEVELS
    if not args.dlg:
        return
    check_torch_files(args.out, ["checkpoint.pt"])  # the checkpoint of a run to resume
    if args.chains is not None and args.chains > args.n:
        raise CommandError(f"--chains {args.chains} is more than --n {args.n}: each DLG chain gives at least one "
                           f"output per round, so the run would make {args.chains} outputs for {args.n}; use --chains "
                           f"{args.n} or fewer, or leave --chains out (it then follows --n)")
    opc = args.outputs_per_chain
    if opc is not None and args.chains is not None and args.chains * opc < args.n:
        raise CommandError(f"--chains {args.chains} x --outputs-per-chain {opc} = {args.chains * opc} outputs, "
                           f"fewer than --n {args.n}; raise one of them, or leave --outputs-per-chain out "
                           "(then it is ceil(n / chains))")


def _dlg_sampler(args, mix, smin, smax):
    """The DLG sampler of ``sample --dlg`` (its classifier checked against the grid and the target)."""
    from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
    from dmcmc_edu.registry import integrator_table

    classifier = _load_classifier(args, smin, smax) if args.sigma_update.startswith("classifier") else None
    if classifier is not None:
        _check_classifier_target(args, classifier, mix)
    chains, outputs_per_chain = dlg_shape(args.n, args.chains, args.outputs_per_chain)
    cfg = DMCMCConfig(sigma_min=smin, sigma_max=smax, n_levels=args.n_levels, eta=args.eta, eta_rel=args.eta_rel,
                      n_skip=args.n_skip, integrator=args.integrator, steps=args.steps,
                      sigma_update=args.sigma_update, x_update=args.x_update, n_chains=chains,
                      outputs_per_chain=outputs_per_chain, seed=args.seed, per_chain_seeds=args.per_chain_seeds,
                      final_tweedie="always" if args.extra_tweedie else "auto")
    if classifier is not None:
        cfg.n_levels = classifier.n_levels
    return DMCMCSampler(mix, cfg, data_shape=(mix.d,), classifier=classifier, integrators=integrator_table())


def _sample_dlg(args, sampler, run, record: dict) -> dict:
    """DLG chains into ``--out`` with :func:`dmcmc_edu.runs.run_to_directory` (checkpointed, resumable).

    The first ``--n`` outputs are kept; the number of the last round's outputs discarded is recorded (the NFE per
    output are the ledger's, over every output made).
    """
    from dmcmc_edu.runs import run_to_directory

    res = run_to_directory(sampler, run.path, checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                           run_info=record, run=run, n_outputs=args.n)
    led = res.ledger.per_output()
    made = sampler.config.n_chains * sampler.config.outputs_per_chain
    return {"nfe_per_output_paper": led["paper"], "nfe_per_output_full": led["full"],
            "n_outputs": int(res.samples.shape[0]), "n_chains": sampler.config.n_chains,
            "outputs_per_chain": sampler.config.outputs_per_chain, "outputs_made": made,
            "outputs_discarded": made - int(res.samples.shape[0])}


def cmd_sample(args) -> int:
    """sample a mixture target with an integrator, or with DLG (--dlg)

    Writes OUT/samples.npy (float64, [n, d]) and OUT/run.json (every setting and the counted NFE); with --dlg
    also OUT/ledger.json (DLG keeps the first n outputs of its rounds; run.json records how many it discarded).
    Re-running the same command resumes an interrupted run and reports a finished one without writing anything; a
    call with other settings (or target, classifier, version) is refused with the list of differences, and
    existing outputs are never overwritten.
    """
    from dmcmc_edu.runs import versions

    mix = load_target(args.target)
    smin, smax = sigma_range(args, mix)
    _check_sample(args, smin, smax)
    out = Path(args.out)
    sampler = _dlg_sampler(args, mix, smin, smax) if args.dlg else None
    run = _run_directory(args, mix, smin, smax, sampler)
    if run.check() == "finished":  # the same run is there, complete: report it, write nothing
        if not args.quiet:
            print(f"{out} holds this run, finished earlier with the same settings; nothing was written",
                  file=sys.stderr)
        _print_summary(args, mix, out, run.saved["result"])
        return 0
    seconds, disk, how = estimate_sample(args, mix, smin, smax, sampler)
    check_run_size(seconds, disk, how, confirmed=args.yes)
    t0 = time.time()
    record = {"command": "sample", "settings": settings(args) | {"sigma_min": smin, "sigma_max": smax},
              "target": mix.to_dict() | {"spec": args.target}, "versions": versions()}
    if args.dlg:
        result = _sample_dlg(args, sampler, run, record)
    else:
        run.start(record)
        result = _sample_vanilla(args, mix, smin, smax, out)
    run.finish({"result": result, "wall_seconds_this_call": time.time() - t0})
    _print_summary(args, mix, out, result)
    return 0


# ----------------------------------------------------------------------------- train-classifier


def cmd_train_classifier(args) -> int:
    """train an MLP noise-level classifier on a mixture target

    Writes the classifier to --out (a .pt file); its config records the target it was trained on (a content
    hash, checked by sample --dlg) and the fingerprint of the call.  An existing file is never replaced: the
    same call again reports it, another call is refused.
    """
    import torch

    from dmcmc_edu.core.schedules import noise_level_grid
    from dmcmc_edu.evaluation.calibration import kl_to_exact
    from dmcmc_edu.models.classifier import MLPClassifier, NoiseLevelClassifier
    from dmcmc_edu.runs import fingerprint, saved_output
    from dmcmc_edu.training.classifier import train_noise_level_classifier

    check_sigma_order(args.sigma_min, args.sigma_max)
    mix = load_target(args.target)
    smin, smax = sigma_range(args, mix)
    fp = fingerprint("train-classifier", {"steps": args.steps, "batch": args.batch, "hidden": args.hidden,
                                          "n_levels": args.n_levels, "sigma_min": smin, "sigma_max": smax,
                                          "seed": args.seed}, target=mix.to_dict())
    if saved_output(args.out, fp, lambda p: NoiseLevelClassifier.load(p).config.get("fingerprint")):
        kl = NoiseLevelClassifier.load(args.out).config.get("kl_to_exact")  # the same call again: report the file
        print(json.dumps({"saved": args.out, "kl_to_exact": kl,
                          "note": "trained earlier with the same settings; nothing was written"}, indent=1))
        return 0
    refuse_existing(args.out)
    grid = noise_level_grid(smin, smax, args.n_levels)
    torch.manual_seed(args.seed)  # network initialisation
    clf = NoiseLevelClassifier(MLPClassifier(mix.d, args.n_levels, hidden=args.hidden), grid,
                               config={"target": args.target, "target_sha256": fp["target_sha256"],
                                       "steps": args.steps, "seed": args.seed, "fingerprint": fp})
    g = torch.Generator().manual_seed(args.seed)
    train_noise_level_classifier(clf, mix.sample, steps=args.steps, batch_size=args.batch, generator=g,
                                 lr_schedule="cosine", progress=not args.quiet)
    kl = kl_to_exact(clf, mix, n=2000, generator=torch.Generator().manual_seed(1))
    kl = {k: float(v) for k, v in kl.items() if not (isinstance(v, torch.Tensor) and v.numel() > 1)}
    clf.config["kl_to_exact"] = kl
    clf.save(args.out)
    print(json.dumps({"saved": args.out, "kl_to_exact": kl}, indent=1))
    return 0


# ----------------------------------------------------------------------------- inspect-checkpoint


def cmd_inspect_checkpoint(args) -> int:
    """print what a score_sde NCSN++ checkpoint holds

    Exit status 0 when the checkpoint fits the --config network, 1 when the report says "compatible: NO".
    """
    from dmcmc_edu.models.score_sde import format_inspection, inspect_checkpoint

    info = inspect_checkpoint(args.path, args.config)
    print(format_inspection(info))
    return 1 if info.get("compatible") is False else 0


# ----------------------------------------------------------------------------- parsers


def _add_sample(sub) -> None:
    s = add_command(sub, "sample", cmd_sample,
                    example="--target ring --integrator kar2 --steps 19 --n 2000 --seed 0 --out runs/kar2")
    s.add_argument("--target", default="ring", help=TARGET_HELP)
    s.add_argument("--integrator", default="kar1", choices=INTEGRATORS)
    s.add_argument("--steps", type=positive_int, default=18,
                   help="integrator steps (KAR: 2*steps-1 NFE; others: steps)")
    s.add_argument("--n", type=positive_int, default=1000, help="number of samples (outputs)")
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--sigma-min", type=positive_float, default=None,
                   help="default: the target's default_sigma_min() = min(0.01, 0.1 * smallest component std)")
    s.add_argument("--sigma-max", type=positive_float, default=None,
                   help="default: the target's default_sigma_max() ~ largest pairwise distance of the data")
    s.add_argument("--batch", type=positive_int, default=4096,
                   help="vanilla: samples per chunk (a chunk is the unit of resume)")
    s.add_argument("--extra-tweedie", action="store_true",
                   help="apply the final Tweedie step even after KAR1/KAR2 (the authors' code does)")
    s.add_argument("--quiet", action="store_true")
    add_yes(s)
    g = s.add_argument_group("DLG (with --dlg)")
    g.add_argument("--dlg", action="store_true", help="Denoising Langevin Gibbs chains instead of sampling from noise")
    g.add_argument("--sigma-update", default="exact", choices=SIGMA_UPDATES)
    g.add_argument("--classifier", default=None, help="a saved noise-level classifier (train-classifier)")
    g.add_argument("--eta", type=positive_float, default=0.005, help="absolute Langevin step size")
    g.add_argument("--eta-rel", type=nonnegative_float, default=1.0,
                   help="sigma-adapted step: eta + eta_rel * sigma^2 (paper: 0)")
    g.add_argument("--n-skip", type=positive_int, default=1, help="Gibbs steps per output")
    g.add_argument("--chains", type=positive_int, default=None,
                   help=f"DLG chains, at most --n (default: ceil(n / ceil(n / {MAX_DEFAULT_CHAINS})), at most "
                        f"{MAX_DEFAULT_CHAINS})")
    g.add_argument("--outputs-per-chain", type=positive_int, default=None, help="default: ceil(n / chains)")
    g.add_argument("--n-levels", type=int_at_least(2), default=None,
                   help=f"size of the noise-level grid (default {N_LEVELS}; with --classifier: its own)")
    g.add_argument("--x-update", default="ula", choices=X_UPDATES)
    g.add_argument("--checkpoint-every", type=positive_int, default=1, help="checkpoint every K output rounds")
    g.add_argument("--per-chain-seeds", action="store_true",
                   help="one random generator per chain (seeded by --seed and the chain's number), so a chain's "
                        "outputs do not depend on how many chains run beside it")


def _add_train_classifier(sub) -> None:
    t = add_command(sub, "train-classifier", cmd_train_classifier,
                    example="--target ring --out runs/ring_classifier.pt")
    t.add_argument("--target", default="ring", help=TARGET_HELP)
    t.add_argument("--out", required=True, help="output file (.pt); must not exist yet")
    t.add_argument("--steps", type=positive_int, default=3000)
    t.add_argument("--batch", type=positive_int, default=512)
    t.add_argument("--hidden", type=positive_int, default=256)
    t.add_argument("--n-levels", type=int_at_least(2), default=1000)
    t.add_argument("--sigma-min", type=positive_float, default=None)
    t.add_argument("--sigma-max", type=positive_float, default=None)
    t.add_argument("--seed", type=seed, default=0)
    t.add_argument("--quiet", action="store_true")


def add_parsers(sub) -> None:
    """Add ``demo``, ``sample``, ``train-classifier`` and ``inspect-checkpoint`` to the sub-command parsers."""
    d = add_command(sub, "demo", cmd_demo, example="--fast --out runs/demo_fast")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--fast", action="store_true", help="fewer samples (for CI)")
    d.add_argument("--quiet", action="store_true")
    _add_sample(sub)
    _add_train_classifier(sub)
    c = add_command(sub, "inspect-checkpoint", cmd_inspect_checkpoint,
                    example="checkpoint_24.pth --config cifar10_ncsnpp_continuous")
    c.add_argument("path")
    c.add_argument("--config", required=True,
                   help="cifar10_ncsnpp_continuous | celebahq_256_ncsnpp_continuous | PATH to a config.json")
