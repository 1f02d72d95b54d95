"""Files a run leaves behind: atomic writes, write-once outputs, settings checks, resumable chunked work.

Everything in the toolkit that writes a result goes through this module, so
the rules hold in one place:

* a file is written to a temporary name in the same folder, flushed to disk
  and renamed over the target (:func:`atomic_write`): a kill never leaves half
  a file, and the file gets the ordinary mode of a new file (umask);
* an output is written once (:func:`save_once`): a rerun that would produce
  different content is refused instead of overwriting what a user made;
* a run directory records its settings; a rerun with other settings is
  refused with the list of differences (:func:`settings_diff`);
* chunked work (:func:`run_chunks`) resumes from the chunks already on disk.

The last part, :func:`run_to_directory`, applies these rules to a DMCMC
sampler: resumable output rounds with an atomic checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from dmcmc_edu.core.dlg import dlg_init
from dmcmc_edu.core.ledger import NFELedger
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCResult, DMCMCSampler

__all__ = ["atomic_write", "write_json", "save_npy", "save_once", "settings_diff", "versions", "run_chunks",
           "run_to_directory", "sampler_checkpoint", "restore_sampler"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write_fn: Callable[[str], None]) -> None:
    """Write ``path`` atomically: ``write_fn(tmp)`` writes a temporary file, which is fsynced and renamed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON, atomically (NumPy scalars and other objects through ``str``)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=indent, default=_json_default)))


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return str(v)


def save_npy(path, array: np.ndarray) -> None:
    """``np.save`` into exactly ``path`` (a file object, so no ``.npy`` is appended to a temporary name)."""
    with open(path, "wb") as f:
        np.save(f, array)


def save_once(path, array: np.ndarray) -> None:
    """Save an output file once; if it exists (an interrupted earlier run), it must hold the same data."""
    path = Path(path)
    if path.exists():
        old = np.load(path)
        if old.shape != array.shape or not np.array_equal(old, array):
            raise RuntimeError(f"{path} exists with different content; refusing to overwrite user outputs")
        return
    atomic_write(path, lambda tmp: save_npy(tmp, array))


def _jsonable(v):
    return json.loads(json.dumps(v, default=_json_default))


def settings_diff(saved: dict, now: dict, defaults: dict | None = None) -> list[str]:
    """The settings that differ, as ``"key: saved (saved) vs now (now)"`` lines.

    A key missing on one side counts as its value in ``defaults`` (runs saved
    before an option existed still resume).
    """
    defaults = defaults or {}
    keys = sorted(set(saved) | set(now))
    return [f"{k}: {saved.get(k)!r} (saved) vs {now.get(k)!r} (now)"
            for k in keys if _jsonable(saved.get(k, defaults.get(k))) != _jsonable(now.get(k, defaults.get(k)))]


def versions() -> dict:
    """Versions of Python, torch, NumPy and this package (recorded in every run file)."""
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "dmcmc_edu": package_version("dmcmc_edu")}


