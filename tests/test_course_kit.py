"""The instructor's kit around the assignments, with nbgrader's own mechanisms, on scratch copies of the course.

* the roster: only students imported with ``nbgrader db student import`` are graded; a submission folder that is not
  on it (a typo) is refused in one line naming the folder, and no student is created;
* grades.csv tells "not submitted" (empty score, status ``not submitted``) from a real zero (status ``graded``);
* a re-grade warns for each grade it replaces, keeps the earlier grades file (a new name with its time) and the
  earlier copy of the submission;
* a score set by hand in the gradebook (what the formgrader does) reaches ``nbgrader export``;
* ``assignments feedback`` writes one HTML file per graded student and assignment;
* the commented due-date / late-penalty example of ``nbgrader_config.py`` works once uncommented;
* A6's model answer quotes only numbers the notebook prints.

The graded course is A1 only, in the plain mode (the notebooks are the course's own: the release and the model
answers); the sandbox has its own suite (tests/test_grading_sandbox.py).  Skips only where nbgrader is missing.
"""
import contextlib
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from assignment_harness import COURSE, cells_by_id, enrol, nbgrader_missing_reason, read_notebook, source_path
from prose_numbers import executed_cells

from dmcmc_edu.cli import main
from dmcmc_edu.grading import course as course_mod
from dmcmc_edu.grading import sandbox

NAME = "a1_noise_and_denoising"
needs_nbgrader = pytest.mark.skipif(nbgrader_missing_reason() is not None, reason=str(nbgrader_missing_reason()))


