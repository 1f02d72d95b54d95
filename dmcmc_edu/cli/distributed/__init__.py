"""The ``sample-distributed`` command: DLG across processes, one resumable shard per rank and a manifest.

Launch it with torchrun, as a sub-command or as this package::

    torchrun --nproc_per_node N -m dmcmc_edu sample-distributed ...
    torchrun --nproc_per_node N -m dmcmc_edu.cli.distributed ...

This module turns the command line into a model spec and a
:class:`~dmcmc_edu.core.sampler.DMCMCConfig`; the sampling itself is
:func:`dmcmc_edu.experiments.distributed.sample_distributed`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from dmcmc_edu.cli.choices import INTEGRATORS, SIGMA_UPDATES, X_UPDATES
from dmcmc_edu.cli.common import (
    EXPECTED_ERRORS,
    CommandError,
    HelpFormatter,
    add_command,
    add_yes,
    check_run_size,
    check_scale,
    check_sigma_order,
    dlg_estimate,
    errors_as_exit,
    int_at_least,
    load_target,
    nonnegative_int,
    one_line,
    parse_args_once,
    pilot_cost,
    positive_float,
    positive_int,
    prog_name,
    run_handler,
    seed,
    torchrun_prog,
    under_torchrun,
)
from dmcmc_edu.paper import PRESETS  # plain data, no torch

if TYPE_CHECKING:
    from dmcmc_edu.core.sampler import DMCMCConfig

# torch and the library are imported by the handlers, so that --help stays fast (dmcmc_edu.cli.common)

__all__ = ["add_parsers", "add_arguments", "model_spec", "run_config", "estimate_sample_distributed",
           "cmd_sample_distributed", "main"]


def _burn_in(text: str):
    """``"10:0.5,10:"`` -> ``[[10, 0.5], [10, None]]`` (an empty eta means the main eta); an argparse type.

    Each block is ``STEPS:ETA`` with an integer ``STEPS >= 0`` and a finite ``ETA > 0`` (or nothing).
    """
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        steps, _, eta = part.partition(":")
        try:
            pairs.append([nonnegative_int(steps.strip()), positive_float(eta.strip()) if eta.strip() else None])
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"block {part!r}: {err} (blocks are STEPS:ETA, e.g. 10:0.5,10:)") \
                from None
    return pairs


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model (exactly one)").add_mutually_exclusive_group(required=True)
    m.add_argument("--target", help="a mixture target: ring | grid | lowrank | PATH.json")
    m.add_argument("--score-sde", metavar="CHECKPOINT", help="a score_sde NCSN++ checkpoint (needs --config)")
    m.add_argument("--diffusers-ve", metavar="PATH_OR_ID", help="a diffusers VE NCSN++ UNet2DModel (hub id or folder)")
    m.add_argument("--diffusers-vp", metavar="PATH_OR_ID", help="a diffusers DDPM UNet2DModel (hub id or folder)")
    p.add_argument("--config", help="score_sde config: cifar10_ncsnpp_continuous | celebahq_256_ncsnpp_continuous | "
                                    "PATH to a config.json")
    p.add_argument("--vp-data-range", default="unit", choices=["unit", "model"],
                   help="data space of a diffusers VP model: unit = [0, 1] like the score_sde models (default), "
                        "model = the DDPM's own [-1, 1]")
    p.add_argument("--out", required=True, help="output folder: OUT/rank_{r}/ per rank, OUT/manifest.json at the end")


def _add_dlg_arguments(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("DLG settings (default: the preset's, else DMCMCConfig's)")
    s.add_argument("--preset", choices=list(PRESETS), default=None, help="the paper's settings (dmcmc_edu.paper)")
    s.add_argument("--sigma-min", type=positive_float, default=None, help="default: preset, else the model's")
    s.add_argument("--sigma-max", type=positive_float, default=None, help="default: preset, else the model's")
    s.add_argument("--n-levels", type=int_at_least(2), default=None,
                   help="noise-level grid size (a classifier's own by default)")
    s.add_argument("--eta", type=positive_float, default=None, help="absolute Langevin step size")
    s.add_argument("--n-skip", type=positive_int, default=None, help="Gibbs steps per output")
    s.add_argument("--integrator", default=None, choices=INTEGRATORS, help="denoising integrator")
    s.add_argument("--steps", type=positive_int, default=None, help="denoising integrator steps")
    s.add_argument("--sigma-update", default=None, choices=SIGMA_UPDATES)
    s.add_argument("--classifier", default=None, help="a saved noise-level classifier (train-image-classifier)")
    s.add_argument("--x-update", default=None, choices=X_UPDATES)
    s.add_argument("--chains", type=positive_int, default=None, help="chains PER RANK")
    s.add_argument("--outputs-per-chain", type=positive_int, default=None)
    s.add_argument("--init-steps", type=nonnegative_int, default=None, help="KAR2 steps of the chains' initialisation")
    s.add_argument("--burn-in", type=_burn_in, default=None, help='e.g. "10:0.5,10:" (empty eta = the main eta)')
    s.add_argument("--final-tweedie", default=None, choices=["auto", "always", "never"])
    s.add_argument("--tweedie-sigma", type=positive_float, default=None)
    s.add_argument("--seed", type=seed, default=0, help="base seed; rank r uses derive_seed(seed, r)")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``sample-distributed`` to ``p`` (the sub-command and this package's own entry)."""
    _add_model_arguments(p)
    _add_dlg_arguments(p)
    r = p.add_argument_group("run")
    r.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available, else cpu) | cpu | cuda")
    r.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"])
    r.add_argument("--dtype", default="auto", choices=["auto", "float32", "float64"],
                   help="sampling dtype (auto: float64 for mixtures, float32 for networks)")
    r.add_argument("--checkpoint-every", type=positive_int, default=1, help="checkpoint every K output rounds")
    add_yes(r, time="the estimated time (per rank)", disk="the disk use (all ranks)")
    r.add_argument("--quiet", action="store_true")
    return p


