"""DLG sampling across processes with ``torch.distributed``: one resumable shard per rank, one manifest.

Launch with ``torchrun`` (one process per GPU, or several on a CPU)::

    torchrun --nproc_per_node 8 -m dmcmc_edu.experiments.distributed --score-sde checkpoint_24.pth \\
        --config cifar10_ncsnpp_continuous --preset paper-cifar10 --classifier cifar10_clf.pt \\
        --eta 0.5 --n-skip 1 --steps 5 --chains 500 --outputs-per-chain 13 --out runs/cifar10_dlg

or equivalently ``torchrun ... -m dmcmc_edu sample-distributed ...``.  Without
torchrun's environment (``RANK``, ``WORLD_SIZE``, ...) the same command runs
as a single rank.

What each rank does:

* joins the process group (``--backend auto``: NCCL when it samples on a
  GPU, gloo on CPU); on GPU it uses ``cuda:LOCAL_RANK``;
* runs its **own chains** (``--chains`` is per rank) with its **own seed**
  ``derive_seed(seed, rank)`` -- ``numpy.random.SeedSequence([seed, rank])``,
  so shards are independent and a rank's stream does not depend on the
  world size;
* samples into ``OUT/rank_{r}`` with :func:`dmcmc_edu.core.sampler.run_to_directory`,
  so each shard checkpoints atomically and an interrupted job resumes where
  it stopped when relaunched with the same command;
* when every shard is complete (a barrier), rank 0 writes
  ``OUT/manifest.json``: settings, model, world size, and per shard its seed,
  number of outputs, NFE ledger and files.  :func:`load_distributed_samples`
  reads the samples back in rank order.

``OUT/distributed.json`` records the world size, base seed and settings of
the first launch; a relaunch with other ones is refused (the shards would not
fit together).  Ranks exchange nothing else: DLG chains are independent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dmcmc_edu.core.sampler import PRESETS, DMCMCConfig, DMCMCSampler
from dmcmc_edu.runs import atomic_write, run_to_directory

__all__ = [
    "MANIFEST_FORMAT",
    "derive_seed",
    "DistEnv",
    "setup",
    "build_model",
    "build_config",
    "classifier_sigma_range",
    "sample_distributed",
    "load_distributed_samples",
    "add_arguments",
    "cmd_sample_distributed",
    "main",
]

MANIFEST_FORMAT = "dmcmc_edu.distributed_manifest/1"


def derive_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``: ``SeedSequence([seed, rank])``'s first 63-bit state word (independent streams)."""
    words = np.random.SeedSequence([int(seed), int(rank)]).generate_state(2, dtype=np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1]))


@dataclasses.dataclass
class DistEnv:
    """Where this process stands: rank, world size, local rank, device, backend, and whether it owns the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    owns_group: bool = False

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def all_gather(self, obj) -> list:
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False


def setup(device: str = "auto", backend: str = "auto") -> DistEnv:
    """Read torchrun's environment, pick the device, join the process group (if WORLD_SIZE > 1)."""
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    env = DistEnv(rank=rank, world_size=world, local_rank=local, device=dev, backend=backend if world > 1 else None)
    if world > 1:
        if dist.is_initialized():
            env.backend = dist.get_backend()
        else:
            kw = {"device_id": dev} if backend == "nccl" else {}
            dist.init_process_group(backend=backend, **kw)
            env.owns_group = True
    return env


# ----------------------------------------------------------------------------- model and settings


def build_model(spec: dict, device) -> tuple[object, tuple[int, ...], dict]:
    """Build the denoiser of a model spec; returns ``(model, data_shape, info)``.

    ``spec`` is one of ``{"kind": "mixture", "target": ...}``,
    ``{"kind": "score_sde", "checkpoint": ..., "config": ...}``,
    ``{"kind": "diffusers-ve", "path": ...}``,
    ``{"kind": "diffusers-vp", "path": ..., "data_range": [0, 1]}``.
    ``info`` holds the model's default ``sigma_min``/``sigma_max`` (or None)
    and whether the exact sigma-update is available.
    """
    kind = spec["kind"]
    if kind == "mixture":
        from dmcmc_edu.targets.mixture import load_target

        mix = load_target(spec["target"])
        return mix, (mix.d,), {"sigma_min": mix.default_sigma_min(), "sigma_max": mix.default_sigma_max(),
                               "exact": True, "dtype": torch.float64}
    if kind == "score_sde":
        from dmcmc_edu.models.score_sde import load_score_sde

        model = load_score_sde(spec["checkpoint"], spec["config"], map_location=device)
    elif kind == "diffusers-ve":
        from dmcmc_edu.models.diffusers_adapters import load_diffusers_ve

        model = load_diffusers_ve(spec["path"], device=device)
    elif kind == "diffusers-vp":
        from dmcmc_edu.models.diffusers_adapters import load_diffusers_vp

        model = load_diffusers_vp(spec["path"], device=device, data_range=tuple(spec.get("data_range", (0, 1))))
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    return model, tuple(model.image_shape), {"sigma_min": model.sigma_min, "sigma_max": model.sigma_max,
                                             "exact": False, "dtype": torch.float32}


