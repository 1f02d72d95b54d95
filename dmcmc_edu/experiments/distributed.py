"""DLG sampling across processes with ``torch.distributed``: one resumable shard per rank, one manifest.

Launch with ``torchrun`` (one process per GPU, or several on a CPU)::

    torchrun --nproc_per_node 8 -m dmcmc_edu.cli.distributed --score-sde checkpoint_24.pth \\
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
* samples into ``OUT/rank_{r}`` with :func:`dmcmc_edu.runs.run_to_directory`,
  so each shard checkpoints atomically and an interrupted job resumes where
  it stopped when relaunched with the same command;
* when every shard is complete (a barrier), rank 0 writes
  ``OUT/manifest.json``: settings, model, world size, and per shard its seed,
  number of outputs, NFE ledger and files.  :func:`load_distributed_samples`
  reads the samples back in rank order.

``OUT/distributed.json`` records the world size, base seed, settings and the
content hashes of the model and classifier of the first launch (a
:class:`dmcmc_edu.runs.RunDirectory` record); a relaunch with other ones is
refused before anything is written (the shards would not fit together), and a
relaunch of a finished run reports its manifest and writes nothing.  Ranks
exchange nothing else: DLG chains are independent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.models.classifier import NoiseLevelClassifier
from dmcmc_edu.models.diffusers_adapters import load_diffusers_ve, load_diffusers_vp
from dmcmc_edu.models.score_sde import load_score_sde, resolve_config
from dmcmc_edu.paper import PRESETS
from dmcmc_edu.registry import integrator_table
from dmcmc_edu.runs import (
    RunDirectory,
    atomic_write,
    fingerprint,
    run_to_directory,
    sha256_file,
    sha256_json,
    target_sha256,
    versions,
)
from dmcmc_edu.targets import load_target

__all__ = [
    "MANIFEST_FORMAT",
    "derive_seed",
    "DistEnv",
    "local_env",
    "join",
    "setup",
    "build_model",
    "build_config",
    "classifier_sigma_range",
    "sample_distributed",
    "load_distributed_samples",
    "model_sigma_info",
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
        """Wait for every rank (nothing to wait for with one process)."""
        if self.world_size > 1:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def all_gather(self, obj) -> list:
        """Every rank's ``obj`` (JSON-like), in rank order; also a barrier."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Leave the process group if this process created it."""
        if self.owns_group:
            dist.destroy_process_group()
            self.owns_group = False


def local_env(device: str = "auto", backend: str = "auto") -> DistEnv:
    """Read torchrun's environment and pick the device, without joining the process group (:func:`join`).

    The command line checks a run here (rank 0 alone may measure its cost) before any process-group work.
    """
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
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev, backend=backend if world > 1 else None)


def join(env: DistEnv) -> DistEnv:
    """Join the process group of ``env`` (if its world size is above 1 and this process is not in one yet)."""
    if env.world_size > 1 and not env.owns_group:
        if dist.is_initialized():
            env.backend = dist.get_backend()
        else:
            kw = {"device_id": env.device} if env.backend == "nccl" else {}
            dist.init_process_group(backend=env.backend, **kw)
            env.owns_group = True
    return env


def setup(device: str = "auto", backend: str = "auto") -> DistEnv:
    """Read torchrun's environment, pick the device, join the process group (if WORLD_SIZE > 1)."""
    return join(local_env(device, backend))


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
        mix = load_target(spec["target"])
        return mix, (mix.d,), {"sigma_min": mix.default_sigma_min(), "sigma_max": mix.default_sigma_max(),
                               "exact": True, "dtype": torch.float64}
    if kind == "score_sde":
        model = load_score_sde(spec["checkpoint"], spec["config"], map_location=device)
    elif kind == "diffusers-ve":
        model = load_diffusers_ve(spec["path"], device=device)
    elif kind == "diffusers-vp":
        model = load_diffusers_vp(spec["path"], device=device, data_range=tuple(spec.get("data_range", (0, 1))))
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    return model, tuple(model.image_shape), {"sigma_min": model.sigma_min, "sigma_max": model.sigma_max,
                                             "exact": False, "dtype": torch.float32}


def build_config(preset: str | None = None, **overrides) -> DMCMCConfig:
    """A DMCMCConfig: the defaults, then a preset of :mod:`dmcmc_edu.paper`, then the overrides (None = keep)."""
    values = DMCMCConfig().to_dict()
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    known = {f.name for f in dataclasses.fields(DMCMCConfig)}  # to_dict leaves out per_chain_seeds when unset
    for k, v in overrides.items():
        if k not in known:
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


