"""The assignments' test harness: run nbgrader's whole cycle on a copy of the course and look at every cell's score.

Used by ``tests/test_assignments.py`` (in ``make test``) and, for the authors of an assignment, as a command:

    .venv/bin/python tests/assignment_harness.py a1_noise_and_denoising [a2_integrators ...]   (no name: all)

which prints, for every assignment, the score of each graded cell for three kinds of submission and the failure
message of each failed cell, then the problems found (exit status 1 if any):

* ``solution``   -- the source notebook itself (the model answers): every autograded cell must get full marks;
* ``untouched``  -- the release notebook as a student receives it: every graded cell must get 0, and the executed
  notebook must have errors in graded test cells only (everything else runs with the stubs);
* ``mistakesK``  -- the source notebook with the wrong answers of ``tests/assignment_mistakes/<name>.py`` put into
  their solution cells, several per submission when they are in different cells: each mistake's test cell must
  lose points and its error output must contain the mistake's ``message``.

The cycle is nbgrader's own: :func:`dmcmc_edu.grading.course.release` (``nbgrader generate_assignment``) then
:func:`dmcmc_edu.grading.course.grade` (one ``nbgrader autograde`` over all students and assignments, ``nbgrader
export``, each kernel in the bubblewrap sandbox and each check judged outside it; where bubblewrap cannot run, in the
plain mode, said on stderr); per-cell scores are read from the gradebook with nbgrader's API.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from dmcmc_edu.cli import main as cli_main  # noqa: E402
from dmcmc_edu.grading import course as course_mod  # noqa: E402
from dmcmc_edu.grading import sandbox as sandbox_mod  # noqa: E402

COURSE = ROOT / "notebooks" / "assignments"
MISTAKES_DIR = Path(__file__).resolve().parent / "assignment_mistakes"
MANUAL_CELLS = {"written_answer"}  # graded by hand (A6): not part of the autograded marks
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def nbgrader_missing_reason() -> str | None:
    """Why the harness cannot run here (nbgrader not installed), or None."""
    if not course_mod.nbgrader_available():
        return "nbgrader is not installed (pip install -e '.[assignments]'; CI installs it)"
    return None


def sandbox_missing_reason() -> str | None:
    """Why the bubblewrap sandbox cannot run here (not installed, no namespaces), or None."""
    if os.environ.get(sandbox_mod.MODE_ENV) == "plain":
        return None
    try:
        sandbox_mod.check_sandbox()
    except sandbox_mod.SandboxError as err:
        return str(err)
    return None


def assignment_names(course: Path = COURSE) -> list[str]:
    """The assignments of the course (``source/<a>/<a>.ipynb``), sorted."""
    return course_mod.assignment_names(course)


# ----------------------------------------------------------------------------- notebooks and their cells


def source_path(name: str, course: Path = COURSE) -> Path:
    return course / "source" / name / f"{name}.ipynb"


def read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def cell_text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def cells_by_id(nb: dict) -> dict[str, dict]:
    """``{grade_id: cell}`` of the cells with nbgrader metadata."""
    return {grade_id(c): c for c in nb["cells"] if grade_id(c)}


def without_markers(source: str) -> str:
    """A solution cell's source with the ``### BEGIN/END SOLUTION`` lines removed (the model answer as code)."""
    return "\n".join(ln for ln in source.splitlines() if ln.strip() not in MARKERS) + "\n"


def graded_points(nb: dict) -> dict[str, float]:
    """``{grade_id: points}`` of the graded cells of a notebook."""
    out = {}
    for c in nb["cells"]:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            out[meta["grade_id"]] = float(meta.get("points", 0))
    return out


