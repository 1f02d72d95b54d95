"""Grading helpers for the course's assignments (``notebooks/assignments``).

One module per assignment holds the checks its notebook calls (``check_<function>(student_fn, hidden=False)``);
:mod:`dmcmc_edu.grading.feedback` holds what they share.  The checks run a student's function on generated cases
against the library's reference and fail with a message a student can act on; hidden cases use other seeds.
"""
from .feedback import CheckFailed, call_student, compare, fail, ok, when_ready

__all__ = ["CheckFailed", "call_student", "compare", "fail", "ok", "when_ready"]
