"""Checks that teach: compare a student's answer with the reference and say what to look at.

Every assignment check in :mod:`dmcmc_edu.grading` works the same way: run the
student's function on generated cases, compute the reference answer (and, where
a common mistake is known, what that mistake would give), and

* pass silently (returning a short "ok" line) when the answer agrees with the
  reference within a stated tolerance;
* raise :class:`CheckFailed` naming the mistake when the answer agrees with a
  known wrong variant ("drift eta instead of eta/2");
* otherwise raise :class:`CheckFailed` with where it differs, what came back,
  what was expected, and a question that points at the likely cause.

Messages give numbers and hints, never the reference code.  A failed check is
an ``AssertionError`` so that nbgrader counts the test cell as failed.

When grading, the verdict is not taken from the student's kernel: each check
(decorated with :func:`graded`) records the student's answers as plain data,
and :mod:`dmcmc_edu.grading.judge` runs the check again on that record in the
grader's own process (see "records" below).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import inspect
import json
import os
import types
from collections.abc import Callable, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch

__all__ = ["CheckFailed", "OkLine", "as_array", "close", "fail", "compare", "call_student", "when_ready", "ok",
           "plain", "first_difference", "OFF_LIMITS_MESSAGE", "switched_off", "HIDDEN_ENV", "hidden_seed",
           "RECORD_MIME", "RECORD_ENV", "RecordError", "graded", "recording", "replaying", "encode", "decode"]


class CheckFailed(AssertionError):
    """A check failed; the message says where and what to look at."""


def fail(message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` (one or two sentences for the student)."""
    raise CheckFailed(message)


class OkLine(str):
    """The line a passing check returns: a ``str`` that a notebook does not echo a second time (it was printed)."""

    def _ipython_display_(self) -> None:
        """Show nothing as a cell's value: :func:`ok` already printed the line."""


def ok(what: str) -> OkLine:
    """Print and return the one line a passing check shows (``"ok: <what>"``)."""
    line = OkLine(f"ok: {what}")
    print(line)
    return line


def as_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 numpy array, or a :class:`CheckFailed` saying what came back instead."""
    if value is None:
        fail(f"{name} returned None: did you forget the `return`?")
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64).cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(f"{name} returned a {type(value).__name__}, expected a tensor or a number")
    raise AssertionError("unreachable")


def close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    """Same shape and every entry within ``atol + rtol * |b|`` (NaN never agrees)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def plain(value: Any) -> str:
    """``value`` as a student reads it: plain numbers (``0``, ``2.5``, ``[1, 2]``), never ``np.int64(0)`` or
    ``tensor(...)``; other objects by their ``str``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic)) and np.asarray(value).dtype.kind in "biuf":
        arr = np.asarray(value)
        return _fmt(arr) if arr.size != 1 or arr.ndim else _num(arr.reshape(())[()])
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _num(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(plain(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _num(v: Any, digits: int = 4) -> str:
    """One number: an integer as an integer, a float with ``digits`` significant digits (``inf``, ``nan`` as such)."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    return f"{int(v)}" if v.is_integer() and abs(v) < 1e15 else f"{v:.{digits}g}"


def _fmt(x: np.ndarray, start: int = 0) -> str:
    """An array in a message: the number itself, or its entries from ``start`` (three of them) and its shape."""
    x = np.asarray(x)
    if x.size == 1:
        return _num(x.reshape(())[()])
    flat = x.reshape(-1)
    start = max(0, min(int(start), flat.size - 1))
    head = ", ".join(_num(v) for v in flat[start:start + 3])
    return (f"[{'..., ' if start else ''}{head}{', ...' if flat.size > start + 3 else ''}] "
            f"(shape {tuple(int(n) for n in x.shape)})")


def _entry(i: int, shape: tuple) -> str:
    """The index of flat entry ``i`` of an array of ``shape``, as plain integers: ``3`` or ``[1, 0]``."""
    idx = [int(k) for k in np.unravel_index(int(i), shape)]
    return str(idx[0]) if len(idx) == 1 else "[" + ", ".join(map(str, idx)) + "]"


def first_difference(got: Any, want: Any, rtol: float, atol: float) -> tuple[str, float, float] | None:
    """Where ``got`` first leaves ``want`` (same shapes; row-major order): ``(index, got entry, expected entry)``,
    or None when they agree within ``atol + rtol * |want|``."""
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    bad = ~np.isclose(g, w, rtol=rtol, atol=atol) | ~np.isfinite(g)
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad.reshape(-1))[0])
    return _entry(i, g.shape), float(g.reshape(-1)[i]), float(w.reshape(-1)[i])