def load_mistakes(name: str) -> list[dict]:
    """The ``MISTAKES`` list of ``tests/assignment_mistakes/<name>.py`` ([] when there is no such file)."""
    path = MISTAKES_DIR / f"{name}.py"
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location(f"assignment_mistakes_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for i, m in enumerate(module.MISTAKES):
        missing = {"cell", "source", "test", "message"} - set(m)
        if missing:
            raise ValueError(f"{path}: mistake {i} lacks {sorted(missing)}")
        if any(marker in m["source"] for marker in MARKERS):
            raise ValueError(f"{path}: mistake {i} ({m['cell']}) must not contain BEGIN/END SOLUTION lines")
    return list(module.MISTAKES)


def pack_mistakes(mistakes: list[dict]) -> list[list[dict]]:
    """Mistakes grouped into submissions: within one, no two replace the same cell or are judged by the same test."""
    packs: list[list[dict]] = []
    for m in mistakes:
        for pack in packs:
            if all(m["cell"] != o["cell"] and m["test"] != o["test"] for o in pack):
                pack.append(m)
                break
        else:
            packs.append([m])
    return packs


def with_cells_replaced(nb: dict, replacements: dict[str, str]) -> dict:
    """A copy of ``nb`` whose cells ``grade_id -> new source`` are replaced (outputs cleared)."""
    out = copy.deepcopy(nb)
    ids = cells_by_id(out)
    for gid, source in replacements.items():
        if gid not in ids:
            raise ValueError(f"no cell with grade_id {gid!r} in the notebook")
        ids[gid]["source"] = source
    for c in out["cells"]:
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    return out


def define(name: str, cell: str, source: str | None = None, course: Path = COURSE) -> dict:
    """Run the setup cell and one solution cell of ``name`` (or ``source`` in its place); returns the namespace.

    For fast unit tests of the checks: ``define("a1_noise_and_denoising", "forward_noise")["forward_noise"]`` is
    the model answer as a function, with ``source=`` a wrong one.
    """
    cells = cells_by_id(read_notebook(source_path(name, course)))
    ns: dict = {}
    if "setup" in cells:
        exec(compile(cell_text(cells["setup"]), f"<{name}:setup>", "exec"), ns)
    code = without_markers(cell_text(cells[cell])) if source is None else source
    exec(compile(code, f"<{name}:{cell}>", "exec"), ns)
    return ns


# ----------------------------------------------------------------------------- the nbgrader cycle


@dataclass
class Submission:
    """What one student's notebook of one assignment got."""

    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # grade_id -> (score, max)
    errors: dict[str, str] = field(default_factory=dict)  # cell (grade_id or "cell N") -> error text
    mistakes: list[dict] = field(default_factory=list)  # the mistakes put into it


@dataclass
class Report:
    names: list[str]
    submissions: dict[tuple[str, str], Submission]  # (student, assignment) -> what it got
    grades: list[dict]  # the rows of grades.csv
    points: dict[str, dict[str, float]]  # assignment -> graded cell -> points
    release_cells: dict[str, dict[str, str]]  # assignment -> grade_id -> cell type of the release notebook
    workdir: Path | None = None  # course/, submissions/, grades.csv
    submissions_unchanged: bool = True  # grading left the submissions folder as it was


def copy_course(dest: Path, names: list[str], course: Path = COURSE) -> Path:
    """A fresh course folder at ``dest``: the config and the source folders of ``names`` (nothing generated)."""
    dest.mkdir(parents=True)
    shutil.copy2(course / "nbgrader_config.py", dest / "nbgrader_config.py")
    for name in names:
        shutil.copytree(course / "source" / name, dest / "source" / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return dest


def enrol(course: Path, students) -> None:
    """Put ``students`` on the course's roster with nbgrader's ``db student import`` (only they are graded)."""
    with tempfile.TemporaryDirectory() as tmp:
        roster = Path(tmp) / "students.csv"
        roster.write_text("id\n" + "".join(f"{s}\n" for s in sorted(students)), encoding="utf-8")
        course_mod.run_nbgrader(course, "db", "student", "import", str(roster))


def write_submissions(course: Path, subs: Path, names: list[str], *, all_mistakes: bool = True
                      ) -> dict[tuple[str, str], list[dict]]:
    """Lay out the solution, untouched and mistakes submissions; returns the mistakes of each (student, a).

    With ``all_mistakes=False`` only the first pack of each assignment is graded (it holds the first listed mistake
    of every graded cell); the other mistakes are then covered in-process by ``tests/test_grading_a*.py``.
    """
    placed: dict[tuple[str, str], list[dict]] = {}

    def put(student: str, name: str, nb: dict) -> None:
        folder = subs / student / name
        folder.mkdir(parents=True)
        (folder / f"{name}.ipynb").write_text(json.dumps(nb, indent=1), encoding="utf-8")

    for name in names:
        source = read_notebook(source_path(name, course))
        put("solution", name, with_cells_replaced(source, {}))
        put("untouched", name, read_notebook(course / "release" / name / f"{name}.ipynb"))
        packs = pack_mistakes(load_mistakes(name))
        for k, pack in enumerate(packs if all_mistakes else packs[:1], start=1):
            put(f"mistakes{k}", name, with_cells_replaced(source, {m["cell"]: m["source"] for m in pack}))
            placed[(f"mistakes{k}", name)] = pack
    return placed


def _errors(nb: dict) -> dict[str, str]:
    """``{cell: error text}`` of an executed notebook (ANSI colours removed)."""
    out = {}
    for i, c in enumerate(nb["cells"]):
        for o in c.get("outputs", []):
            if o.get("output_type") == "error":
                text = f"{o.get('ename')}: {o.get('evalue')}\n" + "\n".join(o.get("traceback", []))
                out[grade_id(c) or f"cell {i}"] = ANSI.sub("", text)
    return out


def _cell_scores(course: Path, keys) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """Per-cell ``(score, max_score)`` from the gradebook, read with nbgrader's API."""
    from nbgrader.api import Gradebook  # the optional extra: only the harness and its tests need it

    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old_path])  # nbgrader runs alembic
    try:
        out = {}
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "dmcmc_edu") as gb:
            for student, name in keys:
                nb = gb.find_submission_notebook(name, name, student)
                out[(student, name)] = {g.name: (float(g.score or 0), float(g.max_score)) for g in nb.grades}
        return out
    finally:
        os.environ["PATH"] = old_path


