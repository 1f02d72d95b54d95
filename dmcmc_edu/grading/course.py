"""Run the course's nbgrader cycle: release the student versions, autograde returned notebooks, export grades.csv.

Everything is done by nbgrader's own commands (``python -m nbgrader generate_assignment | autograde | export``),
run in the course folder (``notebooks/assignments``, whose ``nbgrader_config.py`` sets the course, the gradebook
and the cell time-out); this module only checks the input, lays the files out the way nbgrader expects them and
turns a failure into one line.  nbgrader is the optional extra ``assignments`` (``pip install
dmcmc_edu[assignments]``); it is never imported here, so the package works without it.

* :func:`release` -- ``nbgrader generate_assignment``: ``source/<a>/<a>.ipynb`` (with the model answers) becomes
  ``release/<a>/<a>.ipynb`` (solutions replaced by ``raise NotImplementedError()``, hidden tests removed, graded
  cells locked), and the gradebook learns each graded cell and its points.
* :func:`grade` -- copies ``SUBMISSIONS/<student>/<a>/<a>.ipynb`` into the course's ``submitted/`` (the given
  folder is only read), runs ``nbgrader autograde`` on them (graded cells are restored from the source, hidden
  tests included, and every notebook is executed), and writes the scores with ``nbgrader export`` to a CSV file
  (one row per student and assignment: raw_score, score, max_score, ...).
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dmcmc_edu.runs import atomic_write

__all__ = ["CourseError", "NBGRADER_MISSING", "nbgrader_available", "assignment_names", "check_course",
           "find_submissions", "run_nbgrader", "release", "grade", "read_grades"]

NBGRADER_MISSING = ("nbgrader is not installed: pip install dmcmc_edu[assignments] "
                    "(in a clone: pip install -e '.[assignments]')")
SUBMISSIONS_LAYOUT = "<student_id>/<assignment>/<assignment>.ipynb"


class CourseError(ValueError):
    """Bad input to the course commands (a missing folder, an unknown assignment, no nbgrader, ...); one line."""


def nbgrader_available() -> bool:
    """Whether nbgrader can be run by this Python (the optional extra ``assignments``)."""
    return importlib.util.find_spec("nbgrader") is not None


def check_course(course_dir) -> Path:
    """The course folder, resolved; refused unless it holds ``nbgrader_config.py`` and a ``source/`` folder."""
    course = Path(course_dir).expanduser().resolve()
    if not course.is_dir():
        raise CourseError(f"--course {course_dir}: no such folder (the course folder is notebooks/assignments)")
    for name, kind in (("nbgrader_config.py", "file"), ("source", "folder")):
        if not (course / name).exists():
            raise CourseError(f"--course {course_dir}: not an nbgrader course folder (no {name} {kind} in it; "
                              "the course folder is notebooks/assignments)")
    return course


def assignment_names(course_dir) -> list[str]:
    """The assignments of the course: the folders ``source/<a>/`` that hold ``<a>.ipynb``, sorted."""
    source = check_course(course_dir) / "source"
    return sorted(p.name for p in source.iterdir() if p.is_dir() and (p / f"{p.name}.ipynb").is_file())


def _nbgrader_env() -> dict:
    """The environment of an nbgrader process: this Python's scripts first on PATH (nbgrader runs ``alembic``)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _failure_lines(output: str, limit: int = 3) -> str:
    """The last few error lines of nbgrader's log (without its 'see the traceback above' filler)."""
    lines = [ln.strip() for ln in output.splitlines() if "| ERROR]" in ln or ln.strip().startswith(
        ("FileNotFoundError", "ValueError", "RuntimeError", "NbGraderException", "nbformat"))]
    lines = [ln.split("| ERROR]", 1)[-1].strip() for ln in lines if "see the the above traceback" not in ln
             and "see the above traceback" not in ln]
    return "; ".join(lines[-limit:]) or " ".join(output.strip().splitlines()[-1:]) or "no output"


def run_nbgrader(course_dir, *args: str, verbose: bool = False) -> str:
    """Run ``python -m nbgrader <args>`` in the course folder; returns its log, raises :class:`CourseError` on failure.

    ``verbose`` also shows the log as it comes (otherwise it is kept and shown only when nbgrader fails).
    """
    if not nbgrader_available():
        raise CourseError(NBGRADER_MISSING)
    course = check_course(course_dir)
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.run(cmd, cwd=course, env=_nbgrader_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, stdin=subprocess.DEVNULL)
    if verbose:
        print(proc.stdout, end="", file=sys.stderr)
    if proc.returncode != 0:
        raise CourseError(f"nbgrader {args[0]} failed (exit status {proc.returncode}): {_failure_lines(proc.stdout)}")
    return proc.stdout