def compare(name: str, got: Any, want: Any, *, where: str = "", rtol: float = 1e-5, atol: float = 1e-6,
            mistakes: Mapping[str, Any] | None = None, hint: str = "") -> None:
    """Check ``got`` against the reference ``want``; name a known mistake if ``got`` matches one.

    Parameters
    ----------
    name
        What is compared, as the student knows it ("forward_noise(x, sigma)", "the NFE count").
    got, want
        The student's answer and the reference (tensors, arrays or numbers).
    where
        The case, in words ("at sigma = 2 with x = [1, 0]"), put in front of the message.
    rtol, atol
        Tolerance of the agreement, ``|got - want| <= atol + rtol * |want|`` entry by entry.
    mistakes
        ``{description: what that mistake gives}``; when ``got`` matches one of them (same
        tolerance) and not the reference, the message names that description.
    hint
        A question that points at the likely cause when no known mistake matches.
    """
    g = as_array(got, name)
    w = as_array(want, "the reference")
    if g.shape != w.shape:
        if g.size == w.size and g.size > 0:
            fail(f"{where + ': ' if where else ''}{name} has shape {g.shape}, expected {w.shape} "
                 "(same numbers of entries: a missing or extra dimension, or a transpose?)")
        fail(f"{where + ': ' if where else ''}{name} has shape {g.shape}, expected {w.shape}")
    if not np.all(np.isfinite(g)):
        fail(f"{where + ': ' if where else ''}{name} contains NaN or inf ({_fmt(g)})"
             f"{' -- ' + hint if hint else ''}")
    if close(g, w, rtol, atol):
        return
    bad = np.flatnonzero(~np.isclose(g, w, rtol=rtol, atol=atol).reshape(-1))
    start = int(bad[0]) if bad.size else 0  # previews start at the first entry that differs
    named = [d for d, wrong in (mistakes or {}).items() if close(g, as_array(wrong, d), rtol, atol)]
    if named:  # every listed mistake that gives exactly these numbers (on this case they cannot be told apart)
        which = named[0] + "".join(f" (and also what {d} gives)" for d in named[1:])
        detail = "" if g.size == 1 else (f" (first difference at entry {_entry(start, g.shape)}: "
                                         f"{_num(g.reshape(-1)[start], 7)} instead of {_num(w.reshape(-1)[start], 7)})")
        fail(f"{where + ': ' if where else ''}{name} gives {_fmt(g, start)}, which is what {which} gives; "
             f"the expected value is {_fmt(w, start)}{detail}")
    if g.size == 1:
        fail(f"{where + ': ' if where else ''}{name} is {_fmt(g)}, expected {_fmt(w)}"
             f"{' -- ' + hint if hint else ''}")
    index, got_i, want_i = first_difference(g, w, rtol, atol)
    k = int(bad.size)
    fail(f"{where + ': ' if where else ''}{name} is {_fmt(g, start)}, expected {_fmt(w, start)}; the first "
         f"difference is at entry {index}: {_num(got_i, 7)} instead of {_num(want_i, 7)} ({k} of {g.size} entries "
         f"differ){' -- ' + hint if hint else ''}")


def call_student(fn: Callable, name: str, *args, **kwargs) -> Any:
    """Call the student's ``fn``; turn ``NotImplementedError`` and crashes into a message that names ``name``.

    Inside a recorded check (see :func:`graded`) the call and what it gave are written into the check's record; when
    a record is judged, nothing is called: the recorded answer is given back instead.  While ``fn`` runs, the
    library functions the check declared off limits are switched off (:func:`switched_off`).
    """
    session = _SESSION.get()
    guard = nullcontext() if isinstance(session, _Replay) else switched_off(_OFF_LIMITS.get())
    try:
        with guard:
            if session is None:
                return fn(*args, **kwargs)
            return session.call(fn, name, args, kwargs)
    except NotImplementedError:
        fail(f"{name} is not implemented yet (it still raises NotImplementedError)")
    except (CheckFailed, RecordError):
        raise
    except Exception as err:  # a crash in the student's code: say which function and what Python said
        fail(f"{name} raised {getattr(err, 'recorded_type', type(err).__name__)}: {err}")