def _path_sha256(path) -> str | None:
    """The sha256 of a local model file, or of a folder's files (names and contents); None for a hub id."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if p.is_dir():
        return sha256_json({str(f.relative_to(p)): sha256_file(f) for f in sorted(p.rglob("*")) if f.is_file()})
    return None


def _distributed_run(env: DistEnv, out: Path, config: DMCMCConfig, model_spec: dict, classifier_path,
                     dtype) -> RunDirectory:
    """The record ``OUT/distributed.json`` of the whole run: world size, base seed, settings and content hashes.

    The model enters by content: a mixture by its numbers, a checkpoint or model folder by its files' sha256
    (a hub id by its name only); the classifier by its file's sha256.
    """
    spec = dict(model_spec)
    hashes = {}
    if spec["kind"] == "mixture":
        hashes["target"] = target_sha256(load_target(spec.pop("target")).to_dict())
    else:
        hashes["model"] = _path_sha256(spec.get("checkpoint") or spec.get("path"))
    hashes["classifier"] = None if classifier_path is None else sha256_file(classifier_path)
    settings = {**config.to_dict(), "world_size": env.world_size, "model": spec,
                "dtype": "auto" if dtype is None else str(dtype)}
    settings["base_seed"] = settings.pop("seed")
    labels = {"target": model_spec.get("target"), "model": model_spec.get("checkpoint") or model_spec.get("path"),
              "classifier": None if classifier_path is None else str(classifier_path)}
    return RunDirectory(out, fingerprint("sample-distributed", settings, hashes=hashes), outputs=("manifest.json",),
                        record="distributed.json", labels=labels)


def _load_classifier(classifier_path, config: DMCMCConfig, device):
    """The noise-level classifier of the run (None without a path), checked against the run's grid."""
    if classifier_path is None:
        return None
    classifier = NoiseLevelClassifier.load(classifier_path, map_location=device)
    if classifier.n_levels != config.n_levels or not torch.allclose(
            classifier.grid.double().cpu(), config.grid(), rtol=1e-6):
        raise ValueError(f"the classifier {classifier_path} was trained on another noise-level grid "
                         f"({classifier.n_levels} levels, {classifier.grid[0]:.4g} .. {classifier.grid[-1]:.4g}) "
                         f"than this run's ({config.n_levels} levels, "
                         f"{config.sigma_max:g} .. {config.sigma_min:g})")
    return classifier


def _check_sigma_update(config: DMCMCConfig, info: dict, classifier) -> None:
    if config.sigma_update == "exact" and not info["exact"]:
        raise ValueError("sigma_update 'exact' needs an analytic mixture; give a classifier and "
                         "--sigma-update classifier-argmax (the paper) or classifier-sample")
    if config.sigma_update.startswith("classifier") and classifier is None:
        raise ValueError(f"sigma_update {config.sigma_update!r} needs a noise-level classifier (--classifier PATH; "
                         "train one with: python -m dmcmc_edu train-image-classifier ...)")


def _write_manifest(env: DistEnv, out: Path, summaries: list, config: DMCMCConfig, model_spec, classifier_path,
                    data_shape) -> dict:
    """Rank 0's summary of a finished run: settings, seeds, per-shard outputs and NFE, mean NFE per output."""
    summaries = sorted(summaries, key=lambda s: s["rank"])
    for s in summaries:
        if not (out / s["samples"]).is_file():
            raise RuntimeError(f"shard {s['dir']} reports completion but {s['samples']} is missing")
    n = sum(s["n_outputs"] for s in summaries)
    mean = lambda key: sum(s["nfe_per_output"][key] * s["n_outputs"] for s in summaries) / max(n, 1)  # noqa: E731
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
        "versions": versions(),
    }
    manifest = _jsonable(manifest)
    atomic_write(out / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
    return manifest


def _run(env: DistEnv, model_spec, config, out: Path, classifier_path, dtype, checkpoint_every, progress):
    config = config.validate(integrator_table())
    t0 = time.time()
    run = _distributed_run(env, out, config, model_spec, classifier_path, dtype)
    state = run.check()  # every rank checks before rank 0 writes anything
    env.barrier()
    if state == "finished":  # the whole run is there: report its manifest, write nothing
        return json.loads((out / "manifest.json").read_text()) if env.rank == 0 else None
    if env.rank == 0:
        run.start({"world_size": env.world_size, "base_seed": config.seed, "config": config.to_dict(),
                   "model": model_spec, "classifier": None if classifier_path is None else str(classifier_path),
                   "versions": versions()})
    env.barrier()
    model, data_shape, info = build_model(model_spec, env.device)
    classifier = _load_classifier(classifier_path, config, env.device)
    _check_sigma_update(config, info, classifier)
    seed = derive_seed(config.seed, env.rank)
    sampler = DMCMCSampler(model, dataclasses.replace(config, seed=seed), data_shape=data_shape,
                           classifier=classifier, device=env.device, dtype=dtype or info["dtype"],
                           integrators=integrator_table())
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
    manifest = _write_manifest(env, out, summaries, config, model_spec, classifier_path, data_shape)
    run.finish({"n_outputs": manifest["n_outputs"]})
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


# ----------------------------------------------------------------------------- sigma ranges


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


def model_sigma_info(spec: dict) -> dict:
    """The model's own ``sigma_min``/``sigma_max`` (a score_sde config is read without building the network)."""
    if spec["kind"] == "score_sde":
        cfg, _ = resolve_config(spec["config"])
        return {"sigma_min": float(cfg.sigma_min), "sigma_max": float(cfg.sigma_max)}
    _, _, info = build_model(spec, "cpu")
    return info