def build_config(preset: str | None = None, **overrides) -> DMCMCConfig:
    """A DMCMCConfig: the defaults, then a preset of :data:`sampler.PRESETS`, then the overrides (None = keep)."""
    values = DMCMCConfig().to_dict()
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    for k, v in overrides.items():
        if k not in values:
            raise TypeError(f"unknown DMCMCConfig field {k!r}")
        if v is not None:
            values[k] = v
    return DMCMCConfig(**values)


def _jsonable(v):
    return json.loads(json.dumps(v, default=str))


def sample_distributed(model_spec: dict, config: DMCMCConfig, out_dir, *, classifier_path=None, device="auto",
                       backend="auto", dtype=None, checkpoint_every: int = 1, progress: bool = True,
                       env: DistEnv | None = None) -> dict | None:
    """Run this process's shard of a distributed DLG run (see the module docstring).

    ``config.n_chains`` is per rank and ``config.seed`` is the *base* seed.
    Returns the manifest (a dict) on rank 0 and ``None`` on the other ranks.
    """
    own_env = env is None
    env = env or setup(device, backend)
    try:
        return _run(env, model_spec, config, Path(out_dir), classifier_path, dtype, checkpoint_every, progress)
    finally:
        if own_env:
            env.close()


def _run(env: DistEnv, model_spec, config, out: Path, classifier_path, dtype, checkpoint_every, progress):
    config = config.validate()
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    settings = {"world_size": env.world_size, "base_seed": config.seed, "config": config.to_dict(),
                "model": model_spec, "classifier": None if classifier_path is None else str(classifier_path)}
    settings = _jsonable(settings)
    dist_json = out / "distributed.json"
    if env.rank == 0 and not dist_json.exists():
        atomic_write(dist_json, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))
    env.barrier()
    saved = json.loads(dist_json.read_text())
    diff = [k for k in settings if saved.get(k) != settings[k]]
    if diff:
        raise ValueError(f"{out} holds a distributed run with other settings ({', '.join(diff)}: "
                         f"{ {k: saved.get(k) for k in diff} } vs { {k: settings[k] for k in diff} }); "
                         "relaunch with the same world size and settings, or choose another --out")

    model, data_shape, info = build_model(model_spec, env.device)
    classifier = None
    if classifier_path is not None:
        from dmcmc_edu.models.classifier import NoiseLevelClassifier

        classifier = NoiseLevelClassifier.load(classifier_path, map_location=env.device)
        if classifier.n_levels != config.n_levels or not torch.allclose(
                classifier.grid.double().cpu(), config.grid(), rtol=1e-6):
            raise ValueError(f"the classifier {classifier_path} was trained on another noise-level grid "
                             f"({classifier.n_levels} levels, {classifier.grid[0]:.4g} .. {classifier.grid[-1]:.4g}) "
                             f"than this run's ({config.n_levels} levels, "
                             f"{config.sigma_max:g} .. {config.sigma_min:g})")
    if config.sigma_update == "exact" and not info["exact"]:
        raise ValueError("sigma_update 'exact' needs an analytic mixture; give a classifier and "
                         "--sigma-update classifier-argmax (the paper) or classifier-sample")
    if config.sigma_update.startswith("classifier") and classifier is None:
        raise ValueError(f"sigma_update {config.sigma_update!r} needs a noise-level classifier (--classifier PATH; "
                         "train one with: python -m dmcmc_edu train-image-classifier ...)")

    seed = derive_seed(config.seed, env.rank)
    cfg_rank = dataclasses.replace(config, seed=seed)
    dtype = dtype or info["dtype"]
    sampler = DMCMCSampler(model, cfg_rank, data_shape=data_shape, classifier=classifier, device=env.device,
                           dtype=dtype)
    shard = out / f"rank_{env.rank}"
    with torch.no_grad():
        res = run_to_directory(sampler, shard, checkpoint_every=checkpoint_every, progress=progress and env.rank == 0,
                               run_info={"rank": env.rank, "world_size": env.world_size, "base_seed": config.seed,
                                         "model": model_spec})
    summary = {"rank": env.rank, "dir": shard.name, "seed": seed, "n_outputs": int(res.samples.shape[0]),
               "samples": f"{shard.name}/samples.npy", "ledger": f"{shard.name}/ledger.json",
               "nfe_per_output": res.ledger.per_output(), "device": str(env.device),
               "wall_seconds_this_launch": round(time.time() - t0, 3)}
    summaries = env.all_gather(_jsonable(summary))  # also the barrier: every shard is complete
    if env.rank != 0:
        return None
    summaries = sorted(summaries, key=lambda s: s["rank"])
    for s in summaries:
        if not (out / s["samples"]).is_file():
            raise RuntimeError(f"shard {s['dir']} reports completion but {s['samples']} is missing")
    n = sum(s["n_outputs"] for s in summaries)
    mean = lambda key: sum(s["nfe_per_output"][key] * s["n_outputs"] for s in summaries) / max(n, 1)  # noqa: E731
    import dmcmc_edu

    manifest = {
        "format": MANIFEST_FORMAT,
        "complete": True,
        "world_size": env.world_size,
        "backend": env.backend,
        "base_seed": config.seed,
        "seed_rule": "rank r samples with seed derive_seed(base_seed, r) = SeedSequence([base_seed, r]) (63 bits)",
        "config_per_rank": config.to_dict() | {"seed": None},
        "model": model_spec,
        "classifier": None if classifier_path is None else str(classifier_path),
        "data_shape": list(data_shape),
        "n_outputs": n,
        "nfe_per_output": {"paper": mean("paper"), "full": mean("full")},
        "shards": summaries,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "dmcmc_edu": getattr(dmcmc_edu, "__version__", "0")},
    }
    manifest = _jsonable(manifest)
    atomic_write(out / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
    return manifest


def load_distributed_samples(out_dir) -> np.ndarray:
    """All samples of a finished distributed run, concatenated in rank order (reads ``manifest.json``)."""
    out = Path(out_dir)
    path = out / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run is not finished "
                                "(rank 0 writes it when all shards are done)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    return np.concatenate([np.load(out / s["samples"]) for s in manifest["shards"]])


# ----------------------------------------------------------------------------- command line


def _burn_in(text: str):
    """``"10:0.5,10:"`` -> ``[[10, 0.5], [10, None]]`` (an empty eta means the main eta)."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        steps, _, eta = part.partition(":")
        pairs.append([int(steps), float(eta) if eta.strip() else None])
    return pairs


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``sample-distributed`` (shared by ``python -m dmcmc_edu`` and ``-m dmcmc_edu.experiments.distributed``)."""
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
    s = p.add_argument_group("DLG settings (default: the preset's, else DMCMCConfig's)")
    s.add_argument("--preset", choices=list(PRESETS), default=None, help="the paper's settings (sampler.PRESETS)")
    s.add_argument("--sigma-min", type=float, default=None, help="default: preset, else the model's")
    s.add_argument("--sigma-max", type=float, default=None, help="default: preset, else the model's")
    s.add_argument("--n-levels", type=int, default=None, help="noise-level grid size (a classifier's own by default)")
    s.add_argument("--eta", type=float, default=None, help="absolute Langevin step size")
    s.add_argument("--n-skip", type=int, default=None, help="Gibbs steps per output")
    s.add_argument("--integrator", default=None, help="denoising integrator (kar1, kar2, pf_euler, ...)")
    s.add_argument("--steps", type=int, default=None, help="denoising integrator steps")
    s.add_argument("--sigma-update", default=None, choices=["exact", "classifier-argmax", "classifier-sample"])
    s.add_argument("--classifier", default=None, help="a saved noise-level classifier (train-image-classifier)")
    s.add_argument("--x-update", default=None, choices=["ula", "mala"])
    s.add_argument("--chains", type=int, default=None, help="chains PER RANK")
    s.add_argument("--outputs-per-chain", type=int, default=None)
    s.add_argument("--init-steps", type=int, default=None, help="KAR2 steps of the chains' initialisation")
    s.add_argument("--burn-in", type=_burn_in, default=None, help='e.g. "10:0.5,10:" (empty eta = the main eta)')
    s.add_argument("--final-tweedie", default=None, choices=["auto", "always", "never"])
    s.add_argument("--tweedie-sigma", type=float, default=None)
    s.add_argument("--seed", type=int, default=0, help="base seed; rank r uses derive_seed(seed, r)")
    r = p.add_argument_group("run")
    r.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available, else cpu) | cpu | cuda")
    r.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"])
    r.add_argument("--dtype", default="auto", choices=["auto", "float32", "float64"],
                   help="sampling dtype (auto: float64 for mixtures, float32 for networks)")
    r.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint every K output rounds")
    r.add_argument("--quiet", action="store_true")
    return p


