"""The course's plug-in to ``nbgrader export``: a grades CSV that tells "not submitted" from a score of zero.

nbgrader's own ``CsvExportPlugin`` writes one row per student of the roster and assignment, and a student who handed
nothing in gets ``score`` 0, like a student whose every answer failed.  :class:`StatusCsvExport` writes the same
columns, in the same order, plus ``status``:

* ``graded`` -- submitted and scored; the score is final;
* ``needs manual grading`` -- submitted, but a hand-graded answer (A6's written answer) or a manual override waits in
  the formgrader: the score holds the autograded part only;
* ``not submitted`` -- nothing in the gradebook for this student and assignment: ``raw_score``,
  ``late_submission_penalty`` and ``score`` are left empty.

Fields are written with Python's :mod:`csv` module, so a name with a comma stays in its column.  The course's
``nbgrader_config.py`` selects this plug-in (``c.ExportApp.plugin_class``), so both ``python -m dmcmc_edu
assignments grade`` and a plain ``nbgrader export`` in the course folder write it.

This module imports nbgrader; it is loaded only by nbgrader (through the course's configuration).
"""
from __future__ import annotations

import csv

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin

__all__ = ["StatusCsvExport", "COLUMNS", "GRADED", "NEEDS_MANUAL", "NOT_SUBMITTED"]

COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email", "raw_score",
           "late_submission_penalty", "score", "max_score", "status"]
GRADED = "graded"
NEEDS_MANUAL = "needs manual grading"
NOT_SUBMITTED = "not submitted"


def _text(value) -> str:
    return "" if value is None else str(value)


class StatusCsvExport(ExportPlugin):
    """``nbgrader export`` to CSV with a ``status`` column; a missing submission has an empty score, not 0."""

    def export(self, gradebook: Gradebook) -> None:
        """Write one row per (assignment, student) of the gradebook, restricted by ``--student`` / ``--assignment``."""
        dest = self.to or "grades.csv"
        students = {str(s) for s in self.student}
        assignments = {str(a) for a in self.assignment}
        self.log.info("Exporting grades with their status to %s", dest)
        with open(dest, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                for student in gradebook.students:
                    if students and student.id not in students:
                        continue
                    writer.writerow({key: _text(value) for key, value in self._row(gradebook, assignment,
                                                                                       student).items()})

    @staticmethod
    def _row(gradebook: Gradebook, assignment, student) -> dict:
        row = {"assignment": assignment.name, "duedate": assignment.duedate, "student_id": student.id,
               "last_name": student.last_name, "first_name": student.first_name, "email": student.email,
               "max_score": assignment.max_score}
        try:
            submission = gradebook.find_submission(assignment.name, student.id)
        except MissingEntry:
            row.update(timestamp=None, raw_score=None, late_submission_penalty=None, score=None,
                       status=NOT_SUBMITTED)
            return row
        penalty = submission.late_submission_penalty or 0.0
        row.update(timestamp=submission.timestamp, raw_score=submission.score, late_submission_penalty=penalty,
                   score=max(0.0, submission.score - penalty),
                   status=NEEDS_MANUAL if submission.needs_manual_grade else GRADED)
        return row
