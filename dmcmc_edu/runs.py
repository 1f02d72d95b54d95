"""Files a run leaves behind: atomic writes, write-once outputs, settings checks, resumable chunked work.

Everything in the toolkit that writes a result goes through this module, so
the rules hold in one place:

* a file is written to a temporary name in the same folder, flushed to disk
  and renamed over the target (:func:`atomic_write`): a kill never leaves half
  a file, and the file gets the ordinary mode of a new file (umask);
* an output is written once (:func:`save_once`, :func:`write_once`): a rerun
  that would produce different content is refused instead of overwriting
  what a user made;
* a run folder (:class:`RunDirectory`) keeps a record, ``run.json``, with the
  :func:`fingerprint` of everything that determines its outputs: the kind of
  run, the settings that change them, content hashes (sha256) of the target
  and of model / classifier / weight files, and the package version.  Before
  anything is created or written, a call with another fingerprint is refused
  with one message listing every difference (``name: saved vs now``), and so
  are a folder holding another kind of run and a folder with files but no
  record; a finished run (its outputs present with their recorded sha256)
  is reported and nothing is written at all, so a read-only folder or a full
  disk cannot damage it.  A command whose result is a single file keeps the
  fingerprint inside that file (:func:`saved_output`);
* chunked work (:func:`run_chunks`) resumes from the chunks already on disk;
* the part files of a run (chunks, output rounds) are checked when they are
  read back (:func:`load_parts`): a file that cannot be read, has the wrong
  shape or holds NaN / inf rows stops the run with its name, before anything
  is concatenated or written.

The last part, :func:`run_to_directory`, applies these rules to a DMCMC
sampler: resumable output rounds with an atomic checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import platform
import tempfile
import time
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from dmcmc_edu.core.contract import CountingDenoiser, nonfinite_rows
from dmcmc_edu.core.sampler import STATE_FORMAT, DMCMCConfig, DMCMCResult, DMCMCSampler

__all__ = ["fresh_folder", "plot_only_paths", "atomic_write", "write_json", "save_npy", "save_once", "write_once",
           "settings_diff", "versions",
           "load_parts", "run_chunks", "run_to_directory", "sampler_checkpoint", "restore_sampler", "RUN_FORMAT",
           "RECORD_NAME", "RunRefused", "RunDirectory", "read_record", "fingerprint", "fingerprint_diff",
           "check_saved_fingerprint", "saved_output", "sampler_fingerprint", "sha256_file", "sha256_json",
           "sha256_tensors", "target_sha256", "content_sha256", "DLG_OUTPUTS", "refuse_other_settings",
           "BudgetSpent", "deadline_after", "stop_at_deadline"]


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
        _fsync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entry list (the rename of :func:`atomic_write`) where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    """Save an ``.npy`` output once (:func:`write_once`): an existing file must hold exactly this array."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_once(path, buffer.getvalue())


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


def refuse_other_settings(path, settings: dict, *, extendable: tuple = ()) -> dict | None:
    """The JSON report at ``path`` when its ``"settings"`` are ``settings`` (None if there is no such file).

    A report made with other settings raises :class:`RunRefused` (one line; nothing is touched).  Keys in
    ``extendable`` hold lists that a later call may extend: more seeds of the same analysis are allowed.
    """
    path = Path(path)
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    saved = doc.get("settings") or {}

    def fixed(d):
        return {k: v for k, v in d.items() if k not in extendable}

    if fixed(saved) != fixed(settings) or not all(set(saved.get(k) or []) <= set(settings[k]) for k in extendable):
        more = f" (adding to {', '.join(extendable)} is allowed)" if extendable else ""
        raise RunRefused(f"{path} was made with other settings ({saved} vs {settings}); it is not replaced -- "
                         f"choose another --out{more}")
    return doc


def versions() -> dict:
    """Versions of Python, torch, NumPy and this package (recorded in every run file)."""
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "dmcmc_edu": package_version("dmcmc_edu")}


# ----------------------------------------------------------------------------- run records and fingerprints

RUN_FORMAT = "dmcmc_edu.run/1"
RECORD_NAME = "run.json"


class RunRefused(ValueError):
    """A call may not write where it was sent (other settings, another kind of run, unknown files).

    Raised before anything is created or changed, so the directory is left exactly as it was.
    """