def run_chunks(folder, n: int, batch: int, make_chunk: Callable[[int, int], tuple[np.ndarray, float]], *,
               desc: str = "chunks", progress: bool = True) -> tuple[np.ndarray, float]:
    """Produce ``n`` rows in chunks of ``batch`` rows, resuming from the chunks already in ``folder``.

    ``make_chunk(k, rows)`` returns chunk ``k`` (``rows`` rows) and its NFE
    per row; it must depend only on ``k`` (e.g. seed the chunk's generator
    with ``k``), so a resumed run equals an uninterrupted one.  Each chunk is
    written atomically, then its NFE is recorded in ``folder/nfe.json``.
    Returns all rows in order and the mean NFE per row.
    """
    if batch < 1 or n < 1:
        raise ValueError(f"need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nfe_file = folder / "nfe.json"
    nfe = json.loads(nfe_file.read_text()) if nfe_file.exists() else {}
    n_chunks = -(-n // batch)
    rows = [min(batch, n - k * batch) for k in range(n_chunks)]
    for k in tqdm(range(n_chunks), desc=desc, disable=not progress):
        path = folder / f"chunk_{k:05d}.npy"
        if path.exists() and str(k) in nfe:
            continue
        arr, chunk_nfe = make_chunk(k, rows[k])
        atomic_write(path, lambda tmp, arr=arr: save_npy(tmp, arr))
        nfe[str(k)] = chunk_nfe
        write_json(nfe_file, nfe, indent=None)
    out = np.concatenate([np.load(folder / f"chunk_{k:05d}.npy") for k in range(n_chunks)])
    return out, sum(nfe[str(k)] * rows[k] for k in range(n_chunks)) / n


# ----------------------------------------------------------------------------- a DMCMC sampler's run directory

CHECKPOINT_FORMAT = "dmcmc_edu.dmcmc_checkpoint/1"


def _config_diff(saved: dict, now: dict) -> list[str]:
    return settings_diff(saved, now, defaults=DMCMCConfig().to_dict())


def sampler_checkpoint(sampler: DMCMCSampler) -> dict:
    """Everything needed to continue a sampler: chain state, generator state, ledger, sigma trace."""
    state = sampler.state
    return {
        "format": CHECKPOINT_FORMAT,
        "config": sampler.config.to_dict(),
        "rounds_done": sampler.rounds_done,
        "x": None if state is None else state.x.cpu(),
        "index": None if state is None else state.index.cpu(),
        "step": 0 if state is None else state.step,
        "generator": sampler.generator.get_state(),
        "ledger": sampler.ledger.to_dict(),
        "trace": torch.stack(sampler.trace) if sampler.trace else None,
    }


def restore_sampler(sampler: DMCMCSampler, d: dict) -> None:
    """Continue ``sampler`` from :func:`sampler_checkpoint`'s dict; other settings are refused."""
    if d.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"not a DMCMC checkpoint (format {d.get('format')!r})")
    diff = _config_diff(d["config"], sampler.config.to_dict())
    if diff:
        raise ValueError("checkpoint was made with different settings: " + "; ".join(diff))
    sampler.rounds_done = int(d["rounds_done"])
    if d["x"] is not None:
        sampler.state = dlg_init(d["x"].to(sampler.device, sampler.dtype), d["index"].to(sampler.device),
                                 sampler.grid)
        sampler.state.step = int(d["step"])
    sampler.generator.set_state(d["generator"])
    sampler.ledger = NFELedger.from_dict(d["ledger"])
    sampler.trace = list(d["trace"]) if d.get("trace") is not None else []


def run_to_directory(sampler: DMCMCSampler, out_dir, *, checkpoint_every: int = 1, progress: bool = True,
                     run_info: dict | None = None, on_round=None) -> DMCMCResult:
    """Run (or resume) a DMCMC sampler into ``out_dir``, checkpointing atomically every ``checkpoint_every`` rounds.

    Layout: ``run.json`` (settings), ``checkpoint.pt`` (chain state, RNG state,
    ledger), ``rounds/round_XXXXXX.npy`` and ``rounds/sigma_XXXXXX.npy`` (one
    file per output round, never overwritten), and when complete
    ``samples.npy`` (float64, [n_outputs, ...]) and ``ledger.json``.  Re-running
    the same call resumes from the checkpoint and produces exactly the outputs
    of an uninterrupted run; different settings are refused with the list of
    differences.  ``on_round(r)`` is called after each round (tests use it to
    simulate a kill).
    """
    out = Path(out_dir)
    (out / "rounds").mkdir(parents=True, exist_ok=True)
    info = {"config": sampler.config.to_dict(), **(run_info or {})}
    run_json = out / "run.json"
    if run_json.exists():
        saved = json.loads(run_json.read_text())
        diff = _config_diff(saved.get("config", {}), info["config"])
        if diff:
            raise ValueError(f"{out} holds a run with different settings: " + "; ".join(diff)
                             + " -- choose another --out directory")
    else:
        atomic_write(run_json, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=2)))
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        restore_sampler(sampler, torch.load(ckpt, weights_only=True))

    def save_ckpt():
        atomic_write(ckpt, lambda tmp: torch.save(sampler_checkpoint(sampler), tmp))

    total = sampler.config.outputs_per_chain
    bar = tqdm(total=total, initial=sampler.rounds_done, desc="DLG output rounds", disable=not progress)
    while sampler.rounds_done < total:
        r = sampler.rounds_done
        o, s = sampler.next_round()
        save_once(out / "rounds" / f"round_{r:06d}.npy", o.detach().cpu().numpy())
        save_once(out / "rounds" / f"sigma_{r:06d}.npy", s.detach().cpu().numpy())
        if sampler.rounds_done % checkpoint_every == 0 or sampler.rounds_done == total:
            save_ckpt()
        bar.update(1)
        if on_round is not None:
            on_round(r)
    bar.close()
    if sampler.rounds_done == 0:
        save_ckpt()
    samples = np.concatenate([np.load(out / "rounds" / f"round_{r:06d}.npy") for r in range(total)])
    sig = np.concatenate([np.load(out / "rounds" / f"sigma_{r:06d}.npy") for r in range(total)])
    save_once(out / "samples.npy", samples.astype(np.float64))
    ledger = sampler.ledger.to_dict()
    ledger["config"] = {k: sampler.config.to_dict()[k] for k in ("n_skip", "integrator", "steps", "n_chains",
                                                                   "outputs_per_chain", "sigma_update", "x_update")}
    atomic_write(out / "ledger.json", lambda tmp: Path(tmp).write_text(json.dumps(ledger, indent=2)))
    C = sampler.config.n_chains
    trace = torch.stack(sampler.trace) if sampler.trace else None
    return DMCMCResult(torch.from_numpy(samples), torch.from_numpy(sig), torch.arange(C).repeat(total),
                       sampler.ledger, trace)