def model_spec(args) -> dict:
    """The model spec of :func:`dmcmc_edu.experiments.distributed.build_model` that the options name."""
    if args.target:
        return {"kind": "mixture", "target": args.target}
    if args.score_sde:
        if not args.config:
            raise CommandError("--score-sde needs --config (a preset name or a config.json)")
        return {"kind": "score_sde", "checkpoint": args.score_sde, "config": args.config}
    if args.diffusers_ve:
        return {"kind": "diffusers-ve", "path": args.diffusers_ve}
    return {"kind": "diffusers-vp", "path": args.diffusers_vp,
            "data_range": [0.0, 1.0] if args.vp_data_range == "unit" else [-1.0, 1.0]}


def _grid_settings(args, spec: dict) -> tuple[float | None, float | None, int | None]:
    """``(sigma_min, sigma_max, n_levels)``: the options, else the classifier's grid, else the model's own range.

    With a ``--preset`` the missing values stay None (the preset fills them in).
    """
    from dmcmc_edu.experiments.distributed import classifier_sigma_range, model_sigma_info
    from dmcmc_edu.models.classifier import NoiseLevelClassifier

    n_levels = args.n_levels
    smin, smax = args.sigma_min, args.sigma_max
    if args.classifier and n_levels is None:
        clf = NoiseLevelClassifier.load(args.classifier)
        n_levels = clf.n_levels
        if args.preset is None:  # the classifier's grid gives the sigma range
            cmin, cmax = classifier_sigma_range(clf)
            smin = smin if smin is not None else cmin
            smax = smax if smax is not None else cmax
    if args.preset is None and (smin is None or smax is None):
        info = model_sigma_info(spec)
        smin = smin if smin is not None else info["sigma_min"]
        smax = smax if smax is not None else info["sigma_max"]
        if smin is None or smax is None:
            raise CommandError("the model does not state its sigma range: give --sigma-min and --sigma-max")
    return smin, smax, n_levels