def _model_spec(args) -> dict:
    if args.target:
        return {"kind": "mixture", "target": args.target}
    if args.score_sde:
        if not args.config:
            raise SystemExit("error: --score-sde needs --config (a preset name or a config.json)")
        return {"kind": "score_sde", "checkpoint": args.score_sde, "config": args.config}
    if args.diffusers_ve:
        return {"kind": "diffusers-ve", "path": args.diffusers_ve}
    return {"kind": "diffusers-vp", "path": args.diffusers_vp,
            "data_range": [0.0, 1.0] if args.vp_data_range == "unit" else [-1.0, 1.0]}


def cmd_sample_distributed(args) -> int:
    spec = _model_spec(args)
    env = setup(args.device, args.backend)
    try:
        n_levels = args.n_levels
        smin, smax = args.sigma_min, args.sigma_max
        if args.classifier and n_levels is None:
            from dmcmc_edu.models.classifier import NoiseLevelClassifier

            clf = NoiseLevelClassifier.load(args.classifier)
            n_levels = clf.n_levels
            if args.preset is None:  # the classifier's grid gives the sigma range
                cmin, cmax = classifier_sigma_range(clf)
                smin = smin if smin is not None else cmin
                smax = smax if smax is not None else cmax
        if args.preset is None and (smin is None or smax is None):
            _, _, info = build_model(spec, "cpu") if spec["kind"] == "mixture" else (None, None, _sigma_info(spec))
            smin = smin if smin is not None else info["sigma_min"]
            smax = smax if smax is not None else info["sigma_max"]
            if smin is None or smax is None:
                raise SystemExit("error: the model does not state its sigma range: give --sigma-min and --sigma-max")
        sigma_update = args.sigma_update
        if sigma_update is None and args.preset is None:
            sigma_update = "exact" if spec["kind"] == "mixture" else "classifier-argmax"
        cfg = build_config(args.preset, sigma_min=smin, sigma_max=smax, n_levels=n_levels, eta=args.eta,
                           n_skip=args.n_skip, integrator=args.integrator, steps=args.steps,
                           sigma_update=sigma_update, x_update=args.x_update, n_chains=args.chains,
                           outputs_per_chain=args.outputs_per_chain, init_steps=args.init_steps,
                           burn_in=args.burn_in, final_tweedie=args.final_tweedie, tweedie_sigma=args.tweedie_sigma,
                           seed=args.seed)
        dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
        try:
            manifest = sample_distributed(spec, cfg, args.out, classifier_path=args.classifier, dtype=dtype,
                                          checkpoint_every=args.checkpoint_every, progress=not args.quiet, env=env)
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"error (rank {env.rank}): {err}") from None
        if manifest is not None and not args.quiet:
            print(json.dumps({"manifest": str(Path(args.out) / "manifest.json"), "world_size": manifest["world_size"],
                              "n_outputs": manifest["n_outputs"], "nfe_per_output": manifest["nfe_per_output"]},
                             indent=1))
    finally:
        env.close()
    return 0