def write_once(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, unless the file already holds exactly these bytes.

    A file with other bytes is refused (``RuntimeError``): an output is never replaced.
    """
    path = Path(path)
    if path.exists():
        if path.read_bytes() != data:
            raise RuntimeError(f"{path} exists with different content; refusing to overwrite user outputs")
        return
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def sha256_file(path) -> str:
    """The sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj) -> str:
    """The sha256 (hex) of ``obj`` as canonical JSON (sorted keys, no spaces): equal data give equal hashes."""
    text = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_tensors(tensors: dict) -> str:
    """The sha256 (hex) of named tensors: the name, dtype, shape and bytes of each, in the order of the names."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensors[name].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def target_sha256(target: dict) -> str:
    """The content hash of a mixture target from its dict form (``to_dict()``); its display name is left out."""
    return sha256_json({k: v for k, v in target.items() if k != "name"})


def content_sha256(obj) -> str | None:
    """A content hash of what a run samples from or with; None when there is nothing to hash.

    A target (anything with ``to_dict()``) is hashed by its numbers
    (:func:`target_sha256`); a ``torch.nn.Module`` by its class, its state dict
    and the ``config`` / ``arch_kwargs`` of it and of its ``net`` (settings that
    are not weights, e.g. a U-Net's sigma_data); a wrapper that keeps its
    network in ``net`` or ``model`` by that network.
    """
    if obj is None:
        return None
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return target_sha256(to_dict())
    if isinstance(obj, torch.nn.Module):
        parts = [m for m in (obj, getattr(obj, "net", None)) if m is not None]
        extra = [{a: getattr(m, a, None) for a in ("config", "arch_kwargs")} for m in parts]
        return sha256_json({"class": type(obj).__qualname__, "state": sha256_tensors(obj.state_dict()),
                            "settings": extra})
    for attr in ("net", "model"):
        inner = getattr(obj, attr, None)
        if inner is not None and inner is not obj:
            return content_sha256(inner)
    return None


def fingerprint(kind: str, settings: dict, *, target: dict | None = None, files: dict | None = None,
                hashes: dict | None = None) -> dict:
    """What determines a run's outputs, to be stored in its record and compared on every later call.

    ``kind`` names the kind of run (``"sample"``, ``"sample-dlg"``, ``"ladder"``, ...); ``settings`` holds the
    settings that change the outputs (not verbosity, thread counts or checkpoint intervals); ``target`` is a
    mixture's dict form (stored as ``target_sha256``); ``files`` maps names to files whose bytes matter (stored
    as ``<name>_sha256``; a None path as None); ``hashes`` adds content hashes computed elsewhere.  The
    package version is part of it: another version may compute other numbers.
    """
    fp = {"kind": kind, "settings": _jsonable(settings), "dmcmc_edu": package_version("dmcmc_edu")}
    if target is not None:
        fp["target_sha256"] = target_sha256(target)
    for name, path in (files or {}).items():
        fp[f"{name}_sha256"] = None if path is None else sha256_file(path)
    for name, value in (hashes or {}).items():
        fp[f"{name}_sha256"] = value
    return fp


def _shown(value, label=None) -> str:
    """A value of a difference line: hashes shortened to 12 digits (with the name of what they hash, if known)."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + (f" ({label})" if label else "")
    return repr(value)


_ABSENT = object()


def fingerprint_diff(saved: dict, now: dict, labels: tuple[dict, dict] = ({}, {})) -> list[str]:
    """The entries of two fingerprints that differ, one ``"name: saved vs now"`` line each.

    Settings are listed by their own names; a content hash ``<x>_sha256`` is
    shown shortened, with ``labels[0/1][x]`` (e.g. the target's name) beside it.
    """
    def flat(fp: dict) -> dict:
        out = {k: v for k, v in fp.items() if k != "settings"}
        out.update(fp.get("settings") or {})
        return out

    a, b = flat(_jsonable(saved)), flat(_jsonable(now))
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, _ABSENT) != b.get(key, _ABSENT):
            name = key[:-len("_sha256")] if key.endswith("_sha256") else None
            left = _shown(a[key], labels[0].get(name)) if key in a else "(not recorded)"
            right = _shown(b[key], labels[1].get(name)) if key in b else "(not recorded)"
            lines.append(f"{key}: {left} vs {right}")
    return lines