def when_ready(draw: Callable[[], Any], needs: str) -> Any:
    """Run ``draw()`` (a plot or a printout that uses the student's code); if that code is still a stub, say so.

    Used in the notebooks' non-graded cells so that the released notebook runs from top to bottom before the
    student has written anything: a stub prints one line instead of stopping the notebook.
    """
    try:
        return draw()
    except NotImplementedError:
        print(f"(this cell shows its result once {needs} is implemented)")
    except CheckFailed as err:
        print(f"(this cell needs {needs} to work first: {err})")
    except Exception as err:  # a wrong answer crashing a plot must not stop the rest of the notebook
        print(f"(this cell needs {needs} to work first; it stopped with {type(err).__name__}: {err})")
    return None


# ----------------------------------------------------------------------------- the exercise's own answer, switched off
#
# The library holds the reference of every function a student writes (that is how the checks know the answer).  A
# check decorated with ``@graded(off_limits=("module:qualname", ...))`` switches those functions off while the
# student's function runs (and only then: the check's own reference values are computed outside the student's
# call, and the judge never calls the student's function): each one raises ``RuntimeError`` saying "implement this
# yourself (it is what this exercise is for)".  The function's *code* is swapped, not the module attribute, so a
# name bound earlier (``from dmcmc_edu.core.integrators import kar1``) is switched off as well.  A student who
# copies the library's source (it is installed, so it can be read) is not stopped by this: see the guide.

OFF_LIMITS_MESSAGE = "implement this yourself (it is what this exercise is for)"
_OFF_LIMITS: ContextVar[tuple] = ContextVar("dmcmc_edu_off_limits", default=())


def _resolve(target: str) -> types.FunctionType:
    """The plain function ``"package.module:Class.method"`` names (decorators unwrapped)."""
    module, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = obj.__dict__[part] if isinstance(obj, type) and part in obj.__dict__ else getattr(obj, part)
    obj = inspect.unwrap(getattr(obj, "__func__", obj))
    if not isinstance(obj, types.FunctionType) or obj.__code__.co_freevars:
        raise TypeError(f"off_limits: {target} is not a plain function and cannot be switched off")
    return obj


@functools.lru_cache(maxsize=None)
def _switched_off_code(target: str) -> types.CodeType:
    """The code put in place of ``target``'s: it raises ``RuntimeError`` with :data:`OFF_LIMITS_MESSAGE`."""
    name = target.replace(":", ".")
    message = (f"{name} (the library's version of what this exercise asks for) is switched off while your function "
               f"is checked: {OFF_LIMITS_MESSAGE}")
    namespace: dict = {}
    exec(compile(f"def off_limits(*args, **kwargs):\n    raise RuntimeError({message!r})\n",
                 f"<off limits: {name}>", "exec"), namespace)
    return namespace["off_limits"].__code__


@contextmanager
def switched_off(targets):
    """Within the block, every library function of ``targets`` (``"module:qualname"``) raises ``RuntimeError``
    ("... implement this yourself (it is what this exercise is for)"), however it is referenced; restored after."""
    swapped = []
    try:
        for target in targets:
            fn = _resolve(target)
            swapped.append((fn, fn.__code__))
            fn.__code__ = _switched_off_code(target)
        yield
    finally:
        for fn, code in reversed(swapped):
            fn.__code__ = code


# ----------------------------------------------------------------------------- hidden cases: only when grading
#
# Hidden cases draw their numbers from seeds mixed with a secret that only the grader holds: ``nbgrader autograde``
# (through :mod:`dmcmc_edu.grading.nbgrader_plugins`) sets ``DMCMC_EDU_HIDDEN_SEED`` to a fresh random value for
# the run and hands it to each kernel it starts; the judge, in the same process, draws the same cases.  Without it
# (a student calling ``check_<fn>(fn, hidden=True)`` in their own notebook) a hidden check refuses to run, and with
# a value of their own it runs on cases that are not the graded ones.

HIDDEN_ENV = "DMCMC_EDU_HIDDEN_SEED"
HIDDEN_ONLY = ("hidden checks run only when the notebook is graded (their cases are drawn from the grader's secret "
               "seed); run the visible check above instead")


def hidden_seed(base: int) -> int:
    """The seed of a hidden case: ``base`` mixed with the grader's secret (:data:`HIDDEN_ENV`); refuses without it."""
    secret = os.environ.get(HIDDEN_ENV, "")
    if not secret:
        fail(HIDDEN_ONLY)
    return int.from_bytes(hashlib.sha256(f"{secret}:{int(base)}".encode()).digest()[:6], "big")


