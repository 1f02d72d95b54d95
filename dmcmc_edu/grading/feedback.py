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
import json
import os
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch

__all__ = ["CheckFailed", "OkLine", "as_array", "close", "fail", "compare", "call_student", "when_ready", "ok",
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


def _fmt(x: np.ndarray) -> str:
    x = np.asarray(x)
    if x.size == 1:
        return f"{float(x.reshape(())):.4g}"
    flat = x.reshape(-1)
    head = ", ".join(f"{v:.4g}" for v in flat[:3])
    return f"[{head}{', ...' if flat.size > 3 else ''}] (shape {tuple(x.shape)})"


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
    for description, wrong in (mistakes or {}).items():
        wrong_arr = as_array(wrong, description)
        if close(g, wrong_arr, rtol, atol):
            fail(f"{where + ': ' if where else ''}{name} gives {_fmt(g)}, which is what {description} gives; "
                 f"the expected value is {_fmt(w)}")
    err = np.abs(g - w)
    i = int(np.argmax(err))
    detail = "" if g.size == 1 else f" (largest difference at entry {np.unravel_index(i, g.shape)})"
    fail(f"{where + ': ' if where else ''}{name} is {_fmt(g)}, expected {_fmt(w)}{detail}"
         f"{' -- ' + hint if hint else ''}")


def call_student(fn: Callable, name: str, *args, **kwargs) -> Any:
    """Call the student's ``fn``; turn ``NotImplementedError`` and crashes into a message that names ``name``.

    Inside a recorded check (see :func:`graded`) the call and what it gave are written into the check's record; when
    a record is judged, nothing is called: the recorded answer is given back instead.
    """
    session = _SESSION.get()
    try:
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
# deterministic (fixed seeds, fresh generators per call), so the cases are the same, and the verdict -- the "ok"
# line or the message -- is computed from data only.  A record can make a check fail (a missing call, a crash, a
# wrong number); it cannot make it pass unless it holds the right answers to the check's own cases.

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


def graded(check: Callable) -> Callable:
    """Decorate a check ``check_<fn>(student_fn, hidden=False)`` so that its calls can be recorded and judged.

    Called as usual it runs the check; when the grader asked for records (``DMCMC_EDU_RECORD_CHECKS=1`` in the
    kernel's environment, or :func:`recording`), it also hands the record of the student's answers to the grader,
    whatever the outcome.  The grader judges that record with :func:`replaying`.
    """
    name = f"{check.__module__}.{check.__name__}"

    @functools.wraps(check)
    def run(student_fn, hidden: bool = False):
        __tracebackhide__ = True  # IPython leaves this frame out of the student's traceback
        if _SINK.get() is None and os.environ.get(RECORD_ENV) != "1":
            return check(student_fn, hidden=hidden)
        rec = _Recording(name, hidden)
        token = _SESSION.set(rec)
        try:
            return check(student_fn, hidden=hidden)
        finally:
            _SESSION.reset(token)
            _emit(rec.payload())

    run.graded_check = name
    return run