def _scratch_course(root: Path, names=(NAME,)) -> Path:
    course = root / "course"
    course.mkdir(parents=True)
    for f in ("nbgrader_config.py", "students.example.csv", "due_dates.example.csv"):
        shutil.copy2(COURSE / f, course / f)
    for name in names:
        shutil.copytree(COURSE / "source" / name, course / "source" / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return course


def _put(subs: Path, student: str, notebook: Path) -> Path:
    folder = subs / student / NAME
    folder.mkdir(parents=True)
    shutil.copy2(notebook, folder / f"{NAME}.ipynb")
    return folder


def _error_line(capsys, args) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@needs_nbgrader
def test_only_students_on_the_roster_are_graded(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(sandbox.MODE_ENV, "plain")
    course = _scratch_course(tmp_path)
    subs = tmp_path / "returned"
    _put(subs, "ann", source_path(NAME))
    typo = _put(subs, "anm", source_path(NAME)).parent
    out = tmp_path / "grades.csv"
    args = ["assignments", "grade", "--course", str(course), "--submissions", str(subs), "--out", str(out)]
    line = _error_line(capsys, args)  # no roster yet
    assert str(typo) in line and "roster, which is empty" in line and "nbgrader db student import" in line
    course_mod.run_nbgrader(course, "db", "student", "import", "students.example.csv")
    assert course_mod.roster(course) == ["ann", "bob"]
    line = _error_line(capsys, args)
    assert line.startswith(f"error: {typo}: student 'anm' is not on the course's roster (2 students")
    assert "nbgrader db student add anm" in line
    assert course_mod.roster(course) == ["ann", "bob"] and not out.exists()
    assert not (course / "submitted").exists(), "nothing was copied in, nothing graded"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A1 released; roster ann, bob, cid; ann returns the untouched release (a real 0), bob the model answers,
    cid nothing; then ann hands in again (the model answers) and is re-graded with --overwrite."""
    if nbgrader_missing_reason() is not None:
        pytest.skip(nbgrader_missing_reason())
    saved = os.environ.get(sandbox.MODE_ENV)
    os.environ[sandbox.MODE_ENV] = "plain"
    try:
        work = tmp_path_factory.mktemp("kit")
        course = _scratch_course(work)
        course_mod.release(course, [NAME])
        enrol(course, ["ann", "bob", "cid"])
        first, second = work / "returned", work / "returned-again"
        _put(first, "ann", course / "release" / NAME / f"{NAME}.ipynb")
        _put(first, "bob", source_path(NAME))
        _put(second, "ann", source_path(NAME))
        out = work / "grades.csv"
        rows1 = course_mod.grade(course, first, out)
        first_bytes = out.read_bytes()
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):  # as `make grade` does it
            main(["assignments", "grade", "--course", str(course), "--submissions", str(second), "--out", str(out),
                  "--overwrite"])
        kept = [p for p in work.glob("grades.*.csv")]
        return dict(course=course, out=out, rows1=rows1, first_bytes=first_bytes, work=work, kept=kept,
                    stdout=stdout.getvalue(), stderr=stderr.getvalue())
    finally:
        if saved is None:
            os.environ.pop(sandbox.MODE_ENV, None)
        else:
            os.environ[sandbox.MODE_ENV] = saved


def test_grades_tell_not_submitted_from_a_zero(graded):
    rows = {r["student_id"]: r for r in graded["rows1"]}
    assert set(rows) == {"ann", "bob", "cid"}, "one row per student of the roster"
    assert (rows["ann"]["score"], rows["ann"]["status"]) == (0, "graded")
    assert (rows["bob"]["score"], rows["bob"]["status"]) == (10, "graded")
    assert rows["cid"]["status"] == "not submitted"
    assert rows["cid"]["score"] is None and rows["cid"]["raw_score"] is None and rows["cid"]["max_score"] == 10
    assert [r["status"] for r in graded["rows1"] if r["student_id"] == "cid"] == ["not submitted"]


def test_a_regrade_warns_and_keeps_the_earlier_grades(graded):
    assert not graded["rows1"].replaced
    warnings = [ln for ln in graded["stderr"].splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: ann/{NAME}: graded before (0 / 10)"), warnings
    kept = graded["kept"]
    assert len(kept) == 1 and re.fullmatch(r"grades\.\d{8}-\d{6}\.csv", kept[0].name)
    assert kept[0].read_bytes() == graded["first_bytes"], "the earlier grades file, unchanged"
    assert f"kept the earlier {graded['out']} as {kept[0]}" in graded["stdout"]
    now = {r["student_id"]: r["score"] for r in course_mod.read_grades(graded["out"])}
    assert now == {"ann": 10, "bob": 10, "cid": None}
    assert re.search(r"cid\s+a1_noise_and_denoising\s+not submitted", graded["stdout"])
    earlier = list((graded["course"] / course_mod.REPLACED_DIR).glob(f"*/ann/{NAME}/{NAME}.ipynb"))
    assert len(earlier) == 1 and "raise NotImplementedError()" in earlier[0].read_text(), "ann's first notebook kept"


def test_an_existing_grades_file_is_refused_without_overwrite(graded, capsys):
    before = graded["out"].read_bytes()
    line = _error_line(capsys, ["assignments", "grade", "--course", str(graded["course"]), "--submissions",
                                str(graded["work"] / "returned-again"), "--out", str(graded["out"])])
    assert "exists; choose another file" in line and "--overwrite: the earlier file is then kept as grades." in line
    assert graded["out"].read_bytes() == before


def test_manual_scores_reach_the_export(graded, tmp_path):
    """What the formgrader does when a score is typed in: the grade's manual_score, then nbgrader export."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded['course'] / 'gradebook.db'}", "dmcmc_edu") as gb:
        grade = gb.find_grade("test_forward_noise", NAME, NAME, "bob")
        grade.manual_score = 0.5
        points = float(grade.max_score)
        gb.db.commit()
    try:
        course_mod.run_nbgrader(graded["course"], "export", f"--to={tmp_path / 'export.csv'}")
        rows = {r["student_id"]: r for r in course_mod.read_grades(tmp_path / "export.csv")}
        assert rows["bob"]["score"] == 10 - points + 0.5 and rows["cid"]["status"] == "not submitted"
    finally:
        with Gradebook(f"sqlite:///{graded['course'] / 'gradebook.db'}", "dmcmc_edu") as gb:
            gb.find_grade("test_forward_noise", NAME, NAME, "bob").manual_score = None
            gb.db.commit()


def test_feedback_is_one_html_file_per_student_and_assignment(graded, capsys):
    main(["assignments", "feedback", "--course", str(graded["course"])])
    printed = capsys.readouterr().out.splitlines()
    files = sorted((graded["course"] / "feedback").glob("*/*/*.html"))
    assert [f.relative_to(graded["course"] / "feedback").as_posix() for f in files] == \
        [f"ann/{NAME}/{NAME}.html", f"bob/{NAME}/{NAME}.html"], "graded students only, not cid"
    assert printed == [f"wrote {f}" for f in files]
    html = files[0].read_text(encoding="utf-8")
    assert "Score: 10.0 / 10.0" in html and "ok: forward_noise" in html


def test_feedback_without_graded_submissions_is_one_line(tmp_path, capsys):
    if nbgrader_missing_reason() is not None:
        pytest.skip(nbgrader_missing_reason())
    course = _scratch_course(tmp_path)
    line = _error_line(capsys, ["assignments", "feedback", "--course", str(course)])
    assert "no graded submission" in line and "assignments grade" in line


def test_the_late_penalty_example_works_uncommented(tmp_path):
    """The commented block of nbgrader_config.py, uncommented, loads and makes nbgrader's plug-in give a late
    notebook 0; the due dates of the example CSV are accepted by nbgrader db assignment import."""
    if nbgrader_missing_reason() is not None:
        pytest.skip(nbgrader_missing_reason())
    from nbgrader.preprocessors import AssignLatePenalties
    from traitlets.config.loader import PyFileConfigLoader

    text = (COURSE / "nbgrader_config.py").read_text()
    commented = [ln for ln in text.splitlines() if ln.startswith("# c.")]
    assert commented == ['# c.AssignLatePenalties.plugin_class = "nbgrader.plugins.LateSubmissionPlugin"',
                         '# c.LateSubmissionPlugin.penalty_method = "zero"']
    course = _scratch_course(tmp_path)
    uncommented = "\n".join(ln[2:] if ln.startswith("# c.") else ln for ln in text.splitlines()) + "\n"
    (course / "nbgrader_config.py").write_text(uncommented)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    assert config.Autograde.create_student is False
    pre = AssignLatePenalties(config=config)
    pre.init_plugin()
    assert pre.plugin_inst.late_submission_penalty("ann", 7.5, 3600.0) == 7.5
    course_mod.run_nbgrader(course, "db", "assignment", "import", "due_dates.example.csv")
    listed = course_mod.run_nbgrader(course, "db", "assignment", "list")
    assert f"{NAME} (due: 2027-02-15 17:00:00)" in listed


def test_a6_model_answer_quotes_only_printed_numbers():
    """Each number in backticks in A6's model answer is printed by the notebook (run here with its seeds); the
    rubric's points add up to the cell's 4."""
    name = "a6_research_question"
    path = source_path(name)
    answer = cells_by_id(read_notebook(path))["written_answer"]
    text = "".join(answer["source"])
    assert answer["metadata"]["nbgrader"]["points"] == 4
    parts = re.findall(r"Part \d \(([\d.]+) points?\)", text)
    assert len(parts) == 3 and sum(map(float, parts)) == 4
    quoted = [q for q in re.findall(r"`([^`]+)`", text) if re.search(r"\d", q) and not q.endswith(".py")]
    assert len(quoted) >= 8
    printed = "\n".join("".join(o.get("text", "")) for c in executed_cells(path) if c["cell_type"] == "code"
                        for o in c.get("outputs", []) if o.get("output_type") == "stream")
    missing = [q for q in quoted if q not in printed]
    assert not missing, f"the model answer quotes numbers the notebook does not print: {missing}"
    assert "The cheapest method at\nthe target is the schedule-only control" in text
