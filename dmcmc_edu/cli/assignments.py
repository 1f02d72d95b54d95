"""Commands of the course's graded assignments (``notebooks/assignments``), run with nbgrader.

assignments release   build the student versions into <course>/release/ (nbgrader generate_assignment)
assignments grade     autograde a folder of returned notebooks and write grades.csv (nbgrader autograde + export)
assignments feedback  one HTML feedback file per graded student and assignment (nbgrader generate_feedback)

nbgrader is the optional extra ``assignments`` (``pip install dmcmc_edu[assignments]``); without it both commands
end with one ``error:`` line saying so.  The work is done by :mod:`dmcmc_edu.grading.course`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dmcmc_edu.cli.choices import GRADING_RUN_SECONDS as RUN_SECONDS
from dmcmc_edu.cli.common import CommandError, HelpFormatter, add_command, plain

# the grading code (dmcmc_edu.grading.course) is imported by the handlers, so that --help stays fast

__all__ = ["add_parsers", "cmd_release", "cmd_grade", "cmd_feedback"]

COURSE_DEFAULT = "notebooks/assignments"


def _check_course(args) -> None:
    """Refuse a missing ``--course`` with the command that makes one (the default is relative to the folder run in)."""
    if not Path(args.course).exists():
        raise CommandError(f"--course {args.course}: no such folder. Make the course with: python -m dmcmc_edu "
                           "course init DIR, then run this command in DIR (or pass --course DIR/notebooks/assignments)")


def _names(text: str | None):
    if text is None:
        return None
    names = [p.strip() for p in text.split(",")]
    if not all(names):
        raise CommandError(f"--assignments: expected a comma list of assignment names, got {text!r}")
    return names


def cmd_release(args) -> int:
    """build the student versions of the assignments into <course>/release/ with nbgrader

    Runs nbgrader generate_assignment for each assignment of <course>/source/ (or those of --assignments): the
    release notebooks have the solutions replaced by stubs, the hidden tests removed and the graded cells locked;
    hand release/ to the class. An earlier release is replaced (it is generated from source/). Needs the extra
    'assignments' (pip install dmcmc_edu[assignments]).
    """
    from dmcmc_edu.grading.course import release

    return _each_path(release, args, "released")


def cmd_grade(args) -> int:
    """autograde a folder of returned notebooks with nbgrader and write grades.csv

    --submissions holds <student_id>/<assignment>/<assignment>.ipynb (nbgrader's submitted layout); it is only read: the
    notebooks are copied into <course>/submitted/, autograded with nbgrader (graded cells restored, hidden tests run)
    and the scores of these assignments exported to --out, one row per student of the roster (status: graded, needs
    manual grading, or not submitted with an empty score). Only students on the roster (nbgrader db student import
    students.csv, in the course folder) are graded: another folder name is refused. --out is never written over unless
    --overwrite is given, and then its earlier version is kept beside it with its time in the name; a submission graded
    before is graded again with a warning. Each notebook's kernel runs in a bubblewrap sandbox (apt-get install
    bubblewrap; DMCMC_EDU_SANDBOX=plain grades without it, NOT safe for hostile code) and every check is judged outside
    it; a notebook that crashes or hangs is stopped and named, the others are graded. One grader per course at a time; a
    source notebook changed since its release is refused. Per-cell scores stay in <course>/gradebook.db, the executed
    notebooks in <course>/autograded/. Needs the extra 'assignments' (pip install dmcmc_edu[assignments]).
    """
    from dmcmc_edu.grading.course import CourseError, grade

    _check_course(args)
    if not args.time_limit > 0:
        raise CommandError(f"--time-limit: expected a positive number of seconds, got {args.time_limit:g}")
    try:
        rows = grade(args.course, args.submissions, args.out, overwrite=args.overwrite, verbose=args.verbose,
                     run_seconds=args.time_limit)
    except CourseError as err:
        raise CommandError(str(err)) from err
    for (student, name), what in sorted(rows.replaced.items()):
        print(f"warning: {student}/{name}: {what}; the new grade replaces it in the gradebook (a manual score "
              "given before stays and wins over the new autograded one: review it in the formgrader)",
              file=sys.stderr)
    for row in rows:
        note = rows.notes.get((row["student_id"], row["assignment"]))
        score = "" if row["score"] is None else f"{row['score']:g} / {row['max_score']:g}"
        status = row.get("status") or ""
        penalty = row.get("late_submission_penalty")
        if penalty:
            note = f"late: {penalty:g} points off" + (f"; {note}" if note else "")
        print(f"{row['student_id']:>20}  {row['assignment']:<30} {score:<12}"
              f"{status if status != 'graded' else ''}{'   (' + note + ')' if note else ''}".rstrip())
    for (student, name), why in sorted(rows.failed.items()):
        print(f"{student:>20}  {name:<30} {why}")
    if rows.kept is not None:
        print(f"kept the earlier {args.out} as {rows.kept}")
    print(f"wrote {args.out} ({len(rows)} rows{f'; {len(rows.failed)} not graded' if rows.failed else ''})")
    return 0


def cmd_feedback(args) -> int:
    """one HTML feedback file per graded student and assignment, ready to return (nbgrader generate_feedback)

    Runs nbgrader generate_feedback for each assignment (or those of --assignments) with graded submissions in
    <course>/autograded/: <course>/feedback/<student>/<assignment>/<assignment>.html holds the student's notebook as
    graded, every check's message (the hidden cases' too), each cell's score and the comments given in the
    formgrader. Run it again after manual grading: the files are generated from the gradebook and replaced.
    """
    from dmcmc_edu.grading.course import feedback

    return _each_path(feedback, args, "wrote")


def _each_path(action, args, verb: str) -> int:
    """Run a course ``action(course, names, verbose=)`` that returns paths; print each; a CourseError in one line."""
    from dmcmc_edu.grading.course import CourseError

    _check_course(args)
    try:
        paths = action(args.course, _names(args.assignments), verbose=args.verbose)
    except CourseError as err:
        raise CommandError(str(err)) from err
    for path in paths:
        print(f"{verb} {path}")
    return 0


def _course_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--course", default=COURSE_DEFAULT,
                   help="the nbgrader course folder, with nbgrader_config.py and source/ (python -m dmcmc_edu "
                        "course init DIR makes one in DIR/notebooks/assignments)")
    p.add_argument("--verbose", action="store_true", help="show nbgrader's log")


def add_parsers(sub) -> None:
    """Add the command group ``assignments`` (``release``, ``grade``, ``feedback``) to the sub-command parsers."""
    group = sub.add_parser("assignments",
                           help="the course's graded assignments with nbgrader: release | grade | feedback",
                           description=plain(__doc__.split("\n\n")[1]), formatter_class=HelpFormatter)
    group.epilog = f"example:\n  {group.prog} release --course notebooks/assignments"
    inner = group.add_subparsers(dest="assignments_command", required=True, metavar="{release,grade,feedback}")
    p = add_command(inner, "release", cmd_release, example="--course notebooks/assignments")
    _course_argument(p)
    p.add_argument("--assignments", default=None,
                   help="comma list of assignment names (default: every folder of <course>/source/)")
    p = add_command(inner, "grade", cmd_grade, example="--submissions returned/ --out grades.csv")
    _course_argument(p)
    p.add_argument("--submissions", required=True,
                   help="folder of returned notebooks, laid out <student_id>/<assignment>/<assignment>.ipynb")
    p.add_argument("--out", required=True, help="the CSV file to write (one row per student and assignment)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (its earlier version is kept beside it, the time in its name)")
    p.add_argument("--time-limit", type=float, default=RUN_SECONDS, metavar="SECONDS",
                   help="wall-clock limit of the whole run; the submissions not graded by then are named and "
                        "left out of --out")
    p = add_command(inner, "feedback", cmd_feedback, example="--assignments a1_noise_and_denoising")
    _course_argument(p)
    p.add_argument("--assignments", default=None,
                   help="comma list of assignment names (default: every assignment with graded submissions)")