def _checked_names(course: Path, assignments) -> list[str]:
    known = assignment_names(course)
    if not known:
        raise CourseError(f"{course / 'source'}: no assignments (expected source/<a>/<a>.ipynb)")
    if assignments is None:
        return known
    names = [assignments] if isinstance(assignments, str) else list(assignments)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CourseError(f"unknown assignment {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    if not names:
        raise CourseError("no assignment named")
    return names


def release(course_dir, assignments=None, *, verbose: bool = False) -> list[Path]:
    """Generate the student versions of ``assignments`` (default: all) into ``<course>/release/``; returns them.

    Runs ``nbgrader generate_assignment <a> --force`` for each: an earlier release of the same assignment is
    replaced (it is generated from ``source/``, so nothing of a user's is lost), and the gradebook
    (``<course>/gradebook.db``) records the graded cells and their points, which :func:`grade` needs.
    """
    course = check_course(course_dir)
    names = _checked_names(course, assignments)
    if not nbgrader_available():
        raise CourseError(NBGRADER_MISSING)
    for name in names:
        run_nbgrader(course, "generate_assignment", name, "--force", verbose=verbose)
    out = [course / "release" / n / f"{n}.ipynb" for n in names]
    missing = [str(p) for p in out if not p.is_file()]
    if missing:
        raise CourseError(f"nbgrader generate_assignment wrote no {', '.join(missing)}")
    return out


def _needs_release(course: Path, name: str) -> bool:
    """Whether ``name`` must be (re)released before grading: no gradebook, no release, or a newer source."""
    rel = course / "release" / name / f"{name}.ipynb"
    db = course / "gradebook.db"
    if not rel.is_file() or not db.is_file():
        return True
    src_time = (course / "source" / name / f"{name}.ipynb").stat().st_mtime
    return src_time > rel.stat().st_mtime


def _check_notebook(path: Path) -> None:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CourseError(f"{path}: not a notebook (not valid JSON: {err})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise CourseError(f"{path}: not a notebook (no list of cells)")


def find_submissions(submissions_dir, known: list[str]) -> dict[tuple[str, str], Path]:
    """``{(student, assignment): folder}`` of a submissions folder laid out ``<student>/<assignment>/<a>.ipynb``.

    Names starting with a dot are skipped; anything else that does not fit the layout, an assignment that is not
    one of ``known``, a missing or unreadable notebook is refused with one line naming it.
    """
    root = Path(submissions_dir).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "no such folder"
        raise CourseError(f"--submissions {submissions_dir}: {what} (expected {SUBMISSIONS_LAYOUT} inside)")
    found: dict[tuple[str, str], Path] = {}
    for student in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if not student.is_dir():
            raise CourseError(f"{student}: a file where a student's folder was expected ({SUBMISSIONS_LAYOUT})")
        for folder in sorted(p for p in student.iterdir() if not p.name.startswith(".")):
            if not folder.is_dir() or folder.name not in known:
                raise CourseError(f"{folder}: unknown assignment {folder.name!r} (known: {', '.join(known)}; "
                                  f"expected {SUBMISSIONS_LAYOUT})")
            nb = folder / f"{folder.name}.ipynb"
            if not nb.is_file():
                raise CourseError(f"{folder}: no {nb.name} in it (expected {SUBMISSIONS_LAYOUT})")
            _check_notebook(nb)
            found[(student.name, folder.name)] = folder
    if not found:
        raise CourseError(f"--submissions {submissions_dir}: no submissions in it (expected {SUBMISSIONS_LAYOUT})")
    return found


def _copy_in(course: Path, found: dict[tuple[str, str], Path]) -> None:
    """Copy each submission to ``<course>/submitted/<student>/<a>/``, replacing an earlier copy there."""
    for (student, name), folder in found.items():
        dest = course / "submitted" / student / name
        if dest.resolve() == folder.resolve():
            continue  # already in place (the course's own submitted/ folder was given)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(folder, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))


def read_grades(csv_path) -> list[dict]:
    """The rows of an nbgrader grades CSV as dictionaries (``score`` and ``max_score`` as floats)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("raw_score", "score", "max_score"):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else None
    return rows


def grade(course_dir, submissions_dir, out_csv, *, overwrite: bool = False, verbose: bool = False) -> list[dict]:
    """Autograde ``submissions_dir`` (``<student>/<a>/<a>.ipynb``) with nbgrader and write the scores to ``out_csv``.

    Steps: check everything first (the course, the layout, that every assignment exists, that ``out_csv`` is
    free unless ``overwrite``); release the assignments concerned unless their release is up to date (so the
    gradebook knows their cells, as in the source); copy the submissions into ``<course>/submitted/`` (the given
    folder is never changed); one ``nbgrader autograde`` run over them (other students already in ``submitted/``
    are left as they are); ``nbgrader export`` of exactly these students and assignments, written atomically to
    ``out_csv``.  Returns the exported rows.
    """
    course = check_course(course_dir)
    known = assignment_names(course)
    found = find_submissions(submissions_dir, known)
    out = Path(out_csv).expanduser()
    if out.is_dir():
        raise CourseError(f"--out {out_csv}: is a folder; give the path of the CSV file to write")
    if out.exists() and not overwrite:
        raise CourseError(f"--out {out_csv}: exists; choose another file or delete it (or pass --overwrite)")
    if not nbgrader_available():
        raise CourseError(NBGRADER_MISSING)
    students = sorted({s for s, _ in found})
    names = sorted({a for _, a in found})
    stale = [n for n in names if _needs_release(course, n)]
    if stale:
        release(course, stale, verbose=verbose)
    _copy_in(course, found)
    submitted = course / "submitted"
    others = sorted(p.name for p in submitted.iterdir() if p.is_dir() and p.name not in students)
    args = ["autograde", "--assignment=*", "--student=*", "--force"]
    if others:
        args.append("--CourseDirectory.student_id_exclude=" + ",".join(others))
    run_nbgrader(course, *args, verbose=verbose)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=course, prefix=".export.") as tmp:
        tmp_csv = Path(tmp) / "grades.csv"
        export = ["export", f"--to={tmp_csv}"]
        export += [f"--ExportPlugin.student={s}" for s in students]
        export += [f"--ExportPlugin.assignment={a}" for a in names]
        run_nbgrader(course, *export, verbose=verbose)
        data = tmp_csv.read_bytes()
        rows = read_grades(tmp_csv)
    atomic_write(out, lambda path: Path(path).write_bytes(data))
    return rows