def _is_temporary(name: str) -> bool:
    """A temporary file that :func:`atomic_write` left behind when its process was killed."""
    return name.startswith(".") and name.endswith(".tmp")


def read_record(path) -> dict:
    """The run record at ``path`` (a JSON file with a fingerprint); anything else is refused with its reason."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RunRefused(f"{path} cannot be read as a run record ({type(err).__name__}: {err}); the directory is "
                         "left as it is -- choose another --out") from None
    if not isinstance(record, dict) or not isinstance(record.get("fingerprint"), dict):
        raise RunRefused(f"{path} is not a run record of this version of dmcmc_edu (it holds no fingerprint, e.g. "
                         "it was written by an older version); the directory is left as it is -- choose another "
                         "--out")
    return record


class RunDirectory:
    """A folder that holds one run's results and the record (``run.json``) of what made them.

    The rules it applies, in :meth:`check`, before anything is created or written:

    * a folder that does not exist, or is empty, takes a new run;
    * a folder whose record has another kind of run, or the same kind with another fingerprint, is refused
      (:class:`RunRefused`, one message listing every difference as ``name: saved vs now``);
    * a folder with files but no record is refused (the files are someone else's); temporary files left by a
      killed :func:`atomic_write` do not count;
    * a run whose record says it finished, with every recorded output present with its recorded sha256, is
      ``"finished"``: the caller reports it and writes nothing (so a read-only folder or a full disk is fine);
      an output changed after it was recorded is refused; a missing one is made again (``"resume"``).

    ``outputs`` are the files (relative to the folder) whose hashes :meth:`finish` records.  ``record`` is the
    record's file name; with ``shared=True`` the folder may also hold other runs of the same kind, each with
    its own record ``<name>.run.json`` (the ladder keeps several sweeps in one folder).  ``labels`` name what
    the content hashes hash (shown in difference lines).
    """

    def __init__(self, path, fp: dict, *, outputs=(), record: str = RECORD_NAME, labels: dict | None = None,
                 shared: bool = False):
        self.path = Path(path)
        self.fingerprint = _jsonable(fp)
        self.outputs = tuple(outputs)
        self.record_path = self.path / record
        self.labels = dict(labels or {})
        self.shared = shared
        self.state: str | None = None
        self.saved: dict | None = None

    @property
    def kind(self) -> str:
        return self.fingerprint["kind"]

    def check(self, replace: bool = False) -> str:
        """``"new"``, ``"resume"`` or ``"finished"``; reads only.  Raises :class:`RunRefused` (see the class).

        ``replace=True`` is a user's explicit request (an ``--overwrite`` option) to replace what the folder
        holds: a folder that would be refused takes a new run instead (its record is replaced on :meth:`start`).
        A finished run with this very fingerprint is still only reported.
        """
        if self.state is None:
            try:
                self.state = self._check()
            except RunRefused:
                if not replace:
                    raise
                self.state, self.saved = "new", None
        return self.state

    def _refuse(self, why: str, remedy: str = "choose another --out") -> RunRefused:
        return RunRefused(f"{self.path} {why}; nothing was written -- {remedy}")

    def _check(self) -> str:
        p = self.path
        if p.exists() and not p.is_dir():
            raise self._refuse("exists and is not a directory")
        if not p.exists():
            return "new"
        if not self.record_path.exists():
            return self._check_without_record()
        saved = read_record(self.record_path)
        kind = saved["fingerprint"].get("kind")
        if kind != self.kind:
            raise self._refuse(f"holds a {kind!r} run, and this is a {self.kind!r} run")
        diff = fingerprint_diff(saved["fingerprint"], self.fingerprint, (saved.get("labels") or {}, self.labels))
        if diff:
            raise self._refuse("holds a run made with other settings; different settings (saved vs now): "
                               + "; ".join(diff), "choose another --out, or re-run with the saved settings")
        self.saved = saved
        if not saved.get("complete"):
            return "resume"
        missing = []
        for name, digest in (saved.get("outputs") or {}).items():
            f = p / name
            if not f.is_file():
                missing.append(name)
            elif sha256_file(f) != digest:
                raise self._refuse(f"holds a finished run whose output {name} was changed after it was recorded "
                                   f"(sha256 {digest[:12]} in {self.record_path.name})",
                                   "move that file away to have it made again, or choose another --out")
        return "resume" if missing else "finished"

    def _check_without_record(self) -> str:
        entries = sorted(e for e in os.listdir(self.path) if not _is_temporary(e))
        if not entries:
            return "new"
        records = [e for e in entries if e == RECORD_NAME or e.endswith("." + RECORD_NAME)]
        if self.shared and records:
            kinds = {read_record(self.path / e)["fingerprint"].get("kind") for e in records}
            if kinds == {self.kind}:
                return "new"
            raise self._refuse(f"holds runs of kind {', '.join(sorted(map(repr, kinds)))}, and this is a "
                               f"{self.kind!r} run")
        if records:  # a record under another name: another kind of run
            kinds = {read_record(self.path / e)["fingerprint"].get("kind") for e in records}
            raise self._refuse(f"holds a {', '.join(sorted(map(repr, kinds)))} run, and this is a {self.kind!r} run")
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise self._refuse(f"holds files ({shown}) but no run record ({self.record_path.name}); they are not "
                           "this toolkit's run and are left alone")

    def start(self, info: dict | None = None) -> dict:
        """Create the folder and the record of a new run (``complete: false``); a resumed run keeps its record."""
        state = self.check()
        if state == "finished":
            raise RuntimeError(f"{self.path} holds the finished run; there is nothing to start")
        if state == "new":
            self.path.mkdir(parents=True, exist_ok=True)
            self.saved = {**(info or {}), "format": RUN_FORMAT, "fingerprint": self.fingerprint,
                          "labels": self.labels, "complete": False}
            write_json(self.record_path, self.saved)
            self.state = "resume"
        return self.saved

    def reopen(self) -> None:
        """Mark a finished run as running again, before its outputs change (a training continued to more steps)."""
        if self.check() != "finished":
            raise RuntimeError(f"{self.path} holds no finished run to reopen")
        self.saved = {k: v for k, v in self.saved.items() if k != "outputs"} | {"complete": False}
        write_json(self.record_path, self.saved)
        self.state = "resume"

    def finish(self, info: dict | None = None) -> dict:
        """Record the finished run: ``info``, ``complete: true`` and the sha256 of every output (written once)."""
        outputs = {name: sha256_file(self.path / name) for name in self.outputs}
        record = {**(self.saved or {}), **(info or {}), "format": RUN_FORMAT, "fingerprint": self.fingerprint,
                  "labels": self.labels, "complete": True, "outputs": outputs}
        write_json(self.record_path, record)
        self.saved, self.state = record, "finished"
        return record


def saved_output(path, fp: dict, read_fingerprint: Callable[[Path], dict | None]) -> bool:
    """Whether the single output file ``path`` already holds the result of this very call.

    ``True``: it does (report it, write nothing); ``False``: there is no file (make it).  A file made with
    another fingerprint, one without a fingerprint, or one ``read_fingerprint(path)`` cannot read, is refused
    (:class:`RunRefused`) and left as it is.  For commands whose result is one file carrying its own record.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_file():
        raise RunRefused(f"{path} exists and is not a file; it is left as it is -- choose another output path")
    try:
        saved = read_fingerprint(path)
    except (ValueError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise RunRefused(f"{path} exists and cannot be read as this command's output ({type(err).__name__}: "
                         f"{err}); it is left as it is -- choose another output path") from None
    check_saved_fingerprint(saved, fp, path)
    return True


def check_saved_fingerprint(saved: dict | None, fp: dict, where) -> None:
    """Refuse (:class:`RunRefused`) a single output file whose recorded fingerprint is missing or differs from ``fp``.

    For commands whose result is one file that carries its own record (a trained classifier keeps it in its
    config): the same rules and message as :class:`RunDirectory`.
    """
    if not isinstance(saved, dict):
        raise RunRefused(f"{where} exists but records no fingerprint (made by an older version or by hand); it is "
                         "left as it is -- choose another output path")
    if saved.get("kind") != fp["kind"]:
        raise RunRefused(f"{where} holds the result of a {saved.get('kind')!r} run, and this is a {fp['kind']!r} "
                         "run; nothing was written -- choose another output path")
    diff = fingerprint_diff(saved, fp)
    if diff:
        raise RunRefused(f"{where} was made with other settings; different settings (saved vs now): "
                         + "; ".join(diff) + "; nothing was written -- choose another output path")


def _load_part(path: Path, rows: int, trailing, remedy: str) -> np.ndarray:
    """One part file of a run, refused (``ValueError`` naming it) unless readable, ``[rows, *trailing]`` and finite."""
    try:
        arr = np.load(path)
    except (OSError, ValueError, EOFError) as err:  # missing, zero bytes, truncated, not an .npy
        raise ValueError(f"{path}: cannot be read ({type(err).__name__}: {err}); {remedy}") from None
    if arr.ndim == 0 or arr.shape[0] != rows or (trailing is not None and arr.shape[1:] != tuple(trailing)):
        want = str([rows, *trailing]) if trailing is not None else f"{rows} rows"
        raise ValueError(f"{path}: holds an array of shape {list(arr.shape)}, expected {want}; {remedy}")
    if arr.size and (arr.dtype.kind in "fc"):
        n_bad = len(nonfinite_rows(torch.from_numpy(arr)))
        if n_bad:
            raise ValueError(f"{path}: {n_bad} of {rows} rows hold NaN or inf; {remedy}")
    return arr


def load_parts(paths, rows, *, trailing=None, remedy: str = "the run's files are damaged") -> list[np.ndarray]:
    """Read back the part files of a run (chunks, output rounds) for concatenation, checking each one.

    ``rows[i]`` is the number of rows ``paths[i]`` must hold; every file must
    have the trailing shape ``trailing`` (default: that of the first file).
    A file that cannot be read (missing, zero bytes, truncated), has another
    shape, or holds a row with NaN or inf raises ``ValueError`` naming it and
    ending with ``remedy`` (what the user can do).  Nothing is written.
    """
    arrays = []
    for path, n in zip(paths, rows):
        arrays.append(_load_part(Path(path), int(n), trailing, remedy))
        trailing = arrays[0].shape[1:]
    return arrays


class BudgetSpent(Exception):
    """A run stopped at a boundary (a chunk, an output round, a burn-in checkpoint) because its time budget was spent.

    Everything done so far is on disk and checkpointed: the same call again continues from there.  ``done`` and
    ``total`` count the units (chunks, output rounds; ``stage`` names them) finished and needed; ``samples`` (if
    known) the samples those units wrote.
    """

    def __init__(self, stage: str, done: int, total: int, samples: int | None = None):
        self.stage, self.done, self.total, self.samples = stage, done, total, samples
        wrote = "" if samples is None else f" ({samples} samples written)"
        super().__init__(f"time budget spent after {done} of {total} {stage}{wrote}; the run is saved -- run the "
                         "same command again to continue")


def deadline_after(minutes: float | None, start: float | None = None) -> float | None:
    """The ``time.monotonic()`` value at which a budget of ``minutes`` (None: no budget) from ``start`` ends."""
    if minutes is None:
        return None
    return (time.monotonic() if start is None else start) + 60.0 * minutes


def _spent(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class _StopAtDeadline(CountingDenoiser):
    """A denoiser that raises :class:`BudgetSpent` at its first evaluation after a deadline (a counter otherwise)."""

    def __init__(self, model, deadline: float):
        super().__init__(model)
        self.deadline = deadline

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if _spent(self.deadline):
            raise BudgetSpent("denoiser evaluations", self.calls, self.calls)
        return super().__call__(x, sigma)


def stop_at_deadline(model, deadline: float | None):
    """``model`` (a denoiser), stopping at its first evaluation once ``deadline`` (:func:`deadline_after`) has
    passed: it raises :class:`BudgetSpent` (no deadline: ``model`` itself).

    For a chunk of :func:`run_chunks`: the chunk being made is dropped (only whole chunks are ever written), so a
    budget is honoured within one denoiser evaluation, whatever the integrator (rk45 included).
    """
    return model if deadline is None else _StopAtDeadline(model, deadline)


def _read_nfe(path: Path) -> dict:
    """The ``{chunk: NFE per row}`` record of :func:`run_chunks`; anything else is refused by name (ValueError)."""
    remedy = "delete it and the chunk files beside it, or choose another --out"
    try:
        nfe = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: cannot be read as the chunks' NFE record ({type(err).__name__}: "
                         f"{' '.join(str(err).split())}); {remedy}") from None
    if not isinstance(nfe, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            and np.isfinite(v) for v in nfe.values()):
        raise ValueError(f"{path}: is not the chunks' NFE record (expected an object of chunk number: NFE per row, "
                         f"found a {type(nfe).__name__}); {remedy}")
    return nfe


def run_chunks(folder, n: int, batch: int, make_chunk: Callable[[int, int], tuple[np.ndarray, float]], *,
               desc: str = "chunks", progress: bool = True, deadline: float | None = None) -> tuple[np.ndarray, float]:
    """Produce ``n`` rows in chunks of ``batch`` rows, resuming from the chunks already in ``folder``.

    ``make_chunk(k, rows)`` returns chunk ``k`` (``rows`` rows) and its NFE
    per row; it must depend only on ``k`` (e.g. seed the chunk's generator
    with ``k``), so a resumed run equals an uninterrupted one.  Each chunk is
    written atomically, then its NFE is recorded in ``folder/nfe.json``.
    Returns all rows in order and the mean NFE per row.  A chunk file that is
    unreadable, misshapen or holds NaN / inf rows is refused by name
    (:func:`load_parts`); delete it and call again to make it anew.
    ``deadline`` (a ``time.monotonic()`` value, :func:`deadline_after`): once
    it has passed, the next chunk is not started and :class:`BudgetSpent` is
    raised (the chunks made so far are on disk; calling again continues).
    A ``make_chunk`` that raises :class:`BudgetSpent` itself (a model wrapped
    by :func:`stop_at_deadline`) stops the run inside its chunk: that chunk is
    not written, and the error counts the chunks and samples on disk.
    """
    if batch < 1 or n < 1:
        raise ValueError(f"need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nfe_file = folder / "nfe.json"
    nfe = _read_nfe(nfe_file) if nfe_file.exists() else {}
    n_chunks = -(-n // batch)
    rows = [min(batch, n - k * batch) for k in range(n_chunks)]
    for k in tqdm(range(n_chunks), desc=desc, disable=not progress):
        path = folder / f"chunk_{k:05d}.npy"
        if path.exists() and str(k) in nfe:
            continue
        if _spent(deadline):
            raise _chunks_spent(folder, nfe, rows) from None
        try:
            arr, chunk_nfe = make_chunk(k, rows[k])
        except BudgetSpent:  # inside chunk k: nothing of it is written
            raise _chunks_spent(folder, nfe, rows) from None
        atomic_write(path, lambda tmp, arr=arr: save_npy(tmp, arr))
        nfe[str(k)] = chunk_nfe
        write_json(nfe_file, nfe, indent=None)
    out = np.concatenate(load_parts([folder / f"chunk_{k:05d}.npy" for k in range(n_chunks)], rows,
                                    remedy="delete this chunk file and run again to make it anew"))
    return out, sum(nfe[str(k)] * rows[k] for k in range(n_chunks)) / n


def _chunks_spent(folder: Path, nfe: dict, rows: list) -> BudgetSpent:
    """The :class:`BudgetSpent` of :func:`run_chunks`: the chunks on disk, and their samples, of all the chunks."""
    done = [k for k in range(len(rows)) if str(k) in nfe and (folder / f"chunk_{k:05d}.npy").exists()]
    return BudgetSpent("chunks", len(done), len(rows), samples=sum(rows[k] for k in done))


# ----------------------------------------------------------------------------- a DMCMC sampler's run directory

CHECKPOINT_FORMAT = STATE_FORMAT  # a checkpoint is the sampler's own state_dict


def _config_diff(saved: dict, now: dict) -> list[str]:
    return settings_diff(saved, now, defaults=DMCMCConfig().to_dict())


def sampler_checkpoint(sampler: DMCMCSampler) -> dict:
    """Everything needed to continue a sampler: :meth:`DMCMCSampler.state_dict`."""
    return sampler.state_dict()


def restore_sampler(sampler: DMCMCSampler, d: dict) -> None:
    """Continue ``sampler`` from :func:`sampler_checkpoint`'s dict (:meth:`DMCMCSampler.load_state_dict`); other
    settings are refused."""
    sampler.load_state_dict(d)


DLG_OUTPUTS = ("samples.npy", "ledger.json", "checkpoint.pt")
"""The files a finished :func:`run_to_directory` run records the sha256 of (its rounds are checked on load)."""


def _load_checkpoint(path: Path) -> dict:
    """A run's ``checkpoint.pt`` (``torch.load(weights_only=True)``); a refused pickle is one line naming the file."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise
        raise ValueError(f"{path}: refused by torch.load(weights_only=True) -- it holds objects other than tensors "
                         "and plain containers, so it is not a checkpoint this toolkit wrote; nothing in it was run "
                         "-- start the run again in a new directory") from None


def sampler_fingerprint(sampler: DMCMCSampler, kind: str = "dlg", settings: dict | None = None, **kw) -> dict:
    """The :func:`fingerprint` of a DMCMC sampler's run.

    Settings: every field of its config, the data shape, dtype and device type, then ``settings``.  Content
    hashes: the model (``target_sha256`` for a mixture, ``model_sha256`` for a network), the classifier and a
    sigma prior, if any.  ``kw`` goes to :func:`fingerprint` (``files=``, more ``hashes=``).
    """
    s = {**sampler.config.to_dict(), "data_shape": list(sampler.data_shape), "dtype": str(sampler.dtype),
         "device": sampler.device.type, **(settings or {})}
    hashes = dict(kw.pop("hashes", None) or {})
    hashes.setdefault("target" if callable(getattr(sampler.model, "to_dict", None)) else "model",
                      content_sha256(sampler.model))
    if sampler.classifier is not None:
        hashes.setdefault("classifier", content_sha256(sampler.classifier))
    log_prior = getattr(sampler.sigma_update, "log_prior", None)
    if log_prior is not None:
        hashes.setdefault("log_prior", sha256_tensors({"log_prior": torch.as_tensor(log_prior)}))
    return fingerprint(kind, s, hashes=hashes, **kw)


def run_to_directory(sampler: DMCMCSampler, out_dir, *, checkpoint_every: int = 1,
                     burn_in_checkpoint_every: int = 10, progress: bool = True, run_info: dict | None = None,
                     on_round=None, run: RunDirectory | None = None, n_outputs: int | None = None,
                     deadline: float | None = None) -> DMCMCResult:
    """Run (or resume) a DMCMC sampler into ``out_dir``, checkpointing atomically every ``checkpoint_every`` rounds.

    Layout: ``run.json`` (settings), ``checkpoint.pt`` (chain state, RNG state,
    ledger), ``rounds/round_XXXXXX.npy`` and ``rounds/sigma_XXXXXX.npy`` (one
    file per output round, never overwritten), and when complete
    ``samples.npy`` (float64, [n_outputs, ...]) and ``ledger.json``.  Re-running
    the same call resumes from the checkpoint and produces exactly the outputs
    of an uninterrupted run; different settings are refused with the list of
    differences.  ``on_round(r)`` is called after each round (tests use it to
    simulate a kill).  Before ``samples.npy`` is written every round file is
    checked (:func:`load_parts`): one that is unreadable, misshapen or holds
    NaN / inf rows is refused by name and nothing more is written.

    The folder is a :class:`RunDirectory` (``run``; by default one with
    :func:`sampler_fingerprint` and :data:`DLG_OUTPUTS`): it is checked before
    anything is written (:class:`RunRefused`, a ``ValueError``, lists the
    differences), and a finished run is read back without writing anything.
    Without ``run`` the record is completed here; a caller that passes ``run``
    completes it itself (:meth:`RunDirectory.finish`), after its own outputs.

    ``n_outputs`` keeps only the first ``n_outputs`` outputs (round by round) in ``samples.npy`` and the result: the
    rest of the last round is discarded (its cost stays in the ledger); default: every output.

    ``deadline`` (a ``time.monotonic()`` value, :func:`deadline_after`): once it has passed, the run stops at the
    next burn-in checkpoint or output round, saves the checkpoint and raises :class:`BudgetSpent`; calling again
    continues (with the same outputs as an uninterrupted run).
    """
    out = Path(out_dir)
    made = sampler.config.n_chains * sampler.config.outputs_per_chain
    if n_outputs is not None and not 1 <= n_outputs <= made:
        raise ValueError(f"n_outputs must be in [1, {made}] (n_chains x outputs_per_chain), got {n_outputs}")
    own_record = run is None
    if own_record:
        run = RunDirectory(out, sampler_fingerprint(sampler), outputs=DLG_OUTPUTS)
    finished = run.check() == "finished"
    if not finished:
        run.start({"config": sampler.config.to_dict(), **(run_info or {})})
        (out / "rounds").mkdir(exist_ok=True)
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        restore_sampler(sampler, _load_checkpoint(ckpt))

    def save_ckpt():
        if not finished:  # a finished run is only read back
            atomic_write(ckpt, lambda tmp: torch.save(sampler_checkpoint(sampler), tmp))

    total = sampler.config.outputs_per_chain
    while not sampler.burn_in(max_steps=burn_in_checkpoint_every):  # a kill during a long burn-in loses little
        save_ckpt()
        if _spent(deadline) and not finished:
            raise BudgetSpent("output rounds (still in the burn-in)", 0, sampler.config.outputs_per_chain,
                              samples=0)
    bar = tqdm(total=total, initial=sampler.rounds_done, desc="DLG output rounds", disable=not progress)
    while sampler.rounds_done < total:
        if _spent(deadline) and not finished:
            save_ckpt()
            bar.close()
            raise BudgetSpent("output rounds", sampler.rounds_done, total,
                              samples=sampler.rounds_done * sampler.config.n_chains)
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
    C = sampler.config.n_chains
    remedy = "the run directory is damaged: start the run again in a new directory"
    samples = np.concatenate(load_parts([out / "rounds" / f"round_{r:06d}.npy" for r in range(total)], [C] * total,
                                        trailing=sampler.data_shape, remedy=remedy))
    sig = np.concatenate(load_parts([out / "rounds" / f"sigma_{r:06d}.npy" for r in range(total)], [C] * total,
                                    trailing=(), remedy=remedy))
    kept = made if n_outputs is None else n_outputs
    samples, sig = samples[:kept], sig[:kept]
    if not finished:  # a finished run is only read back
        save_once(out / "samples.npy", samples.astype(np.float64))
        ledger = sampler.ledger.to_dict()
        ledger["config"] = {k: sampler.config.to_dict()[k] for k in ("n_skip", "integrator", "steps", "n_chains",
                                                                       "outputs_per_chain", "sigma_update",
                                                                       "x_update")}
        write_once(out / "ledger.json", json.dumps(ledger, indent=2).encode())
        if own_record:
            run.finish()
    trace = torch.stack(sampler.trace).cpu() if sampler.trace else None
    return DMCMCResult(torch.from_numpy(samples), torch.from_numpy(sig), torch.arange(C).repeat(total)[:kept],
                       sampler.ledger, trace)


def fresh_folder(name: str, root: Path | None = None) -> Path:
    """A folder that does not exist yet: ``runs/<name>-<UTC time>`` (a counter appended if that one exists).

    A bench re-run writes here unless it is told to resume a given folder, so committed results are never
    rewritten by accident."""
    root = Path("runs") if root is None else Path(root)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path, k = root / f"{name}-{stamp}", 1
    while path.exists():
        k += 1
        path = root / f"{name}-{stamp}-{k}"
    return path


def plot_only_paths(out, figure, name: str) -> tuple[Path, Path]:
    """For a bench's ``--plot-only``: the ``results.json`` of ``out`` (only read) and a figure path that does not
    exist yet (``figure``, or ``runs/<name>-<UTC time>.png``); a ``ValueError`` in one line otherwise."""
    if not out:
        raise ValueError("--plot-only needs --out DIR, the folder whose results.json to draw")
    results = Path(out) / "results.json"
    if not results.is_file():
        raise ValueError(f"{results}: no such file; --plot-only draws a finished run's results")
    figure = Path(figure) if figure else fresh_folder(name).with_suffix(".png")
    if figure.exists():
        raise ValueError(f"--figure {figure} exists; it is not replaced -- choose another path")
    return results, figure