def run_config(args, spec: dict) -> DMCMCConfig:
    """The per-rank DLG settings: the preset (if any), then every option given, then the model's defaults."""
    from dmcmc_edu.experiments.distributed import build_config

    smin, smax, n_levels = _grid_settings(args, spec)
    sigma_update = args.sigma_update
    if sigma_update is None and args.preset is None:
        sigma_update = "exact" if spec["kind"] == "mixture" else "classifier-argmax"
    return build_config(args.preset, sigma_min=smin, sigma_max=smax, n_levels=n_levels, eta=args.eta,
                        n_skip=args.n_skip, integrator=args.integrator, steps=args.steps,
                        sigma_update=sigma_update, x_update=args.x_update, n_chains=args.chains,
                        outputs_per_chain=args.outputs_per_chain, init_steps=args.init_steps,
                        burn_in=args.burn_in, final_tweedie=args.final_tweedie, tweedie_sigma=args.tweedie_sigma,
                        seed=args.seed)


def _check(args) -> None:
    """The rules between ``sample-distributed``'s options (each option's own range is checked by its argparse type)."""
    check_sigma_order(args.sigma_min, args.sigma_max)
    if args.config and not args.score_sde:
        raise CommandError("--config is read only with --score-sde; leave it out")


PILOT_ROWS = {"mixture": 256}
"""Samples of the pilot run of the size check, by model kind (networks: :data:`PILOT_IMAGES`)."""

PILOT_IMAGES = 2
"""Images of the pilot run of the size check for a network (score_sde, diffusers)."""


def estimate_sample_distributed(spec: dict, cfg: DMCMCConfig, device, dtype=None, ranks: int = 1
                                ) -> tuple[float, float, str]:
    """``(seconds, bytes, how)``: the estimated time (one rank's; the ranks run side by side) and disk use (every
    rank's) of a ``sample-distributed`` run, measured by a pilot on ``device``: the same estimate as ``sample
    --dlg`` (:func:`~dmcmc_edu.cli.common.pilot_cost`, :func:`~dmcmc_edu.cli.common.dlg_estimate`)."""
    import math

    from dmcmc_edu.experiments.distributed import build_model

    model, shape, info = build_model(spec, device)
    dtype = dtype or info["dtype"]
    rows = min(cfg.n_chains, PILOT_ROWS.get(spec["kind"], PILOT_IMAGES))
    tweedie = {"auto": None, "always": True, "never": False}[cfg.final_tweedie]
    nfe, per_eval = pilot_cost(model, (rows, *shape), cfg.integrator, cfg.steps, cfg.sigma_min, cfg.sigma_max,
                               device=device, dtype=dtype, options=cfg.integrator_options, final_tweedie=tweedie)
    made = cfg.n_chains * cfg.outputs_per_chain
    return dlg_estimate(cfg, nfe, per_eval, elements=math.prod(shape), kept=made, round_bytes=dtype.itemsize,
                        ranks=ranks, pilot=f"{rows} samples on {device}")


def _size_refusal(args, spec: dict, cfg: DMCMCConfig, env, dtype):
    """Rank 0's size check (:func:`~dmcmc_edu.cli.common.check_run_size`): the error that refuses the run, or
    None (confirmed with --yes, within the thresholds, or a finished run that is only reported)."""
    if args.yes or (Path(args.out) / "manifest.json").is_file():
        return None
    try:
        check_run_size(*estimate_sample_distributed(spec, cfg, env.device, dtype, env.world_size), confirmed=False,
                       lower="--chains or --outputs-per-chain")
    except EXPECTED_ERRORS as err:  # a model that does not load fails here too: every rank must hear of it
        return err
    return None