# ----------------------------------------------------------------------------- records: grading outside the kernel
#
# A check that runs in the student's kernel can be replaced by the student's code (a solution cell can rebind the
# check, ``compare``, ``numpy.allclose``, the exception classes, IPython's error display ...), so when grading, its
# verdict is not taken from the kernel.  Instead each check decorated with :func:`graded` runs as usual (the student
# sees the same messages) and, when the kernel was started by the grader (``DMCMC_EDU_RECORD_CHECKS=1``), also
# displays a *record*: for every call of a student function, the answer it gave (numbers, arrays, tensors, tuples,
# strings -- plain data, never pickles) and what the check's own helpers observed during the call (e.g. the noise
# levels a denoiser was called at).  The grader then runs the same check again in its own clean process
# (:mod:`dmcmc_edu.grading.judge`), with the student's function replaced by the recorded answers: the checks are
# deterministic (fixed seeds, fresh generators per call; hidden cases also mix in the grading run's secret,
# which the kernel and the judge share: see "hidden cases" above), so the cases are the same, and the verdict --
# the "ok" line or the message -- is computed from data only.  A record can make a check fail (a missing call, a
# crash, a wrong number); it cannot make it pass unless it holds the right answers to the check's own cases.

RECORD_MIME = "application/vnd.dmcmc-edu.check-record+json"
RECORD_ENV = "DMCMC_EDU_RECORD_CHECKS"
RECORD_VERSION = 1
MAX_ARRAY_ENTRIES = 2_000_000  # one recorded array (the largest honest answer has 40,000 entries)
MAX_ITEMS = 10_000  # entries of one recorded tuple, list or dict
MAX_DEPTH = 8
MAX_TEXT = 20_000
_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool", "complex128",
           "complex64")


class RecordError(AssertionError):
    """A record cannot be judged: a call is missing (the check stopped early in the kernel) or the data is bad."""


class _Opaque:
    """A recorded answer of a type that is not plain data; only its type's name came through."""


def _encode_array(kind: str, arr: np.ndarray) -> dict:
    if arr.dtype.name not in _DTYPES:
        return {"t": "opaque", "type": f"{kind} of dtype {arr.dtype.name}"}
    if arr.size > MAX_ARRAY_ENTRIES:
        return {"t": "toobig", "what": f"a {kind} of shape {tuple(arr.shape)}"}
    data = np.ascontiguousarray(arr).tobytes()
    return {"t": kind, "dtype": arr.dtype.name, "shape": [int(n) for n in arr.shape],
            "b64": base64.b64encode(data).decode("ascii")}


