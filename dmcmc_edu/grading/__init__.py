"""Grading helpers for the course's assignments (``notebooks/assignments``).

One module per assignment holds the checks its notebook calls (``check_<function>(student_fn, hidden=False)``);
:mod:`dmcmc_edu.grading.feedback` holds what they share.  The checks run a student's function on generated cases
against the library's reference and fail with a message a student can act on; hidden cases use other seeds.

Grading (``python -m dmcmc_edu assignments grade``, :mod:`dmcmc_edu.grading.course`) runs each student's kernel in
a sandbox (:mod:`dmcmc_edu.grading.sandbox`) and judges every check outside it, from the answers the kernel recorded
(:mod:`dmcmc_edu.grading.judge`, :mod:`dmcmc_edu.grading.nbgrader_plugins`); grades are exported with a status
column (graded, needs manual grading, not submitted) by :mod:`dmcmc_edu.grading.nbgrader_kit`.
"""
from .feedback import CheckFailed, call_student, compare, fail, ok, when_ready

__all__ = ["CheckFailed", "call_student", "compare", "fail", "ok", "when_ready"]
