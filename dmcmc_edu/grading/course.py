"""Run the course's nbgrader cycle: release the student versions, autograde returned notebooks, export grades.csv.

Everything is done by nbgrader's own commands (``python -m nbgrader generate_assignment | autograde | export``),
run in the course folder (``notebooks/assignments``, whose ``nbgrader_config.py`` sets the course, the gradebook,
the time-outs and the course's autograde plug-ins); this module only checks the input, lays the files out the way
nbgrader expects them, keeps two graders apart and turns a failure into one line.  nbgrader is the optional extra
``assignments`` (``pip install dmcmc_edu[assignments]``); it is never imported here, so the package works without it.

* :func:`release` -- ``nbgrader generate_assignment``: ``source/<a>/<a>.ipynb`` (with the model answers) becomes
  ``release/<a>/<a>.ipynb`` (solutions replaced by ``raise NotImplementedError()``, hidden tests removed, graded
  cells locked), and the gradebook learns each graded cell and its points.  The SHA-256 of each released source
  notebook is kept in ``<course>/.released.json``.
* :func:`grade` -- copies ``SUBMISSIONS/<student>/<a>/<a>.ipynb`` into the course's ``submitted/`` (the given
  folder is only read), runs ``nbgrader autograde`` on them and writes the scores with ``nbgrader export`` to a new
  CSV file (one row per student of the roster and assignment graded: raw_score, score, max_score, ..., and
  ``status``: graded, needs manual grading, or not submitted with an empty score --
  :mod:`dmcmc_edu.grading.nbgrader_kit`).  Only students on the course's roster are graded (nbgrader's
  ``create_student`` is off; the roster is imported with ``nbgrader db student import``): a submission folder
  whose name is not on it is refused, naming the folder.  A submission graded before is graded again with a
  warning (:attr:`Graded.replaced`), its earlier copy kept under ``<course>/replaced/``; an earlier ``--out`` file
  replaced with ``overwrite`` is kept beside it with the time it was written in its name.
* :func:`feedback` -- ``nbgrader generate_feedback``: one HTML file per graded student and assignment,
  ``<course>/feedback/<student>/<a>/<a>.html``, ready to return.

How grading stays out of the students' reach (the details in :mod:`dmcmc_edu.grading.sandbox`,
:mod:`dmcmc_edu.grading.nbgrader_plugins` and :mod:`dmcmc_edu.grading.judge`): each notebook's kernel runs in a
bubblewrap sandbox that holds a scratch folder, this Python and the package, and nothing of the course; every test
cell is judged in the grader's process from the answers the kernel recorded, so replacing a check in the notebook
gains nothing; nbgrader writes the scores.  A notebook that crashes, hangs, floods its output or kills its kernel
is stopped there and costs its student the cells that did not run; the others are graded and exported, and each
stopped notebook is named (:attr:`Graded.notes`).  One grader at a time per course (a lock file,
``<course>/.grading.lock``); a source notebook that changed since its release is refused (re-release it with
:func:`release`, the instructor's explicit command); the whole run has a time limit.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from dmcmc_edu.grading.sandbox import SandboxError, check_sandbox
from dmcmc_edu.runs import atomic_write

__all__ = ["CourseError", "NBGRADER_MISSING", "nbgrader_available", "assignment_names", "check_course",
           "find_submissions", "run_nbgrader", "release", "grade", "read_grades", "course_lock", "Graded",
           "RUN_SECONDS", "roster", "check_roster", "feedback", "kept_name"]

LOCK_NAME = ".grading.lock"
REPLACED_DIR = "replaced"  # <course>/replaced/<time>/<student>/<a>/: a submission's earlier copy, kept at a re-grade
ROSTER_EXAMPLE = "students.example.csv"
RELEASED_NAME = ".released.json"
RUN_SECONDS = 4 * 3600.0  # the whole grading run (every notebook has its own limit too: nbgrader_config.py)
STOP_TAG = "dmcmc_edu-sandbox:"

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


def _run(course: Path, args: list[str], timeout: float | None = None) -> tuple[int | None, str]:
    """Run ``python -m nbgrader <args>`` in ``course``: (exit status or None if it ran past ``timeout``, its log).

    nbgrader runs in a session of its own, so that at the time-out it is killed with everything it started.
    """
    cmd = [sys.executable, "-m", "nbgrader", *args]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=course, env=_nbgrader_env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        log.seek(0)
        return rc, log.read().decode("utf-8", errors="replace")


def run_nbgrader(course_dir, *args: str, verbose: bool = False, timeout: float | None = None) -> str:
    """Run ``python -m nbgrader <args>`` in the course folder; returns its log, raises :class:`CourseError` on failure.

    ``verbose`` also shows the log (otherwise it is kept and shown only when nbgrader fails); ``timeout`` in seconds.
    """
    if not nbgrader_available():
        raise CourseError(NBGRADER_MISSING)
    course = check_course(course_dir)
    rc, output = _run(course, list(args), timeout)
    if verbose:
        print(output, end="", file=sys.stderr)
    if rc is None:
        raise CourseError(f"nbgrader {args[0]} ran past its time limit of {timeout:g} s and was stopped")
    if rc != 0:
        raise CourseError(f"nbgrader {args[0]} failed (exit status {rc}): {_failure_lines(output)}")
    return output


@contextmanager
def course_lock(course: Path):
    """Hold ``<course>/.grading.lock`` for the block; a second grader or release on the course is refused.

    The lock is the operating system's (``flock``), so it goes with the process that held it, even if that crashed.
    """
    path = Path(course) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", errors="replace").strip() or "another process"
            raise CourseError(f"{path}: another grader is working on this course ({holder}); wait until it ends") \
                from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _released(course: Path) -> dict:
    path = course / RELEASED_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CourseError(f"{path}: not valid JSON (it records what was released; run `assignments release` "
                          "to write it again)") from None
    return data if isinstance(data, dict) else {}


def release(course_dir, assignments=None, *, verbose: bool = False) -> list[Path]:
    """Generate the student versions of ``assignments`` (default: all) into ``<course>/release/``; returns them.

    Runs ``nbgrader generate_assignment <a> --force`` for each: an earlier release of the same assignment is
    replaced (it is generated from ``source/``, so nothing of a user's is lost), and the gradebook
    (``<course>/gradebook.db``) records the graded cells and their points, which :func:`grade` needs.  The source
    notebook's SHA-256 is recorded in ``<course>/.released.json``: :func:`grade` refuses a source that changed since.
    """
    course = check_course(course_dir)
    names = _checked_names(course, assignments)
    if not nbgrader_available():
        raise CourseError(NBGRADER_MISSING)
    with course_lock(course):
        return _release(course, names, verbose)


def _release(course: Path, names: list[str], verbose: bool) -> list[Path]:
    digests = {n: _sha256(course / "source" / n / f"{n}.ipynb") for n in names}
    for name in names:
        run_nbgrader(course, "generate_assignment", name, "--force", verbose=verbose)
    out = [course / "release" / n / f"{n}.ipynb" for n in names]
    missing = [str(p) for p in out if not p.is_file()]
    if missing:
        raise CourseError(f"nbgrader generate_assignment wrote no {', '.join(missing)}")
    record = _released(course)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    record.update({n: {"sha256": digests[n], "released": stamp} for n in names})
    atomic_write(course / RELEASED_NAME,
                 lambda path: Path(path).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n"))
    return out


def _release_state(course: Path, name: str) -> str:
    """``"missing"`` (never released here: no release or no gradebook), ``"current"`` or ``"changed"``."""
    rel = course / "release" / name / f"{name}.ipynb"
    src = course / "source" / name / f"{name}.ipynb"
    if not rel.is_file() or not (course / "gradebook.db").is_file():
        return "missing"
    entry = _released(course).get(name)
    if isinstance(entry, dict) and "sha256" in entry:
        return "current" if entry["sha256"] == _sha256(src) else "changed"
    return "changed" if src.stat().st_mtime > rel.stat().st_mtime else "current"


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


def _gradebook_rows(course: Path, query: str, params=()) -> list[tuple]:
    """Rows of a read-only query on ``<course>/gradebook.db`` (none if there is no gradebook yet)."""
    path = course / "gradebook.db"
    if not path.is_file():
        return []
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return db.execute(query, params).fetchall()
        finally:
            db.close()
    except sqlite3.Error as err:
        raise CourseError(f"{path}: cannot be read as nbgrader's gradebook ({err})") from None


def roster(course_dir) -> list[str]:
    """The students of the course's roster (nbgrader's gradebook), sorted; empty before one is imported.

    The roster is nbgrader's: ``nbgrader db student import <csv>`` (or ``nbgrader db student add <id>``) in the
    course folder puts students in ``gradebook.db``; the course's configuration never creates one at grading.
    """
    return sorted(row[0] for row in _gradebook_rows(Path(course_dir), "SELECT id FROM student"))


def check_roster(course_dir, found: dict[tuple[str, str], Path]) -> None:
    """Refuse, in one line naming the folder, a submission whose student folder is not on the roster."""
    course = Path(course_dir)
    known = set(roster(course))
    unknown = sorted({(student, folder.parent) for (student, _), folder in found.items() if student not in known})
    if not unknown:
        return
    student, folder = unknown[0]
    more = f" (and {len(unknown) - 1} more: {', '.join(s for s, _ in unknown[1:4])}" \
           f"{', ...' if len(unknown) > 4 else ''})" if len(unknown) > 1 else ""
    if not known:
        raise CourseError(f"{folder}: student {student!r} is not on the course's roster, which is empty{more}; "
                          f"import the class list first, in {course}: nbgrader db student import students.csv "
                          f"(columns id,first_name,last_name,email; see {ROSTER_EXAMPLE})")
    raise CourseError(f"{folder}: student {student!r} is not on the course's roster ({len(known)} students in "
                      f"gradebook.db){more}; a typo in the folder name? Rename the folder, or add the student in "
                      f"{course}: nbgrader db student add {student}")


def _graded_before(course: Path, keys) -> list[tuple[str, str]]:
    """Those of ``keys`` (student, assignment) that already have a submission in the gradebook."""
    rows = _gradebook_rows(course, "SELECT s.student_id, a.name FROM submitted_assignment s "
                                   "JOIN assignment a ON s.assignment_id = a.id")
    return sorted(set(keys) & {(s, a) for s, a in rows})


def kept_name(path: Path) -> Path:
    """A free name beside ``path`` that holds the time ``path`` was last written: ``grades.20270215-170000.csv``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    for k in range(1000):
        candidate = path.with_name(f"{path.stem}.{stamp}{'' if k == 0 else f'-{k}'}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise CourseError(f"{path}: no free name to keep its earlier version under")


def _keep(path: Path) -> Path:
    """Keep the file ``path`` under :func:`kept_name` (a hard link, or a copy), never over an existing file."""
    while True:
        dest = kept_name(path)
        try:
            os.link(path, dest)
            return dest
        except FileExistsError:
            continue  # made meanwhile: take the next free name
        except OSError:
            try:
                with open(path, "rb") as src, open(dest, "xb") as out:
                    shutil.copyfileobj(src, out)
                shutil.copystat(path, dest)
                return dest
            except FileExistsError:
                continue


def _copy_in(course: Path, found: dict[tuple[str, str], Path]) -> dict[tuple[str, str], Path]:
    """Copy each submission to ``<course>/submitted/<student>/<a>/``; returns where earlier copies were kept.

    An earlier copy there (a submission graded before) is moved to ``<course>/replaced/<time>/<student>/<a>/``,
    never deleted.
    """
    kept = {}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for (student, name), folder in found.items():
        dest = course / "submitted" / student / name
        if dest.resolve() == folder.resolve():
            continue  # already in place (the course's own submitted/ folder was given)
        if dest.exists():
            keep = course / REPLACED_DIR / stamp / student / name
            k = 0
            while keep.exists():
                k += 1
                keep = course / REPLACED_DIR / f"{stamp}-{k}" / student / name
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(dest), str(keep))
            kept[(student, name)] = keep
        shutil.copytree(folder, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return kept


def read_grades(csv_path) -> list[dict]:
    """The rows of an nbgrader grades CSV as dictionaries (scores as floats; an empty score, not submitted, as None).

    The course's CSV has a ``status`` column (graded, needs manual grading, not submitted); it stays a string.
    """
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("raw_score", "late_submission_penalty", "score", "max_score"):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else None
    return rows


class Graded(list):
    """The rows :func:`grade` exported (dicts, as :func:`read_grades`), with what went wrong in the run.

    ``notes``: ``{(student, assignment): why}`` for each notebook that was stopped (a dead kernel, a time or output
    limit) -- graded and exported, the cells that did not run scoring nothing; ``failed``: ``{(student,
    assignment): why}`` for each submission that could not be graded at all (not exported); ``replaced``:
    ``{(student, assignment): what}`` for each submission that had been graded before (its earlier grade, and where
    its earlier copy was kept); ``kept``: where the earlier ``--out`` file was kept, if one was replaced.
    """

    def __init__(self, rows, notes=None, failed=None, replaced=None, kept=None):
        super().__init__(rows)
        self.notes: dict[tuple[str, str], str] = dict(notes or {})
        self.failed: dict[tuple[str, str], str] = dict(failed or {})
        self.replaced: dict[tuple[str, str], str] = dict(replaced or {})
        self.kept: Path | None = kept


_STOP_LINE = re.compile(re.escape(STOP_TAG) + r" (?P<why>.*) \(at cell (?P<cell>\d+) of (?P<path>.*)\)\s*$")
_NBGRADER_FAILED = re.compile(r"There was an error processing assignment '(?P<a>[^']*)' for student '(?P<s>[^']*)'")


def _stops(log: str, course: Path) -> dict[tuple[str, str], str]:
    """``{(student, assignment): why}`` from the sandbox's log lines (``dmcmc_edu-sandbox: ...``)."""
    notes = {}
    for line in log.splitlines():
        m = _STOP_LINE.search(line)
        if m is None:
            continue
        parts = Path(m["path"]).parts
        if len(parts) >= 3 and parts[-3] == "autograded":
            notes[(parts[-2], parts[-1])] = f"stopped at cell {m['cell']}: {m['why']}"
    return notes


def _write_new(out: Path, data: bytes, overwrite: bool) -> None:
    """Write ``out`` atomically; unless ``overwrite``, never over a file that is there (even one made meanwhile)."""
    if overwrite:
        atomic_write(out, lambda path: Path(path).write_bytes(data))
        return
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise CourseError(f"--out {out}: appeared while grading; nothing was written over it (grade again "
                              "with another --out)") from None
    finally:
        os.remove(tmp)


def _rows_csv(rows: list[dict], header: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def grade(course_dir, submissions_dir, out_csv, *, overwrite: bool = False, verbose: bool = False,
          run_seconds: float = RUN_SECONDS, notebook_seconds: float | None = None,
          cell_seconds: float | None = None) -> Graded:
    """Autograde ``submissions_dir`` (``<student>/<a>/<a>.ipynb``) with nbgrader and write the scores to ``out_csv``.

    Steps: check everything first (the course, the layout, that every assignment exists, that ``out_csv`` is free unless
    ``overwrite``, the sandbox, that every student folder is on the roster); take the course's lock; refuse an
    assignment whose source notebook changed since its release (release it first if it never was, so the gradebook knows
    its cells); copy the submissions into ``<course>/submitted/`` (the given folder is never changed); one ``nbgrader
    autograde`` run over them, each notebook in the sandbox and judged outside it (other students already in
    ``submitted/`` are left as they are), within ``run_seconds`` in all (``notebook_seconds`` and ``cell_seconds``
    override the course's limits per notebook and per cell); ``nbgrader export`` of these assignments, written to
    ``out_csv`` (a new file unless ``overwrite``; an earlier file there is kept under :func:`kept_name`), one row per
    student of the roster and assignment graded (``status``: graded, needs manual grading, not submitted), without the
    submissions that could not be graded.  A submission that was graded before is graded again: its earlier grade is
    named in :attr:`Graded.replaced` (the gradebook keeps any manual score given to it, which then wins over the new
    autograded score: review it in the formgrader) and its earlier copy is kept in ``<course>/replaced/``.  Returns the
    exported rows, with the stopped notebooks, the failures and the replaced grades named (:class:`Graded`).
    """
    course = check_course(course_dir)
    known = assignment_names(course)
    found = find_submissions(submissions_dir, known)
    out = Path(out_csv).expanduser()
    if out.is_dir():
        raise CourseError(f"--out {out_csv}: is a folder; give the path of the CSV file to write")
    if out.exists() and not overwrite:
        raise CourseError(f"--out {out_csv}: exists; choose another file or delete it (or pass --overwrite: the "
                          f"earlier file is then kept as {kept_name(out).name})")
    if not nbgrader_available():
        raise CourseError(NBGRADER_MISSING)
    try:
        check_sandbox()
    except SandboxError as err:
        raise CourseError(str(err)) from None
    check_roster(course, found)
    with course_lock(course):
        return _grade(course, found, out, overwrite, verbose, run_seconds, notebook_seconds, cell_seconds)


def _export(course: Path, keys, verbose: bool, whole_roster: bool = False) -> tuple[bytes, list[dict]]:
    """``nbgrader export`` (the course's plug-in) of the assignments of ``keys``: (the CSV's bytes, its rows).

    The rows of the students of ``keys`` only, or with ``whole_roster`` of every student on the roster.
    """
    with tempfile.TemporaryDirectory(dir=course, prefix=".export.") as tmp:
        tmp_csv = Path(tmp) / "grades.csv"
        export = ["export", f"--to={tmp_csv}"]
        if not whole_roster:
            export += [f"--ExportPlugin.student={s}" for s in sorted({s for s, _ in keys})]
        export += [f"--ExportPlugin.assignment={a}" for a in sorted({a for _, a in keys})]
        run_nbgrader(course, *export, verbose=verbose)
        return tmp_csv.read_bytes(), read_grades(tmp_csv)


def _score_text(row: dict) -> str:
    if row.get("score") is None:
        return row.get("status") or "no score"
    text = f"{row['score']:g} / {row['max_score']:g}"
    return f"{text}, {row['status']}" if row.get("status") not in (None, "", "graded") else text


def _grade(course: Path, found: dict, out: Path, overwrite: bool, verbose: bool, run_seconds: float,
           notebook_seconds: float | None, cell_seconds: float | None) -> Graded:
    names = sorted({a for _, a in found})
    states = {n: _release_state(course, n) for n in names}
    changed = [n for n in names if states[n] == "changed"]
    if changed:
        n = changed[0]
        raise CourseError(f"{course / 'source' / n / (n + '.ipynb')}: changed since it was released; grading it "
                          f"would restore other check cells than the students had. Re-release it (python -m "
                          f"dmcmc_edu assignments release --course {course} --assignments {n}, then hand out the new "
                          "release) or restore the released version")
    missing = [n for n in names if states[n] == "missing"]
    if missing:
        _release(course, missing, verbose)
    before = _graded_before(course, found)
    earlier = {}
    if before:
        _, rows = _export(course, before, verbose)
        earlier = {(r["student_id"], r["assignment"]): r for r in rows}
    kept_copies = _copy_in(course, found)
    replaced = {}
    for key in before:
        what = f"graded before ({_score_text(earlier[key]) if key in earlier else 'score unknown'})"
        if key in kept_copies:
            what += f"; its earlier copy is kept in {kept_copies[key]}"
        replaced[key] = what
    students = sorted({s for s, _ in found})
    submitted = course / "submitted"
    others = sorted(p.name for p in submitted.iterdir() if p.is_dir() and p.name not in students)
    args = ["autograde", "--assignment=*", "--student=*", "--force"]
    if others:
        args.append("--CourseDirectory.student_id_exclude=" + ",".join(others))
    if notebook_seconds is not None:
        args.append(f"--SandboxExecute.notebook_seconds={float(notebook_seconds)}")
    if cell_seconds is not None:
        args.append(f"--Execute.timeout={int(cell_seconds)}")
    started = time.time()
    rc, log = _run(course, args, timeout=run_seconds)
    if verbose:
        print(log, end="", file=sys.stderr)
    failed: dict[tuple[str, str], str] = {}
    for student, name in found:
        nb = course / "autograded" / student / name / f"{name}.ipynb"
        if not nb.is_file() or nb.stat().st_mtime < started:
            failed[(student, name)] = "not graded"
    if rc is None:
        failed = {k: f"not graded: the run passed its time limit of {run_seconds:g} s" for k in failed}
    elif rc != 0:
        reported = {(m["s"], m["a"]) for m in _NBGRADER_FAILED.finditer(log)}
        if not reported:
            raise CourseError(f"nbgrader autograde failed (exit status {rc}): {_failure_lines(log)}")
        failed.update({k: "not graded: nbgrader autograde could not process it (--verbose shows its log)"
                       for k in reported})
    elif failed:
        raise CourseError(f"nbgrader autograde wrote no graded notebook for {', '.join(map('/'.join, failed))}")
    notes = {k: v for k, v in _stops(log, course).items() if k in found and k not in failed}
    graded = sorted(k for k in found if k not in failed)
    if not graded:
        raise CourseError("no submission could be graded: " + "; ".join(f"{s}/{a}: {why}"
                                                                         for (s, a), why in sorted(failed.items())))
    out.parent.mkdir(parents=True, exist_ok=True)
    data, rows = _export(course, graded, verbose, whole_roster=True)  # with the students who did not submit
    keep = [(row.get("student_id"), row.get("assignment")) not in failed for row in rows]
    if not all(keep):  # a submission nbgrader could not process: named, left out
        raw = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        header = list(raw[0].keys()) if raw else []
        data = _rows_csv([r for r, k in zip(raw, keep) if k], header)
        rows = [r for r, k in zip(rows, keep) if k]
    kept = _keep(out) if overwrite and out.is_file() else None
    _write_new(out, data, overwrite)
    return Graded(rows, notes, failed, replaced, kept)


def feedback(course_dir, assignments=None, *, verbose: bool = False) -> list[Path]:
    """HTML feedback for every graded submission of ``assignments`` (default: all); returns the files, sorted.

    Runs ``nbgrader generate_feedback <a> --force`` for each assignment that has graded notebooks in
    ``<course>/autograded/``: one self-contained HTML file per student and assignment,
    ``<course>/feedback/<student>/<a>/<a>.html`` -- the student's notebook as graded, each check's message (the
    hidden cases' too), the score of every cell and the instructor's comments from the formgrader -- ready to
    return to that student.  It is generated from the gradebook, so an earlier feedback file is replaced (run it
    again after manual grading).
    """
    course = check_course(course_dir)
    names = _checked_names(course, assignments)
    if not nbgrader_available():
        raise CourseError(NBGRADER_MISSING)
    with course_lock(course):
        graded = {n: sorted(p.parts[-3] for p in (course / "autograded").glob(f"*/{n}/{n}.ipynb")) for n in names}
        if not any(graded.values()):
            raise CourseError(f"{course / 'autograded'}: no graded submission of {', '.join(names)}; grade them "
                              "first (python -m dmcmc_edu assignments grade)")
        out = []
        for name, students in graded.items():
            if not students:
                continue
            run_nbgrader(course, "generate_feedback", name, "--force", verbose=verbose)
            files = [course / "feedback" / s / name / f"{name}.html" for s in students]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise CourseError(f"nbgrader generate_feedback wrote no {', '.join(missing)}")
            out += files
        return sorted(out)
