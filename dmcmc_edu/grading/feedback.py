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
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["CheckFailed", "OkLine", "as_array", "close", "fail", "compare", "call_student", "when_ready", "ok"]


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
    """Call the student's ``fn``; turn ``NotImplementedError`` and crashes into a message that names ``name``."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        fail(f"{name} is not implemented yet (it still raises NotImplementedError)")
    except CheckFailed:
        raise
    except Exception as err:  # a crash in the student's code: say which function and what Python said
        fail(f"{name} raised {type(err).__name__}: {err}")


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