def cmd_sample_distributed(args) -> int:
    """DLG across processes (launch with torchrun)

    Launch with: torchrun --nproc-per-node N -m dmcmc_edu sample-distributed ... Each rank runs its own chains
    (--chains per rank) with seed derive_seed(seed, rank) into OUT/rank_{r} (resumable); rank 0 writes
    OUT/manifest.json at the end. Like sample, a sigma range far from a mixture target's scale is refused (a
    doubtful one warned about), and a run estimated above the size thresholds is refused with the estimate unless
    --yes is given; rank 0 prints, every rank stops.
    """
    import torch

    from dmcmc_edu.experiments.distributed import join, local_env, sample_distributed

    # every rank checks the same options and files before any process-group work; only rank 0 prints
    _check(args)
    spec = model_spec(args)
    env = local_env(args.device, args.backend)
    lead = env.rank == 0
    cfg = run_config(args, spec)
    if spec["kind"] == "mixture":
        check_scale(cfg.sigma_min, cfg.sigma_max, load_target(args.target), quiet=not lead)
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    refusal = _size_refusal(args, spec, cfg, env, dtype) if lead else None  # rank 0 measures, alone
    join(env)
    try:
        verdict = env.all_gather(None if refusal is None else one_line(refusal))[0]  # rank 0's, to every rank
        if refusal is not None:
            raise refusal
        if verdict is not None:
            raise CommandError(verdict, quiet=True)  # rank 0 printed it
        with errors_as_exit(ValueError, OSError, EOFError, RuntimeError, prefix=f"error (rank {env.rank})"):
            manifest = sample_distributed(spec, cfg, args.out, classifier_path=args.classifier, dtype=dtype,
                                          checkpoint_every=args.checkpoint_every, progress=not args.quiet, env=env)
        env.barrier()  # every rank done before any leaves the group (gloo can abort a rank whose peer left first)
        if manifest is not None and not args.quiet:
            print(json.dumps({"manifest": str(Path(args.out) / "manifest.json"), "world_size": manifest["world_size"],
                              "n_outputs": manifest["n_outputs"], "nfe_per_output": manifest["nfe_per_output"]},
                             indent=1))
    finally:
        env.close()
    return 0


def _relaunch_example(program: str, command: str = "") -> str:
    """The help's example: ``program command`` as started, and (when not under torchrun) the torchrun command
    with N processes (:func:`~dmcmc_edu.cli.common.torchrun_prog`)."""
    lines = [f"  {program}{command} {EXAMPLE}"]
    if not under_torchrun():
        lines.append(f"  {torchrun_prog(program)}{command} {EXAMPLE}   (N processes)")
    return "example:\n" + "\n".join(lines)


def add_parsers(sub) -> None:
    """Add ``sample-distributed`` to the sub-command parsers."""
    d = add_command(sub, "sample-distributed", cmd_sample_distributed, example=EXAMPLE)
    program = d.prog[:-len(" sample-distributed")]  # the parent's prog: as started (common.prog_name)
    if under_torchrun():  # usage and example say how to relaunch it: torchrun --nproc-per-node N -m dmcmc_edu ...
        program = torchrun_prog(program)
        d.prog = f"{program} sample-distributed"
    d.epilog = _relaunch_example(program, " sample-distributed")
    add_arguments(d)


DESCRIPTION = """DLG across processes: one resumable shard of chains per rank, and a manifest.

Each rank runs its own chains (--chains per rank) with seed derive_seed(seed, rank) into OUT/rank_{r}
(resumable); rank 0 writes OUT/manifest.json at the end.  The sampling is
dmcmc_edu.experiments.distributed.sample_distributed."""

EXAMPLE = "--target ring --chains 256 --outputs-per-chain 4 --out runs/dist"
"""The example of the help screens (after the command's name)."""


def main(argv=None) -> int:
    """``torchrun ... -m dmcmc_edu.cli.distributed ...``: the same options as ``sample-distributed``."""
    prog = prog_name()  # python -m dmcmc_edu.cli.distributed as started; under torchrun, the torchrun command
    prog = torchrun_prog(prog) if under_torchrun() else prog
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, formatter_class=HelpFormatter,
                                epilog=_relaunch_example(prog))
    add_arguments(p)
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of a failure instead of the one-line error message")
    p.set_defaults(func=cmd_sample_distributed)
    return run_handler(parse_args_once(p, argv))