def encode(value: Any, depth: int = 0) -> dict:
    """``value`` as JSON-able plain data (see :func:`decode`); anything else keeps only the name of its type."""
    if depth > MAX_DEPTH:
        return {"t": "toobig", "what": "a value nested too deeply"}
    if value is None:
        return {"t": "none"}
    if isinstance(value, bool):
        return {"t": "bool", "v": bool(value)}
    if isinstance(value, int):
        return {"t": "int", "v": str(int(value))}
    if isinstance(value, float):
        return {"t": "float", "v": float(value).hex()}
    if isinstance(value, str):
        return {"t": "str", "v": str(value)[:MAX_TEXT]}
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            return {"t": "opaque", "type": "Tensor of dtype bfloat16"}
        return _encode_array("tensor", t.resolve_conj().resolve_neg().numpy())
    if isinstance(value, np.ndarray):
        return _encode_array("ndarray", np.asarray(value))
    if isinstance(value, np.generic) and np.dtype(value.dtype).name in _DTYPES:
        out = _encode_array("ndarray", np.asarray(value))
        out["t"] = "npscalar"
        return out
    if isinstance(value, (tuple, list)):
        if len(value) > MAX_ITEMS:
            return {"t": "toobig", "what": f"a {type(value).__name__} of {len(value)} items"}
        return {"t": "tuple" if isinstance(value, tuple) else "list", "v": [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            return {"t": "toobig", "what": f"a dict of {len(value)} items"}
        return {"t": "dict", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    return {"t": "opaque", "type": type(value).__name__}


def _decode_array(rec: dict) -> np.ndarray:
    dtype, shape = rec.get("dtype"), rec.get("shape")
    if dtype not in _DTYPES or not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape):
        raise RecordError("a recorded array has a bad dtype or shape")
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if size > MAX_ARRAY_ENTRIES:
        raise RecordError("a recorded array is too large")
    data = base64.b64decode(str(rec.get("b64", "")), validate=True)
    if len(data) != size * np.dtype(dtype).itemsize:
        raise RecordError("a recorded array's data does not fit its shape")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def decode(rec: Any, depth: int = 0) -> Any:
    """The value :func:`encode` wrote; raises :class:`RecordError` on anything malformed (nothing is executed)."""
    if not isinstance(rec, dict) or depth > MAX_DEPTH + 1:
        raise RecordError("a recorded value is malformed")
    t = rec.get("t")
    v = rec.get("v")
    if t == "none":
        return None
    if t == "bool" and isinstance(v, bool):
        return v
    if t == "int" and isinstance(v, str) and len(v) <= 4300:
        return int(v)
    if t == "float" and isinstance(v, str):
        return float.fromhex(v)
    if t == "str" and isinstance(v, str):
        return v
    if t == "tensor":
        return torch.from_numpy(_decode_array(rec))
    if t == "ndarray":
        return _decode_array(rec)
    if t == "npscalar":
        return _decode_array(rec).reshape(())[()]
    if t in ("tuple", "list") and isinstance(v, list) and len(v) <= MAX_ITEMS:
        items = [decode(x, depth + 1) for x in v]
        return tuple(items) if t == "tuple" else items
    if t == "dict" and isinstance(v, list) and len(v) <= MAX_ITEMS:
        out = {}
        for pair in v:
            if not isinstance(pair, list) or len(pair) != 2:
                raise RecordError("a recorded dict is malformed")
            key = decode(pair[0], depth + 1)
            try:
                out[key] = decode(pair[1], depth + 1)
            except TypeError:
                raise RecordError("a recorded dict has a key that is not hashable") from None
        return out
    if t == "opaque":
        return type(str(rec.get("type", "object"))[:80] or "object", (_Opaque,), {})()
    if t == "toobig":
        raise CheckFailed(f"the answer was too large to record ({str(rec.get('what', ''))[:200]})")
    raise RecordError("a recorded value has an unknown kind")


class _RecordedError(Exception):
    """A crash of the student's code as recorded in the kernel: its type's name and message."""

    def __init__(self, type_name: str, message: str):
        super().__init__(message)
        self.recorded_type = type_name


def _stateful(args: tuple, kwargs: dict) -> list[tuple[Any, Any]]:
    """``(key, argument)`` of the arguments whose state the check reads after the call (``_record_state``)."""
    items = list(enumerate(args)) + sorted(kwargs.items())
    return [(k, a) for k, a in items if hasattr(type(a), "_record_state")]


class _Recording:
    """The record of one check run in the kernel: each student call, its answer and the observed state."""

    def __init__(self, check: str, hidden: bool):
        self.check, self.hidden, self.calls = check, bool(hidden), []

    def call(self, fn, name, args, kwargs):
        entry: dict = {"name": name}
        self.calls.append(entry)
        try:
            value = fn(*args, **kwargs)
        except NotImplementedError:
            entry["raised"] = {"kind": "NotImplementedError"}
            raise
        except CheckFailed as err:
            entry["raised"] = {"kind": "CheckFailed", "message": str(err)[:MAX_TEXT]}
            raise
        except Exception as err:
            entry["raised"] = {"kind": "Exception", "type": type(err).__name__, "message": str(err)[:MAX_TEXT]}
            raise
        except BaseException:  # KeyboardInterrupt, SystemExit: the check did not finish
            entry["raised"] = {"kind": "stopped"}
            raise
        finally:
            entry["state"] = [[str(k), encode(a._record_state())] for k, a in _stateful(args, kwargs)]
        entry["value"] = encode(value)
        return value

    def payload(self) -> dict:
        return {"version": RECORD_VERSION, "check": self.check, "hidden": self.hidden, "calls": self.calls}


class _Replay:
    """Judging one record: each call of the student's function gives back the recorded answer, in order."""

    def __init__(self, record: dict):
        calls = record.get("calls")
        if not isinstance(calls, list):
            raise RecordError("the record has no list of calls")
        self.calls, self.i = calls, 0

    def call(self, fn, name, args, kwargs):
        if self.i >= len(self.calls):
            raise RecordError(f"the check stopped in the notebook before it called {name} a "
                              f"{self.i + 1}{'st' if self.i == 0 else 'th'} time (the kernel was interrupted, or "
                              "the check was changed)")
        entry = self.calls[self.i]
        self.i += 1
        if not isinstance(entry, dict) or entry.get("name") != name:
            raise RecordError(f"the record does not match the check: expected a call of {name}")
        states = entry.get("state", [])
        if not isinstance(states, list):
            raise RecordError("a recorded state is malformed")
        by_key = {str(k): a for k, a in _stateful(args, kwargs)}
        for item in states:
            if not isinstance(item, list) or len(item) != 2 or item[0] not in by_key:
                raise RecordError("a recorded state is malformed")
            by_key[item[0]]._restore_state(decode(item[1]))
        raised = entry.get("raised")
        if raised is not None:
            kind = raised.get("kind") if isinstance(raised, dict) else None
            message = str(raised.get("message", ""))[:MAX_TEXT] if isinstance(raised, dict) else ""
            if kind == "NotImplementedError":
                raise NotImplementedError()
            if kind == "CheckFailed":
                raise CheckFailed(message)
            if kind == "Exception":
                raise _RecordedError(str(raised.get("type", "Exception"))[:80], message)
            raise RecordError(f"{name} did not return: the kernel stopped it (interrupted or timed out)")
        if "value" not in entry:
            raise RecordError(f"the record holds no answer of {name}")
        return decode(entry["value"])


_SESSION: ContextVar[Any] = ContextVar("dmcmc_edu_check_session", default=None)
_SINK: ContextVar[Any] = ContextVar("dmcmc_edu_record_sink", default=None)


@contextmanager
def recording(sink: list):
    """Within the block, every :func:`graded` check appends its record (a dict) to ``sink`` (used by the tests)."""
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)


def _emit(payload: dict) -> None:
    """Hand a record to the grader: a display output of its own MIME type in the running notebook cell."""
    sink = _SINK.get()
    if sink is not None:
        sink.append(json.loads(json.dumps(payload)))
        return
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # not in a kernel: nobody to hand it to
        return
    if get_ipython() is not None:
        display({RECORD_MIME: payload}, raw=True)


def replaying(record: dict, check: Callable, hidden: bool) -> str:
    """Judge ``record`` with ``check`` (a :func:`graded` check): its "ok" line, or :class:`CheckFailed`.

    The record's check name and ``hidden`` flag must be those of the call being judged.
    """
    name = getattr(check, "graded_check", None)
    if name is None:
        raise RecordError(f"{getattr(check, '__name__', check)!r} is not a graded check")
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise RecordError("no record of this check in the notebook's output (or one of another version)")
    if record.get("check") != name or record.get("hidden") is not bool(hidden):
        raise RecordError(f"the notebook's record is of another check than {name}(hidden={bool(hidden)})")
    token = _SESSION.set(_Replay(record))
    try:
        return check.__wrapped__(_NOT_CALLED, hidden=bool(hidden))
    finally:
        _SESSION.reset(token)


def _not_called(*args, **kwargs):
    raise RecordError("a student function was called while judging a record")


_NOT_CALLED = _not_called


def graded(check: Callable | None = None, *, off_limits: tuple[str, ...] = ()) -> Callable:
    """Decorate a check ``check_<fn>(student_fn, hidden=False)`` so that its calls can be recorded and judged.

    Called as usual it runs the check; when the grader asked for records (``DMCMC_EDU_RECORD_CHECKS=1`` in the
    kernel's environment, or :func:`recording`), it also hands the record of the student's answers to the grader,
    whatever the outcome.  The grader judges that record with :func:`replaying`.  ``off_limits`` names the library
    functions (``"module:qualname"``) that compute what the student is asked to write: they are switched off while
    the student's function runs (:func:`switched_off`).  ``hidden=True`` runs only with the grader's secret
    (:func:`hidden_seed`).
    """
    if check is None:
        return functools.partial(graded, off_limits=tuple(off_limits))
    name = f"{check.__module__}.{check.__name__}"
    targets = tuple(off_limits)

    @functools.wraps(check)
    def run(student_fn, hidden: bool = False):
        __tracebackhide__ = True  # IPython leaves this frame out of the student's traceback
        if hidden and not os.environ.get(HIDDEN_ENV):
            fail(HIDDEN_ONLY)
        limits = _OFF_LIMITS.set(targets)
        try:
            if _SINK.get() is None and os.environ.get(RECORD_ENV) != "1":
                return check(student_fn, hidden=hidden)
            rec = _Recording(name, hidden)
            token = _SESSION.set(rec)
            try:
                return check(student_fn, hidden=hidden)
            finally:
                _SESSION.reset(token)
                _emit(rec.payload())
        finally:
            _OFF_LIMITS.reset(limits)

    run.graded_check = name
    run.off_limits = targets
    return run