def classifier_sigma_range(classifier) -> tuple[float, float]:
    """``(sigma_min, sigma_max)`` of the grid a classifier was trained on.

    From its saved config when present (train-image-classifier stores them),
    else inverted from the grid of :func:`schedules.noise_level_grid`
    (``grid[0] = sigma_max``, ``grid[-1] = sigma_min (sigma_max/sigma_min)^1e-3``).
    """
    cfg = getattr(classifier, "config", {}) or {}
    if cfg.get("sigma_min") is not None and cfg.get("sigma_max") is not None:
        return float(cfg["sigma_min"]), float(cfg["sigma_max"])
    g = classifier.grid.double()
    t_min = 1e-3
    log_max = float(torch.log(g[0]))
    log_min = (float(torch.log(g[-1])) - t_min * log_max) / (1.0 - t_min)
    return float(np.exp(log_min)), float(np.exp(log_max))


def _sigma_info(spec: dict) -> dict:
    """The sigma range a network model states, without building it on a device (score_sde configs only)."""
    if spec["kind"] == "score_sde":
        from dmcmc_edu.models.score_sde import resolve_config

        cfg, _ = resolve_config(spec["config"])
        return {"sigma_min": float(cfg.sigma_min), "sigma_max": float(cfg.sigma_max)}
    _, _, info = build_model(spec, "cpu")
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="torchrun ... -m dmcmc_edu.experiments.distributed",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return cmd_sample_distributed(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
