"""Judge a graded test cell in the grader's own process, from the records the student's kernel handed over.

Why: a test cell runs in the student's kernel, after the student's cells, so whatever it computes there can be
faked (see :mod:`dmcmc_edu.grading.feedback`, "records").  When grading, the verdict of a test cell is therefore
computed here, in the process of ``nbgrader autograde`` (which never runs student code), by :func:`judge_cell`:

1. the cell's **source** says which checks to run -- it is the instructor's, restored by nbgrader from the
   gradebook, hidden tests included; it must be a list of calls ``<module>.check_<fn>(<name>[, hidden=True])``
   of the modules :data:`MODULES` (anything else is refused: :class:`JudgeError`);
2. the cell's **outputs** give the records the kernel displayed (MIME type
   :data:`~dmcmc_edu.grading.feedback.RECORD_MIME`), in order;
3. each check is run again with the record in place of the student's function
   (:func:`~dmcmc_edu.grading.feedback.replaying`): the same cases (hidden ones drawn from this grading run's
   secret, :func:`~dmcmc_edu.grading.feedback.hidden_seed`), the same comparisons, the same messages, but
   the reference, the comparisons and the verdict are this process's own.  A check without its record (the cell
   stopped, the kernel died, the record was removed) fails.

The verdict replaces the cell's outputs (:func:`verdict_outputs`) before nbgrader's ``SaveAutoGrades`` scores the
cell by whether it has an error output, so the scores that reach the gradebook are the judge's.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import io
from dataclasses import dataclass, field

from dmcmc_edu.grading.feedback import RECORD_MIME, CheckFailed, RecordError, replaying

__all__ = ["MODULES", "JudgeError", "Verdict", "planned_checks", "records_of", "judge_cell", "verdict_outputs"]

MODULES = ("a1_noise", "a2_integrators", "a3_posterior_langevin", "a4_dlg", "a5_classifier", "a6_research")


class JudgeError(ValueError):
    """A test cell's source is not a list of check calls (an authoring problem, not the student's)."""


@dataclass
class Verdict:
    """What a test cell earned: every "ok" line of the checks that passed, then the failure (if any)."""

    passed: bool
    lines: list[str] = field(default_factory=list)
    message: str | None = None
    ename: str = "CheckFailed"


def planned_checks(source: str) -> list[tuple[object, bool]]:
    """``[(check, hidden), ...]``: the checks a test cell's source calls, in order (see the module's docstring)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise JudgeError(f"a test cell is not valid Python ({err.msg}, line {err.lineno})") from None
    plan = []
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        func = call.func if isinstance(call, ast.Call) else None
        ok = (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in MODULES
              and func.attr.startswith("check_") and len(call.args) == 1 and isinstance(call.args[0], ast.Name)
              and all(k.arg == "hidden" and isinstance(k.value, ast.Constant) and isinstance(k.value.value, bool)
                      for k in call.keywords))
        if not ok:
            raise JudgeError(f"a test cell holds {ast.unparse(stmt)[:80]!r}: a graded test cell may only call "
                             f"<module>.check_<function>(<name>[, hidden=True]) of {', '.join(MODULES)}")
        module = importlib.import_module(f"dmcmc_edu.grading.{func.value.id}")
        check = getattr(module, func.attr, None)
        if getattr(check, "graded_check", None) is None:
            raise JudgeError(f"a test cell calls {func.value.id}.{func.attr}, which is not a graded check")
        hidden = bool(call.keywords[0].value.value) if call.keywords else False
        plan.append((check, hidden))
    if not plan:
        raise JudgeError("a graded test cell calls no check")
    return plan


def records_of(outputs) -> list:
    """The records among a cell's outputs (display outputs of :data:`RECORD_MIME`), in order."""
    found = []
    for out in outputs or []:
        if not isinstance(out, dict) or out.get("output_type") not in ("display_data", "execute_result"):
            continue
        data = out.get("data")
        if isinstance(data, dict) and RECORD_MIME in data:
            found.append(data[RECORD_MIME])
    return found


def judge_cell(source: str, records: list, stopped: str | None = None) -> Verdict:
    """The verdict of a test cell whose ``source`` is trusted and whose ``records`` came from the kernel.

    ``stopped`` says why the notebook stopped before this cell finished, if the grader knows (a time limit, a dead
    kernel); it is put in the message of a check without its record.
    """
    plan = planned_checks(source)
    lines: list[str] = []
    for k, (check, hidden) in enumerate(plan):
        label = f"{check.__name__}({'hidden=True' if hidden else ''})"
        if k >= len(records):
            why = stopped or "the cell stopped before it, or its output was removed"
            return Verdict(False, lines, f"{label} did not run to its end in the notebook ({why})", "CheckNotRun")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                line = replaying(records[k], check, hidden)
        except CheckFailed as err:
            return Verdict(False, lines, str(err))
        except RecordError as err:
            return Verdict(False, lines, f"{label}: {err}", "CheckNotRun")
        except Exception as err:  # malformed data that got past decoding: never a pass
            return Verdict(False, lines, f"{label}: the answers recorded in the notebook could not be judged "
                                         f"({type(err).__name__}: {err})", "CheckNotRun")
        if not isinstance(line, str) or not line.startswith("ok: "):
            return Verdict(False, lines, f"{label} did not pass", "CheckNotRun")
        lines.append(str(line))
    return Verdict(True, lines)


def verdict_outputs(verdict: Verdict) -> list[dict]:
    """The outputs that replace a judged cell's: its "ok" lines (stdout), then an error output if it failed."""
    outs: list[dict] = []
    if verdict.lines:
        outs.append({"output_type": "stream", "name": "stdout", "text": "".join(f"{ln}\n" for ln in verdict.lines)})
    if not verdict.passed:
        outs.append({"output_type": "error", "ename": verdict.ename, "evalue": verdict.message or "",
                     "traceback": [f"\x1b[0;31m{verdict.ename}\x1b[0m: {verdict.message}"]})
    return outs