def tree_digest(folder: Path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every file under ``folder`` (to show a folder was left as it was)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cycle(names: list[str], workdir: Path, *, verbose: bool = False, all_mistakes: bool = True) -> Report:
    """Release ``names`` in a copy of the course under ``workdir``, grade every kind of submission, read the results.

    Both steps go through the commands of ``make assignments`` and ``make grade`` (``python -m dmcmc_edu
    assignments release | grade``, here in-process).
    """
    course = copy_course(workdir / "course", names)
    more = ["--verbose"] if verbose else []
    cli_main(["assignments", "release", "--course", str(course), "--assignments", ",".join(names), *more])
    release_cells = {}
    for name in names:
        rel = read_notebook(course / "release" / name / f"{name}.ipynb")
        release_cells[name] = {grade_id(c): c["cell_type"] for c in rel["cells"] if grade_id(c)}
    subs = workdir / "submissions"
    placed = write_submissions(course, subs, names, all_mistakes=all_mistakes)
    enrol(course, [p.name for p in subs.iterdir()])
    before = tree_digest(subs)
    out_csv = workdir / "grades.csv"
    missing = sandbox_missing_reason()
    saved = os.environ.get(sandbox_mod.MODE_ENV)
    if missing is not None:  # the cycle tests the grading of trusted notebooks: the plain mode is enough for that
        print(f"(grading without the sandbox: {missing})", file=sys.stderr)
        os.environ[sandbox_mod.MODE_ENV] = "plain"
    try:
        cli_main(["assignments", "grade", "--course", str(course), "--submissions", str(subs), "--out", str(out_csv),
                  *more])
    finally:
        if missing is not None:
            if saved is None:
                os.environ.pop(sandbox_mod.MODE_ENV, None)
            else:
                os.environ[sandbox_mod.MODE_ENV] = saved
    grades = course_mod.read_grades(out_csv)
    keys = [(r["student_id"], r["assignment"]) for r in grades if (subs / r["student_id"] / r["assignment"]).is_dir()]
    scores = _cell_scores(course, keys)
    submissions = {}
    for student, name in keys:
        executed = course / "autograded" / student / name / f"{name}.ipynb"
        errors = _errors(read_notebook(executed)) if executed.is_file() else {"(notebook)": "not autograded"}
        submissions[(student, name)] = Submission(scores[(student, name)], errors, placed.get((student, name), []))
    points = {n: graded_points(read_notebook(source_path(n, course))) for n in names}
    return Report(names, submissions, grades, points, release_cells, workdir=workdir,
                  submissions_unchanged=tree_digest(subs) == before)


# ----------------------------------------------------------------------------- what must hold


KINDS = ("solution", "untouched", "mistakes")


def _kind(student: str) -> str:
    return student if student in ("solution", "untouched") else "mistakes"


def problems(report: Report, kinds=KINDS) -> list[str]:
    """Everything that contradicts the rules above for the submissions of ``kinds``, one line each ([]: all hold)."""
    out = []
    for (student, name), sub in sorted(report.submissions.items()):
        if _kind(student) not in kinds:
            continue
        auto = {g: p for g, p in report.points[name].items() if g not in MANUAL_CELLS}
        if student == "solution":
            out += _solution_problems(name, sub, auto)
        elif student == "untouched":
            tests = {g for g in auto if report.release_cells[name].get(g) == "code"}
            out += _untouched_problems(name, sub, auto, tests)
        else:
            out += _mistake_problems(name, student, sub)
    return out


def _solution_problems(name: str, sub: Submission, auto: dict) -> list[str]:
    out = []
    for gid, pts in auto.items():
        got = sub.scores.get(gid, (None, None))[0]
        if got is None or got < pts:
            out.append(f"{name}: the solution scores {got} of {pts:g} in {gid}: {_first(sub.errors.get(gid))}")
    for cell, err in sub.errors.items():
        if cell not in MANUAL_CELLS:
            out.append(f"{name}: the solution has an error in {cell}: {_first(err)}")
    return out


def _untouched_problems(name: str, sub: Submission, auto: dict, tests: set) -> list[str]:
    out = []
    for gid in auto:
        got = sub.scores.get(gid, (None, None))[0]
        if got is None or got != 0:
            out.append(f"{name}: the untouched release scores {got} in {gid} (expected 0)")
    for cell, err in sub.errors.items():
        if cell not in tests:
            out.append(f"{name}: the untouched release has an error outside the graded cells, in {cell}: "
                       f"{_first(err)}")
    return out


def _mistake_problems(name: str, student: str, sub: Submission) -> list[str]:
    out = []
    for m in sub.mistakes:
        score, pts = sub.scores.get(m["test"], (None, None))
        err = sub.errors.get(m["test"], "")
        if score is None or score >= pts:
            out.append(f"{name}: mistake {m['message']!r} ({student}) scores {score} of {pts} in {m['test']}")
        elif m["message"] not in err:
            out.append(f"{name}: mistake {m['message']!r} ({student}): the error of {m['test']} does not name it: "
                       f"{_first(err)}")
    return out


def _first(err: str | None) -> str:
    """The first line of an error text (the exception and its message)."""
    return (err or "no error").strip().splitlines()[0][:400] if err else "no error"


# ----------------------------------------------------------------------------- the developer command


def print_report(report: Report, file=sys.stdout) -> None:
    for name in report.names:
        print(f"\n=== {name}", file=file)
        rows = sorted((s, sub) for (s, a), sub in report.submissions.items() if a == name)
        for student, sub in rows:
            total = sum(v[0] for v in sub.scores.values())
            top = sum(v[1] for v in sub.scores.values())
            cells = "  ".join(f"{g}={s:g}/{m:g}" for g, (s, m) in sub.scores.items())
            print(f"{student:>11}  {total:g}/{top:g}   {cells}", file=file)
            for m in sub.mistakes:
                print(f"{'':>13}mistake in {m['cell']}: expects {m['message']!r}", file=file)
            for cell, err in sub.errors.items():
                print(f"{'':>13}{cell}: {_first(err)}", file=file)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Run from the repository with the project's Python (.venv/bin/python).")
    p.add_argument("names", nargs="*", help="assignments (default: all of notebooks/assignments/source)")
    p.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of a temporary folder")
    p.add_argument("--verbose", action="store_true", help="show nbgrader's log")
    args = p.parse_args(argv)
    reason = nbgrader_missing_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    known = assignment_names()
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"error: unknown assignment {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    names = args.names or known
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.keep:
        work = Path(args.keep)
        if work.exists():
            print(f"error: --keep {work} exists; give a new folder", file=sys.stderr)
            return 2
        report = run_cycle(names, work, verbose=args.verbose)
    else:
        with tempfile.TemporaryDirectory(prefix="assignments-") as tmp:
            report = run_cycle(names, Path(tmp), verbose=args.verbose)
    print_report(report)
    found = problems(report)
    if not report.submissions_unchanged:
        found.append("grading changed the submissions folder")
    print(f"\n{len(found)} problem(s)" + (":" if found else ""))
    for line in found:
        print(f"  - {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
